// /widgets/index.js - shows the client's version on the index.
import { VERSION } from '/herald.js';

document.getElementById('version').textContent = 'herald.js ' + VERSION;
