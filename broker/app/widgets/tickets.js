// /widgets/tickets.js - a help-desk dashboard on the tickets adapter's state
// channel (?board=, default helpdesk:tickets; keys "ticket:<id>"): the list
// with a status filter and search, a create form, status buttons, a bulk
// status update, all live (every create and change arrives as a state delta).
// Changes go through the REST adapter (/api/tickets), open in development
// mode; ?name= is the agent named as "by".
import { params, makeClient, statusIndicator, el } from '/widgets/common.js';

const $ = (id) => document.getElementById(id);
const boardName = params.get('board') || 'helpdesk:tickets';
const agent = params.get('name') || 'agent';
const client = makeClient();
const sub = client.subscribe(boardName);
const selected = new Set();
const LABEL = { open: 'open', in_progress: 'in progress', closed: 'closed' };
// The status machine (docs/adapters.md): the buttons offer only legal moves.
const NEXT = {
  open: [['in_progress', 'Start'], ['closed', 'Close']],
  in_progress: [['open', 'Back to open'], ['closed', 'Close']],
  closed: [['open', 'Reopen']],
};

$('title').textContent = 'Support tickets — ' + boardName;
$('me').textContent = agent;
statusIndicator($('status'), client);

// Development mode: the REST adapter, as the backend would call it. An
// error keeps the whole of its body, so a refused bulk update can name the
// tickets it refused.
async function rest(path, body) {
  const r = await fetch(path, { method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify(body) });
  const j = await r.json().catch(() => null);
  if (!r.ok) throw (j && j.error) || { code: r.status, reason: r.statusText };
  return j;
}

function showError(e) {
  if (!e) { $('error').textContent = ''; return; }
  let text = e.reason || e.message;
  const d = e;
  if (d.unknown && d.unknown.length) text += ' — unknown: ' + d.unknown.join(', ');
  if (d.refused && d.refused.length) {
    text += ' — refused: ' + d.refused.map((r) => `${r.id} (${LABEL[r.status] || r.status})`).join(', ');
  }
  $('error').textContent = text;
}

function tickets() {
  const out = [];
  for (const [key, e] of sub.state) if (key.startsWith('ticket:') && e.value && typeof e.value === 'object') out.push(e.value);
  return out;
}

function matches(t, status, q) {
  if (status && t.status !== status) return false;
  if (!q) return true;
  return [t.id, t.title, t.description, t.requester, t.assignee || ''].some((s) => String(s).toLowerCase().includes(q));
}

function act(path, body) {
  showError(null);
  return rest(path, body).then(() => showError(null), showError);
}

function row(t) {
  const box = el('input', { type: 'checkbox', class: 'pick', dataset: { id: t.id } });
  box.checked = selected.has(t.id);
  box.addEventListener('change', () => {
    if (box.checked) selected.add(t.id); else selected.delete(t.id);
    $('selected-count').textContent = String(selected.size);
  });
  const buttons = (NEXT[t.status] || []).map(([to, label]) => el('button', {
    type: 'button', class: 'move', dataset: { to },
    onclick: () => act('/api/tickets/' + encodeURIComponent(t.id) + '/status', { status: to, by: agent }),
  }, label));
  if (t.assignee !== agent) {
    buttons.push(el('button', {
      type: 'button', class: 'take',
      onclick: () => act('/api/tickets/' + encodeURIComponent(t.id) + '/assign', { assignee: agent, by: agent }),
    }, 'Take'));
  }
  return el('tr', { id: 'ticket-' + t.id, dataset: { id: t.id, status: t.status, priority: t.priority } },
    el('td', {}, box), el('td', { class: 'tid' }, t.id), el('td', { class: 'ttitle' }, t.title),
    el('td', {}, t.requester), el('td', { class: 'prio' }, t.priority), el('td', { class: 'assignee' }, t.assignee || '—'),
    el('td', {}, el('span', { class: 'badge', dataset: { status: t.status } }, LABEL[t.status] || t.status)),
    el('td', { class: 'ncomments' }, String(t.comments || 0)), el('td', { class: 'actions' }, ...buttons));
}

function render(changedKeys) {
  const status = $('filter').value;
  const q = $('search').value.trim().toLowerCase();
  const all = tickets();
  const shown = all.filter((t) => matches(t, status, q));
  // Newest first: generated ids and created times both grow.
  shown.sort((a, b) => b.created - a.created || (a.id < b.id ? 1 : -1));
  for (const id of [...selected]) if (!all.some((t) => t.id === id)) selected.delete(id);
  $('list').replaceChildren(...shown.map(row));
  $('empty').classList.toggle('hidden', shown.length > 0);
  $('selected-count').textContent = String(selected.size);
  const n = { open: 0, in_progress: 0, closed: 0 };
  for (const t of all) if (t.status in n) n[t.status]++;
  $('counts').textContent = `${n.open} open · ${n.in_progress} in progress · ${n.closed} closed`;
  for (const key of changedKeys || []) {
    const tr = document.getElementById('ticket-' + key.slice('ticket:'.length));
    if (tr) {
      tr.classList.add('flash');
      setTimeout(() => tr.classList.remove('flash'), 600);
    }
  }
}

sub.on('state', (changes, how) => render(how.snapshot ? null : changes.map((c) => c.key)));
sub.on('error', showError);
client.connect().catch(showError);

$('filter').addEventListener('change', () => render(null));
$('search').addEventListener('input', () => render(null));
$('select-all').addEventListener('change', () => {
  for (const b of document.querySelectorAll('#list input.pick')) {
    b.checked = $('select-all').checked;
    if (b.checked) selected.add(b.dataset.id); else selected.delete(b.dataset.id);
  }
  $('selected-count').textContent = String(selected.size);
});
$('create').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const body = { title: $('new-title').value.trim(), requester: $('new-requester').value.trim(),
    priority: $('new-priority').value };
  const d = $('new-description').value.trim();
  if (d) body.description = d;
  showError(null);
  rest('/api/tickets', body).then(() => {
    $('new-title').value = '';
    $('new-description').value = '';
  }, showError);
});
$('bulk-apply').addEventListener('click', () => {
  if (!selected.size) { showError({ message: 'select tickets first' }); return; }
  const ids = [...selected];
  act('/api/tickets/bulk/status', { ids, status: $('bulk-status').value, by: agent }).then(() => {
    if (!$('error').textContent) {
      selected.clear();
      $('select-all').checked = false;
      render(null);
    }
  });
});
