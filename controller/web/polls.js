// Polls, Q&A and reactions: lists the node sends whole (`polls`, `questions`), drawn
// again each time, and reactions shown for a moment on the sender's tile.
import { CLIENT, SERVER } from './protocol.js';
import { on, send } from './signal.js';
import { isHost, myId } from './state.js';
import { $, button, el, status, togglePanel } from './dom.js';
import { t, tn } from './i18n.js';

const REACTIONS = ['👍', '👏', '❤️', '😂', '😮', '🎉', '🤔', '👋'];
let polls = [];
let questions = [];

// The form to answer an open poll (once): free text, or its options as radio buttons
// or checkboxes.
function answerForm(p) {
  const form = el('form');
  form.setAttribute('aria-label', t('polls.answer.form.label', { question: p.question }));
  const set = el('fieldset');
  if (p.kind === 'text') {
    const box = el('input');
    box.maxLength = 500; box.required = true; box.name = 'text';
    box.setAttribute('aria-label', t('polls.answer.text.label'));
    set.append(box);
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
  form.append(set, el('button', t('polls.answer.submit')));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    if (p.kind === 'text') {
      send({ type: CLIENT.poll_answer, poll_id: p.poll_id, text: form.querySelector('input').value });
    } else {
      const choices = [...form.querySelectorAll('input:checked')].map((c) => Number(c.value));
      if (!choices.length) { status(t('polls.answer.choose_first'), true); return; }
      send({ type: CLIENT.poll_answer, poll_id: p.poll_id, choices });
    }
  });
  return form;
}

// A poll's results: the count, a bar per option, and the free-text answers.
function results(li, p) {
  const r = p.results;
  li.append(el('div', tn('polls.results.answers', r.answered)));
  p.options.forEach((o, i) => {
    const n = r.tally[i] || 0;
    const row = el('div', t('polls.results.tally', { option: o, n }));
    const bar = el('div', null, 'bar');
    bar.style.width = (r.answered ? Math.round(100 * n / r.answered) : 0) + '%';
    row.append(bar);
    li.append(row);
  });
  if (r.texts.length) {
    const ul = el('ul');
    r.texts.forEach((text) => ul.append(el('li', text)));
    li.append(ul);
  }
}

// One poll: its question, a form to answer while it is open (once), and its results
// where they are shown (hosts, or everyone once shared); hosts get its actions.
function pollItem(p) {
  const li = el('li', null, 'poll');
  li.id = 'poll-' + p.poll_id;
  li.append(el('strong', p.question));
  const how = { draft: t('polls.state.draft'), open: t('polls.state.open'), ended: t('polls.state.ended') }[p.state] || p.state;
  let line = how;
  if (p.anonymous) line = t('polls.state.with_anonymous', { line });
  if (p.shared) line = t('polls.state.with_results_shared', { line });
  li.append(el('div', line));
  if (p.state === 'open' && !p.answered_by_me) li.append(answerForm(p));
  else if (p.state === 'open') li.append(el('div', t('polls.answered_thanks')));
  if (p.results) results(li, p);
  if (isHost()) {
    const actions = el('div', null, 'actions');
    const act = (type, text, label) => actions.append(button(text, () => send({ type, poll_id: p.poll_id }), label));
    if (p.state === 'draft') act(CLIENT.poll_launch, t('polls.action.launch'), t('polls.action.launch.label', { question: p.question }));
    if (p.state === 'open') act(CLIENT.poll_end, t('polls.action.end'), t('polls.action.end.label', { question: p.question }));
    if (p.state === 'ended' && !p.shared) act(CLIENT.poll_share, t('polls.action.share'), t('polls.action.share.label', { question: p.question }));
    li.append(actions);
  }
  return li;
}

function renderPolls() {
  $('poll-form').hidden = !isHost();
  $('poll-list').replaceChildren(...polls.map(pollItem));
  const open = polls.filter((p) => p.state === 'open' && !p.answered_by_me).length;
  $('polls-toggle').textContent = open ? tn('polls.toggle.open', open) : t('polls.toggle');
  // A poll to answer opens the panel.
  if (open && $('polls').hidden) togglePanel('polls', true);
}

function questionItem(q) {
  const li = el('li', null, 'question');
  li.append(el('div', q.text));
  const meta = tn('polls.qa.meta', q.votes, { author: q.anonymous ? t('polls.qa.anonymous') : q.author_name });
  li.append(el('div', q.dismissed ? t('polls.qa.meta.with_dismissed', { line: meta }) : meta));
  if (q.answer) li.append(el('div', t('polls.qa.answer.text', { name: q.answered_by_name || t('polls.qa.answer.default_name'), answer: q.answer }), 'answer'));
  if (q.answered_live) li.append(el('div', t('polls.qa.answered_live'), 'answer'));
  const actions = el('div', null, 'actions');
  if (!q.voted_by_me && !q.mine) {
    actions.append(button(t('polls.qa.action.upvote'), () => send({ type: CLIENT.question_upvote, question_id: q.question_id }), t('polls.qa.action.upvote.label', { text: q.text })));
  }
  if (isHost()) {
    actions.append(button(t('polls.qa.action.answer'), () => {
      const text = prompt(t('polls.qa.action.answer.prompt', { text: q.text }));
      if (text && text.trim()) send({ type: CLIENT.question_answer, question_id: q.question_id, text: text.trim() });
    }, t('polls.qa.action.answer.label', { text: q.text })));
    if (!q.answered_live) actions.append(button(t('polls.qa.action.answered_live'), () => send({ type: CLIENT.question_answer, question_id: q.question_id, live: true }), t('polls.qa.action.answered_live.label', { text: q.text })));
    if (!q.dismissed) actions.append(button(t('polls.qa.action.dismiss'), () => send({ type: CLIENT.question_dismiss, question_id: q.question_id }), t('polls.qa.action.dismiss.label', { text: q.text })));
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
  const tile = document.getElementById('tile-' + (m.from === me ? me : m.from));
  const r = el('div', tile ? m.emoji : t('polls.reaction.toast', { name: m.name, emoji: m.emoji }), tile ? 'reaction' : 'reaction-toast');
  r.setAttribute('aria-label', t('polls.reaction.label', { name: m.name, emoji: m.emoji }));
  (tile || $('grid')).append(r);
  setTimeout(() => r.remove(), 4000);
}

on(SERVER.polls, (m) => { polls = m.polls || []; renderPolls(); });
on(SERVER.questions, (m) => { questions = m.questions || []; renderQuestions(); });
on(SERVER.reaction, showReaction);

$('polls-toggle').onclick = () => togglePanel('polls', $('polls').hidden);
$('qa-toggle').onclick = () => togglePanel('qa', $('qa').hidden);
for (const e of REACTIONS) $('reactions').append(button(e, () => send({ type: CLIENT.reaction, emoji: e }), t('polls.reaction.send.label', { emoji: e })));
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
