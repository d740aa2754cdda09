// /widgets/scoreboard.js - a basketball scoreboard on the state channel
// scores:GAME (keys "teams" and "score:<team>"). The viewer only watches; the
// operator view (?mode=operator) also changes the score.
import { params, makeClient, statusIndicator } from '/widgets/common.js';

const $ = (id) => document.getElementById(id);
const game = params.get('game') || 'game-7';
const operator = params.get('mode') === 'operator';
const client = makeClient();
const sub = client.subscribe('scores:' + game);

$('title').textContent = 'Scoreboard — ' + game;
$('mode').textContent = operator ? 'operator' : 'viewer';
statusIndicator($('status'), client);
const showError = (e) => { $('error').textContent = e ? e.reason || e.message : ''; };

function render(key) {
  if (key === 'teams' || key == null) {
    const t = sub.get('teams') || {};
    $('name-home').textContent = t.home || params.get('home') || 'Home';
    $('name-away').textContent = t.away || params.get('away') || 'Away';
  }
  for (const team of ['home', 'away']) {
    if (key != null && key !== 'score:' + team) continue;
    const e = $('score-' + team);
    const v = sub.get('score:' + team) ?? 0;
    if (e.textContent !== String(v)) {
      e.textContent = String(v);
      e.classList.add('flash');
      setTimeout(() => e.classList.remove('flash'), 300);
    }
  }
}

sub.on('change', (c) => render(c.key));
sub.on('state', (changes, how) => how.snapshot && render(null));
sub.on('subscribed', () => render(null));
sub.on('error', showError);
client.connect().catch(showError);

if (operator) {
  for (const e of document.querySelectorAll('.operator')) e.classList.remove('hidden');
  for (const b of document.querySelectorAll('button[data-team]')) {
    b.addEventListener('click', () => {
      sub.update([{ op: 'incr', key: 'score:' + b.dataset.team, by: Number(b.dataset.points) }])
        .then(() => showError(null), showError);
    });
  }
  const teams = () => ({
    home: $('home-name').value.trim() || $('name-home').textContent,
    away: $('away-name').value.trim() || $('name-away').textContent,
  });
  $('set-teams').addEventListener('click', () => {
    sub.update([{ op: 'set', key: 'teams', value: teams() }]).then(() => showError(null), showError);
  });
  $('reset').addEventListener('click', () => {
    sub.update([{ op: 'reset' }, { op: 'set', key: 'teams', value: teams() }]).then(() => showError(null), showError);
  });
  // A new game gets its team names (from ?home= and ?away=) once; cas with
  // version 0 sets them only if nobody did yet.
  sub.ready.then(() => {
    if (sub.get('teams') !== undefined) return;
    const value = { home: params.get('home') || 'Home', away: params.get('away') || 'Away' };
    sub.update([{ op: 'cas', key: 'teams', value, version: 0 }]).catch((e) => e.code !== 117 && showError(e));
  });
}
