// Polls, Q&A and reactions: lists the node sends whole (`polls`, `questions`), drawn
// again each time, and reactions shown for a moment on the sender's tile.
import { CLIENT, SERVER } from './protocol.js';
import { on, send } from './signal.js';
import { isHost, myId } from './state.js';
import { $, button, el, status, togglePanel } from './dom.js';

const REACTIONS = ['👍', '👏', '❤️', '😂', '😮', '🎉', '🤔', '👋'];
let polls = [];
let questions = [];

// The form to answer an open poll (once): free text, or its options as radio buttons
// or checkboxes.
function answerForm(p) {
  const form = el('form');
  form.setAttribute('aria-label', 'Answer: ' + p.question);
  const set = el('fieldset');
  if (p.kind === 'text') {
    const t = el('input');
    t.maxLength = 500; t.required = true; t.name = 'text';
    t.setAttribute('aria-label', 'Your answer');
    set.append(t);
  } else {
    p.options.forEach((o, i) => {
      const lab = el('label', null, 'check');
      const input = el('input');
      input.type = p.kind === 'single' ? 'radio' : 'checkbox';
      input.name = 'choice-' + p.poll_id;
      input.value = String(i);
      lab.append(input, ' ' + o);
      set.append(lab);
    });
  }
  form.append(set, el('button', 'Submit answer'));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    if (p.kind === 'text') {
      send({ type: CLIENT.poll_answer, poll_id: p.poll_id, text: form.querySelector('input').value });
    } else {
      const choices = [...form.querySelectorAll('input:checked')].map((c) => Number(c.value));
      if (!choices.length) { status('Choose an answer first.', true); return; }
      send({ type: CLIENT.poll_answer, poll_id: p.poll_id, choices });
    }
  });
  return form;
}

// A poll's results: the count, a bar per option, and the free-text answers.
function results(li, p) {
  const r = p.results;
  li.append(el('div', r.answered + (r.answered === 1 ? ' answer' : ' answers')));
  p.options.forEach((o, i) => {
    const n = r.tally[i] || 0;
    const row = el('div', o + ': ' + n);
    const bar = el('div', null, 'bar');
    bar.style.width = (r.answered ? Math.round(100 * n / r.answered) : 0) + '%';
    row.append(bar);
    li.append(row);
  });
  if (r.texts.length) {
    const ul = el('ul');
    r.texts.forEach((t) => ul.append(el('li', t)));
    li.append(ul);
  }
}

// One poll: its question, a form to answer while it is open (once), and its results
// where they are shown (hosts, or everyone once shared); hosts get its actions.
function pollItem(p) {
  const li = el('li', null, 'poll');
  li.id = 'poll-' + p.poll_id;
  li.append(el('strong', p.question));
  const how = { draft: 'Prepared, not launched', open: 'Open', ended: 'Ended' }[p.state] || p.state;
  li.append(el('div', how + (p.anonymous ? ' · anonymous' : '') + (p.shared ? ' · results shared' : '')));
  if (p.state === 'open' && !p.answered_by_me) li.append(answerForm(p));
  else if (p.state === 'open') li.append(el('div', 'You answered. Thank you.'));
  if (p.results) results(li, p);
  if (isHost()) {
    const actions = el('div', null, 'actions');
    const act = (type, text) => actions.append(button(text, () => send({ type, poll_id: p.poll_id }), text + ': ' + p.question));
    if (p.state === 'draft') act(CLIENT.poll_launch, 'Launch');
    if (p.state === 'open') act(CLIENT.poll_end, 'End poll');
    if (p.state === 'ended' && !p.shared) act(CLIENT.poll_share, 'Share results');
    li.append(actions);
  }
  return li;
}

function renderPolls() {
  $('poll-form').hidden = !isHost();
  $('poll-list').replaceChildren(...polls.map(pollItem));
  const open = polls.filter((p) => p.state === 'open' && !p.answered_by_me).length;
  $('polls-toggle').textContent = open ? 'Polls (' + open + ' open)' : 'Polls';
  // A poll to answer opens the panel.
  if (open && $('polls').hidden) togglePanel('polls', true);
}

function questionItem(q) {
  const li = el('li', null, 'question');
  li.append(el('div', q.text));
  li.append(el('div', (q.anonymous ? 'Anonymous' : q.author_name) + ' · ' + q.votes + (q.votes === 1 ? ' vote' : ' votes') +
    (q.dismissed ? ' · dismissed' : '')));
  if (q.answer) li.append(el('div', (q.answered_by_name || 'Host') + ': ' + q.answer, 'answer'));
  if (q.answered_live) li.append(el('div', 'Answered live', 'answer'));
  const actions = el('div', null, 'actions');
  if (!q.voted_by_me && !q.mine) {
    actions.append(button('▲ Upvote', () => send({ type: CLIENT.question_upvote, question_id: q.question_id }), 'Upvote: ' + q.text));
  }
  if (isHost()) {
    actions.append(button('Answer', () => {
      const text = prompt('Your answer to: ' + q.text);
      if (text && text.trim()) send({ type: CLIENT.question_answer, question_id: q.question_id, text: text.trim() });
    }, 'Answer: ' + q.text));
    if (!q.answered_live) actions.append(button('Answered live', () => send({ type: CLIENT.question_answer, question_id: q.question_id, live: true }), 'Mark answered live: ' + q.text));
    if (!q.dismissed) actions.append(button('Dismiss', () => send({ type: CLIENT.question_dismiss, question_id: q.question_id }), 'Dismiss: ' + q.text));
  }
  li.append(actions);
  return li;
}

function renderQuestions() {
  $('qa-list').replaceChildren(...questions.map(questionItem));
}

// A reaction shows on the sender's tile for four seconds, or at the foot of the grid
// when no tile of theirs is shown (on slots the grid holds a page of cameras).
function showReaction(m) {
  const me = myId();
  const t = document.getElementById('tile-' + (m.from === me ? me : m.from));
  const r = el('div', t ? m.emoji : (m.name + ' ' + m.emoji), t ? 'reaction' : 'reaction-toast');
  r.setAttribute('aria-label', m.name + ' reacted ' + m.emoji);
  (t || $('grid')).append(r);
  setTimeout(() => r.remove(), 4000);
}

on(SERVER.polls, (m) => { polls = m.polls || []; renderPolls(); });
on(SERVER.questions, (m) => { questions = m.questions || []; renderQuestions(); });
on(SERVER.reaction, showReaction);

$('polls-toggle').onclick = () => togglePanel('polls', $('polls').hidden);
$('qa-toggle').onclick = () => togglePanel('qa', $('qa').hidden);
for (const e of REACTIONS) $('reactions').append(button(e, () => send({ type: CLIENT.reaction, emoji: e }), 'React ' + e));
$('poll-kind').onchange = () => { $('poll-options').disabled = $('poll-kind').value === 'text'; };
$('poll-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const kind = $('poll-kind').value;
  const options = kind === 'text' ? [] : $('poll-options').value.split('\n').map((o) => o.trim()).filter(Boolean);
  send({ type: CLIENT.poll_create, question: $('poll-question').value.trim(), kind, options, anonymous: $('poll-anonymous').checked });
  $('poll-question').value = '';
  $('poll-options').value = '';
});
$('qa-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const text = $('qa-text').value.trim();
  if (text) send({ type: CLIENT.question_ask, text, anonymous: $('qa-anonymous').checked });
  $('qa-text').value = '';
});
