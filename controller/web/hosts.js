// The participant panel and what depends on my role and the room's settings: the host's
// controls, the waiting list, breakout rooms, and what every control button shows.
import { CLIENT, ROLE, SERVER } from './protocol.js';
import { localRecording } from './recording.js';
import { cloudRoom, renderCloud } from './cloud.js';
import { isPinned, showRecorders, tileOf, togglePin } from './grid.js';
import { on, send } from './signal.js';
import { state, isHost, watchOnly, myId } from './state.js';
import { $, banner, button, status } from './dom.js';

let breakout = null; // the last `breakout`: rooms, assignment, open, my_room, closes_unix_ms
let breakoutTick = null;

// ---- Breakout rooms: which room I am in, and only its participants' tiles. ----
export function roomOf(pid) {
  const b = breakout;
  if (!b || !b.open) return 0;
  return (b.assignment && b.assignment[pid]) || 0;
}
export const myRoom = () => (breakout ? breakout.my_room : 0);

function roomName(n) {
  return n === 0 ? 'the main room' : ((breakout && breakout.rooms[n - 1]) || ('room ' + n));
}

function showBreakout() {
  const b = breakout;
  const mine = myRoom();
  let text = '';
  if (b && b.open && mine) text = 'You are in breakout room ' + roomName(mine) + '.';
  if (b && b.open && b.closes_unix_ms) {
    const secs = Math.max(0, Math.round((b.closes_unix_ms - Date.now()) / 1000));
    text += ' Breakout rooms close in ' + secs + ' s.';
    clearTimeout(breakoutTick);
    breakoutTick = setTimeout(showBreakout, 1000);
  }
  $('breakout-banner').textContent = text.trim();
  $('breakout-banner').hidden = !text;
  for (const p of state.participants.values()) {
    const t = tileOf(p.participant_id);
    if (t) t.hidden = roomOf(p.participant_id) !== mine;
  }
  renderPeople();
}

on(SERVER.breakout, (m) => { breakout = m; showBreakout(); });
on(SERVER.broadcast, (m) => banner((m.by_name || 'The host') + ' to every room: ' + m.text));

// ---- The participant panel. ----
// A host's buttons for participant `p` (not themselves).
function hostActions(p) {
  const id = p.participant_id;
  const make = (r) => () => send({ type: CLIENT.set_role, participant_id: id, role: r });
  const acts = document.createElement('span');
  acts.className = 'actions';
  acts.append(
    button('Mute', () => send({ type: CLIENT.mute_participant, participant_id: id, audio: true }), 'Mute ' + p.name),
    button('Stop video', () => send({ type: CLIENT.mute_participant, participant_id: id, video: true }), 'Stop the video of ' + p.name),
    button('Ask to unmute', () => send({ type: CLIENT.ask_unmute, participant_id: id }), 'Ask ' + p.name + ' to unmute'),
  );
  if (p.hand_raised_unix_ms != null) acts.append(button('Lower hand', () => send({ type: CLIENT.lower_hand, participant_id: id }), 'Lower the hand of ' + p.name));
  if (p.role === ROLE.co_host) acts.append(button('Remove co-host', make(ROLE.attendee), 'Make ' + p.name + ' an attendee'));
  else if (p.role !== ROLE.host) acts.append(button('Make co-host', make(ROLE.co_host), 'Make ' + p.name + ' a co-host'));
  // A webinar's attendee can be let talk (made a panelist for a while) and back.
  if (state.info && state.info.kind === 'webinar') {
    if (p.role === ROLE.attendee) acts.append(button('Let talk', make(ROLE.panelist), 'Make ' + p.name + ' a panelist'));
    else if (p.role === ROLE.panelist) acts.append(button('Back to attendee', make(ROLE.attendee), 'Make ' + p.name + ' an attendee again'));
  }
  if (state.role === ROLE.host && p.role !== ROLE.host) acts.append(button('Make host', make(ROLE.host), 'Make ' + p.name + ' the host'));
  acts.append(
    button('Rename', () => { const n = prompt('New name for ' + p.name, p.name); if (n) send({ type: CLIENT.rename, participant_id: id, name: n }); }, 'Rename ' + p.name),
    button('Remove', () => { if (confirm('Remove ' + p.name + ' from the meeting?')) send({ type: CLIENT.remove, participant_id: id }); }, 'Remove ' + p.name),
  );
  return acts;
}

// A host's choice of breakout room for `p`.
function roomSelect(p, room) {
  const sel = document.createElement('select');
  sel.setAttribute('aria-label', 'Breakout room of ' + p.name);
  ['Main room'].concat(breakout.rooms).forEach((name, i) => {
    const o = document.createElement('option');
    o.value = String(i); o.textContent = name;
    sel.append(o);
  });
  sel.value = String(room);
  sel.onchange = () => send({ type: CLIENT.breakout_assign, participant_id: p.participant_id, room: Number(sel.value) });
  return sel;
}

function person(p) {
  const li = document.createElement('li');
  li.className = 'person';
  li.dataset.pid = p.participant_id;
  const who = document.createElement('span');
  const marks = [p.role !== ROLE.attendee ? p.role : null, p.audio_muted ? 'muted' : null,
    p.video_muted ? 'video off' : null, p.hand_raised_unix_ms != null ? '✋ hand raised' : null].filter(Boolean);
  const room = breakout && breakout.rooms.length ? (breakout.assignment[p.participant_id] || 0) : null;
  if (room) marks.push('in ' + roomName(room));
  who.textContent = p.name + (marks.length ? ' (' + marks.join(', ') + ')' : '');
  li.append(who);
  if (isHost() && room !== null) li.append(roomSelect(p, room));
  if (isHost() && p.participant_id !== myId()) li.append(hostActions(p));
  if (p.participant_id !== myId()) {
    const pinned = isPinned(p.participant_id);
    li.append(button(pinned ? 'Unpin' : 'Pin', () => { togglePin(p.participant_id); renderPeople(); }, (pinned ? 'Unpin ' : 'Pin ') + p.name));
  }
  return li;
}

function waitingPerson(p) {
  const li = document.createElement('li');
  li.className = 'waiting-person';
  li.dataset.pid = p.participant_id;
  li.append(document.createTextNode(p.name + ' '),
    button('Admit', () => send({ type: CLIENT.admit, participant_id: p.participant_id }), 'Admit ' + p.name),
    button('Deny', () => send({ type: CLIENT.deny, participant_id: p.participant_id }), 'Deny ' + p.name));
  return li;
}

// The panel lists a page of people at a time, and is drawn at most once per turn of the
// event loop (a roster batch of fifty changes draws it once) and only while it is open:
// a meeting of hundreds costs the page no work per change.
const PEOPLE_PER_PAGE = 100;
let peoplePage = 0;
let drawPending = false;

let pageAsked = false; // a `roster_page` is on its way

export function renderPeople() {
  const n = state.participants.size + state.unlisted + 1;
  $('people-toggle').textContent = 'Participants (' + n + ')' + (isHost() && state.waiting.size ? ' · ' + state.waiting.size + ' waiting' : '');
  if (drawPending) return;
  drawPending = true;
  setTimeout(drawPeople, 0);
}

function drawPeople() {
  drawPending = false;
  $('waiting-list-box').hidden = !isHost() || state.waiting.size === 0;
  if ($('people').hidden) return;
  const all = [...state.participants.values()];
  // Raised hands first, in the order they went up.
  all.sort((a, b) => (a.hand_raised_unix_ms ?? Infinity) - (b.hand_raised_unix_ms ?? Infinity) || a.joined_unix_ms - b.joined_unix_ms);
  const total = all.length + state.unlisted;
  const pages = Math.max(1, Math.ceil(total / PEOPLE_PER_PAGE));
  peoplePage = Math.min(peoplePage, pages - 1);
  const from = peoplePage * PEOPLE_PER_PAGE;
  const shown = all.slice(from, from + PEOPLE_PER_PAGE);
  // This page reaches past whom the node has listed to us: ask for the next page.
  if (state.unlisted > 0 && from + PEOPLE_PER_PAGE > all.length && !pageAsked) {
    pageAsked = true;
    send({ type: CLIENT.roster_page, from: state.rosterNext });
  }
  $('people-list').replaceChildren(...shown.map(person));
  $('people-pager').hidden = pages < 2;
  $('people-range').textContent = (from + 1) + '–' + (from + shown.length) + ' of ' + total;
  $('waiting-list').replaceChildren(...[...state.waiting.values()].map(waitingPerson));
}
// The node answered `roster_page`: its people are in the map now.
export function rosterPageCame() { pageAsked = false; renderPeople(); }
$('people-prev').onclick = () => { peoplePage = Math.max(0, peoplePage - 1); renderPeople(); };
$('people-next').onclick = () => { peoplePage += 1; renderPeople(); };

// Every control whose look depends on my role, the room's settings or my own state.
export function renderControls() {
  $('host-controls').hidden = !isHost();
  $('poll-form').hidden = !isHost();
  $('board-clear').hidden = !isHost();
  $('board-allow-row').hidden = !isHost();
  $('board-allow').checked = state.room.attendees_may_draw !== false;
  $('local-recording-allowed').checked = state.room.local_recording_allowed !== false;
  $('attendee-chat-row').hidden = !state.room.webinar;
  $('attendee-chat').checked = !!state.room.attendee_chat_everyone;
  $('record-local').hidden = !isHost() && state.room.local_recording_allowed === false && !localRecording.active();
  $('record-local').textContent = localRecording.active() ? 'Stop recording' : 'Record on this computer';
  $('record-local').setAttribute('aria-pressed', String(localRecording.active()));
  $('end').hidden = state.role !== ROLE.host;
  $('lock').textContent = state.room.locked ? 'Unlock meeting' : 'Lock meeting';
  $('lock').setAttribute('aria-pressed', String(!!state.room.locked));
  $('allow-unmute').checked = state.room.allow_unmute !== false;
  $('waiting-room').checked = !!state.room.waiting_room;
  $('hand').textContent = state.handRaised ? 'Lower hand' : 'Raise hand';
  $('hand').setAttribute('aria-pressed', String(state.handRaised));
  $('mute').textContent = state.audioMuted ? 'Unmute' : 'Mute';
  $('mute').setAttribute('aria-pressed', String(state.audioMuted));
  $('camera').textContent = state.videoMuted ? 'Camera on' : 'Camera off';
  $('camera').setAttribute('aria-pressed', String(state.videoMuted));
  for (const b of ['mute', 'camera', 'share']) $(b).hidden = watchOnly();
  renderCloud();
  renderPeople();
}

on(SERVER.room, (m) => {
  state.room = m;
  if (m.title) { state.title = m.title; $('title').textContent = m.title; }
  $('lock-badge').hidden = !m.locked;
  cloudRoom(m);
  renderControls();
});

// ---- Recording on this computer: the button, and a host forbidding it. ----
function recordingChanged() {
  renderControls();
  showRecorders();
}
$('record-local').onclick = () => {
  if (localRecording.active()) localRecording.stop(); else localRecording.start();
  recordingChanged();
};
on(SERVER.local_recording_stop, (m) => {
  localRecording.stop();
  recordingChanged();
  status('Recording stopped: ' + m.reason + '. What was recorded is saved.', true);
});
// The node refused our `local_recording` (session.js's `error` handler calls this).
export function recordingRefused() {
  localRecording.stop();
  recordingChanged();
}

// ---- The panel's toggle and the host's controls. ----
$('people-toggle').onclick = () => {
  const open = $('people').hidden;
  $('people').hidden = !open;
  $('people-toggle').setAttribute('aria-expanded', String(open));
  renderPeople();
};
$('lock').onclick = () => send({ type: CLIENT.lock, locked: !state.room.locked });
$('mute-all').onclick = () => send({ type: CLIENT.mute_all, allow_unmute: $('allow-unmute').checked });
$('allow-unmute').onchange = () => send({ type: CLIENT.allow_unmute, allowed: $('allow-unmute').checked });
$('waiting-room').onchange = () => send({ type: CLIENT.waiting_room, enabled: $('waiting-room').checked });
$('local-recording-allowed').onchange = () => send({ type: CLIENT.local_recording_allow, allowed: $('local-recording-allowed').checked });
$('attendee-chat').onchange = () => send({ type: CLIENT.attendee_chat, everyone: $('attendee-chat').checked });
$('admit-all').onclick = () => send({ type: CLIENT.admit_all });
$('breakout-create').onclick = () => send({ type: CLIENT.breakout_create, rooms: Number($('breakout-count').value) || 1 });
$('breakout-auto').onclick = () => send({ type: CLIENT.breakout_auto });
$('breakout-open').onclick = () => send({ type: CLIENT.breakout_open });
$('breakout-close').onclick = () => send({ type: CLIENT.breakout_close, seconds: 60 });
$('broadcast-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const text = $('broadcast-text').value.trim();
  if (text) send({ type: CLIENT.breakout_broadcast, text });
  $('broadcast-text').value = '';
});
$('end').onclick = () => { if (confirm('End the meeting for everyone?')) send({ type: CLIENT.end_meeting }); };
