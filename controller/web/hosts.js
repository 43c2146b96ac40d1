// The participant panel and what depends on my role and the room's settings: the host's
// controls, the waiting list, breakout rooms, and what every control button shows.
import { CLIENT, ROLE, SERVER } from './protocol.js';
import { localRecording } from './recording.js';
import { cloudRoom, renderCloud } from './cloud.js';
import { isPinned, showRecorders, tileOf, togglePin } from './grid.js';
import { on, send } from './signal.js';
import { state, isHost, watchOnly, myId } from './state.js';
import { $, banner, button, status } from './dom.js';
import { t } from './i18n.js';

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
  return n === 0 ? t('hosts.room.main_in_sentence') : ((breakout && breakout.rooms[n - 1]) || t('hosts.room.numbered', { n }));
}

function showBreakout() {
  const b = breakout;
  const mine = myRoom();
  let text = '';
  const room = b && b.open && mine ? roomName(mine) : null;
  if (room) text = t('hosts.breakout.banner.in_room', { room });
  if (b && b.open && b.closes_unix_ms) {
    const secs = Math.max(0, Math.round((b.closes_unix_ms - Date.now()) / 1000));
    text = room ? t('hosts.breakout.banner.in_room_closing', { room, secs }) : t('hosts.breakout.banner.closing', { secs });
    clearTimeout(breakoutTick);
    breakoutTick = setTimeout(showBreakout, 1000);
  }
  $('breakout-banner').textContent = text.trim();
  $('breakout-banner').hidden = !text;
  for (const p of state.participants.values()) {
    const tile = tileOf(p.participant_id);
    if (tile) tile.hidden = roomOf(p.participant_id) !== mine;
  }
  renderPeople();
}

on(SERVER.breakout, (m) => { breakout = m; showBreakout(); });
on(SERVER.broadcast, (m) => banner(t('hosts.broadcast.message', { name: m.by_name || t('hosts.broadcast.default_name'), text: m.text })));

// ---- The participant panel. ----
// A host's buttons for participant `p` (not themselves).
function hostActions(p) {
  const id = p.participant_id;
  const make = (r) => () => send({ type: CLIENT.set_role, participant_id: id, role: r });
  const acts = document.createElement('span');
  acts.className = 'actions';
  acts.append(
    button(t('hosts.action.mute'), () => send({ type: CLIENT.mute_participant, participant_id: id, audio: true }), t('hosts.action.mute.label', { name: p.name })),
    button(t('hosts.action.stop_video'), () => send({ type: CLIENT.mute_participant, participant_id: id, video: true }), t('hosts.action.stop_video.label', { name: p.name })),
    button(t('hosts.action.ask_unmute'), () => send({ type: CLIENT.ask_unmute, participant_id: id }), t('hosts.action.ask_unmute.label', { name: p.name })),
  );
  if (p.hand_raised_unix_ms != null) acts.append(button(t('hosts.action.lower_hand'), () => send({ type: CLIENT.lower_hand, participant_id: id }), t('hosts.action.lower_hand.label', { name: p.name })));
  if (p.role === ROLE.co_host) acts.append(button(t('hosts.action.remove_co_host'), make(ROLE.attendee), t('hosts.action.remove_co_host.label', { name: p.name })));
  else if (p.role !== ROLE.host) acts.append(button(t('hosts.action.make_co_host'), make(ROLE.co_host), t('hosts.action.make_co_host.label', { name: p.name })));
  // A webinar's attendee can be let talk (made a panelist for a while) and back.
  if (state.info && state.info.kind === 'webinar') {
    if (p.role === ROLE.attendee) acts.append(button(t('hosts.action.let_talk'), make(ROLE.panelist), t('hosts.action.let_talk.label', { name: p.name })));
    else if (p.role === ROLE.panelist) acts.append(button(t('hosts.action.back_to_attendee'), make(ROLE.attendee), t('hosts.action.back_to_attendee.label', { name: p.name })));
  }
  if (state.role === ROLE.host && p.role !== ROLE.host) acts.append(button(t('hosts.action.make_host'), make(ROLE.host), t('hosts.action.make_host.label', { name: p.name })));
  acts.append(
    button(t('hosts.action.rename'), () => { const n = prompt(t('hosts.action.rename.prompt', { name: p.name }), p.name); if (n) send({ type: CLIENT.rename, participant_id: id, name: n }); }, t('hosts.action.rename.label', { name: p.name })),
    button(t('hosts.action.remove'), () => { if (confirm(t('hosts.action.remove.confirm', { name: p.name }))) send({ type: CLIENT.remove, participant_id: id }); }, t('hosts.action.remove.label', { name: p.name })),
  );
  return acts;
}

// A host's choice of breakout room for `p`.
function roomSelect(p, room) {
  const sel = document.createElement('select');
  sel.setAttribute('aria-label', t('hosts.breakout.select.label', { name: p.name }));
  [t('hosts.breakout.select.main_room')].concat(breakout.rooms).forEach((name, i) => {
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
  const roleName = { [ROLE.host]: t('hosts.person.role.host'), [ROLE.co_host]: t('hosts.person.role.co_host'), [ROLE.panelist]: t('hosts.person.role.panelist') };
  const marks = [p.role !== ROLE.attendee ? (roleName[p.role] || p.role) : null, p.audio_muted ? t('hosts.person.muted') : null,
    p.video_muted ? t('hosts.person.video_off') : null, p.hand_raised_unix_ms != null ? t('hosts.person.hand_raised') : null].filter(Boolean);
  const room = breakout && breakout.rooms.length ? (breakout.assignment[p.participant_id] || 0) : null;
  if (room) marks.push(t('hosts.person.in_room', { room: roomName(room) }));
  who.textContent = marks.length ? t('hosts.person.name_with_marks', { name: p.name, marks: marks.join(t('hosts.person.marks_separator')) }) : p.name;
  li.append(who);
  if (isHost() && room !== null) li.append(roomSelect(p, room));
  if (isHost() && p.participant_id !== myId()) li.append(hostActions(p));
  if (p.participant_id !== myId()) {
    const pinned = isPinned(p.participant_id);
    li.append(button(pinned ? t('hosts.person.unpin') : t('hosts.person.pin'), () => { togglePin(p.participant_id); renderPeople(); }, pinned ? t('hosts.person.unpin.label', { name: p.name }) : t('hosts.person.pin.label', { name: p.name })));
  }
  return li;
}

function waitingPerson(p) {
  const li = document.createElement('li');
  li.className = 'waiting-person';
  li.dataset.pid = p.participant_id;
  li.append(document.createTextNode(p.name + ' '),
    button(t('hosts.waiting.admit'), () => send({ type: CLIENT.admit, participant_id: p.participant_id }), t('hosts.waiting.admit.label', { name: p.name })),
    button(t('hosts.waiting.deny'), () => send({ type: CLIENT.deny, participant_id: p.participant_id }), t('hosts.waiting.deny.label', { name: p.name })));
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
  $('people-toggle').textContent = isHost() && state.waiting.size
    ? t('hosts.people.toggle_waiting', { n, waiting: state.waiting.size })
    : t('hosts.people.toggle', { n });
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
  $('people-range').textContent = t('hosts.people.range', { from: from + 1, to: from + shown.length, total });
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
  $('record-local').textContent = localRecording.active() ? t('hosts.controls.record_local.stop') : t('hosts.controls.record_local.start');
  $('record-local').setAttribute('aria-pressed', String(localRecording.active()));
  $('end').hidden = state.role !== ROLE.host;
  $('lock').textContent = state.room.locked ? t('hosts.controls.unlock') : t('hosts.controls.lock');
  $('lock').setAttribute('aria-pressed', String(!!state.room.locked));
  $('allow-unmute').checked = state.room.allow_unmute !== false;
  $('waiting-room').checked = !!state.room.waiting_room;
  $('hand').textContent = state.handRaised ? t('hosts.controls.lower_hand') : t('hosts.controls.raise_hand');
  $('hand').setAttribute('aria-pressed', String(state.handRaised));
  $('mute').textContent = state.audioMuted ? t('hosts.controls.unmute') : t('hosts.controls.mute');
  $('mute').setAttribute('aria-pressed', String(state.audioMuted));
  $('camera').textContent = state.videoMuted ? t('hosts.controls.camera_on') : t('hosts.controls.camera_off');
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
  status(t('hosts.record_local.stopped', { reason: m.reason }), true);
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
$('end').onclick = () => { if (confirm(t('hosts.end.confirm'))) send({ type: CLIENT.end_meeting }); };
