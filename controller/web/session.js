// A session: the join through the controller, then one WebSocket to the media node and
// one RTCPeerConnection; the messages about the session and who is in it; leaving, and
// rejoining on our own when the connection is lost.
import { CLIENT, CLOSE, SERVER } from './protocol.js';
import { e2ee } from './e2ee.js';
import { boardRefused } from './board.js';
import { explain, loadMeeting, constraints, signInFirst, whoAmI } from './join.js';
import { addTrack, roleChanged, sendMute, sendOffer, setOwnMute, showSelf } from './media.js';
import { localRecording } from './recording.js';
import { awaitRoom, consent } from './cloud.js';
import { clearTiles, label, removeTile, resetView, sendView, setActiveSpeaker, showRecorders, showSlots, slotTrack, startQuality, stopQuality, tile, tileOf, undecryptable } from './grid.js';
import { myRoom, recordingRefused, renderControls, renderPeople, roomOf, rosterPageCame } from './hosts.js';
import { dispatch, on, send } from './signal.js';
import { state, watchOnly } from './state.js';
import { $, banner, params, status } from './dom.js';
import { t } from './i18n.js';

let leaving = false; // we left, or were sent away: a closed connection is not lost
let rejoining = false;
let attempts = 0; // rejoins since the connection was last up
let lostNode = null; // the node we lost, named in the rejoin

// ---- Joining. ----
export async function join() {
  const meeting = $('meeting').value.trim();
  const name = $('name').value.trim();
  const password = $('password').value;
  if (!meeting || !name) { status(t('session.join.missing_fields'), true); return; }
  state.meeting = meeting;
  if (!state.info) await loadMeeting(meeting);
  if (state.info && state.info.e2ee && !e2ee.key && !await prepareE2ee(meeting)) return;
  status(t('session.join.joining'));
  let resp, body;
  try {
    // A signed-in browser's session cookie goes along: its changes carry the CSRF token.
    const me = await whoAmI();
    const headers = { 'content-type': 'application/json' };
    if (me && me.csrf) headers['x-fjord-csrf'] = me.csrf;
    resp = await fetch('/v1/meetings/' + encodeURIComponent(meeting) + '/join', {
      method: 'POST', headers,
      body: JSON.stringify(joinRequest(name, password)),
    });
    body = await resp.json().catch(() => null);
  } catch (e) {
    if (rejoining) { lost(t('session.lost.unreachable')); return; }
    status(t('session.join.unreachable'), true);
    return;
  }
  // Rejoining after a lost connection: a busy or unreachable service is tried again.
  if (!resp.ok && rejoining && resp.status >= 500) {
    lost(explain(resp.status, body));
    return;
  }
  if (!resp.ok && body && body.error === 'sign_in_required') { signInFirst(); return; }
  if (!resp.ok) {
    rejoining = false;
    if ((resp.status === 401 || resp.status === 403) && (body && body.error) !== 'meeting_locked') $('password-row').hidden = false;
    status(explain(resp.status, body), true);
    return;
  }
  state.joined = body;
  state.role = body.role;
  await connect();
}

function joinRequest(name, password) {
  // `?region=` asks for a region explicitly (honoured only where the controller allows
  // overrides: tests and demos of a multi-region cluster on one machine).
  const request = { name };
  if (password) request.password = password;
  for (const key of ['host_key', 'panelist_key', 'registrant_key', 'region']) {
    if (params.get(key)) request[key] = params.get(key);
  }
  // Rejoining: say which node we lost, so that the controller checks it first.
  if (rejoining && lostNode) request.lost_node = lostNode;
  return request;
}

// An encrypted meeting needs its passphrase and a browser that can encrypt frames;
// false (and the status says why) without them.
async function prepareE2ee(meeting) {
  const passphrase = $('e2ee-passphrase').value || e2ee.fromLink();
  if (!passphrase) {
    status(t('session.e2ee.passphrase_missing'), true);
    return false;
  }
  if (!e2ee.supported()) {
    status(t('session.e2ee.unsupported'), true);
    return false;
  }
  await e2ee.prepare(meeting, passphrase, undecryptable);
  $('e2ee-badge').hidden = false;
  return true;
}

async function connect() {
  const cameraOff = $('join-camera-off').checked || params.get('camera') === 'off';
  const joinMuted = $('join-muted').checked || params.get('muted') === '1';
  if (watchOnly()) {
    // Nothing to send: the preview's camera and microphone are let go.
    if (state.local) state.local.getTracks().forEach((t) => t.stop());
    state.local = new MediaStream();
    banner(t('session.webinar.watching'));
  } else if (!state.local) {
    try {
      const c = constraints();
      state.local = await navigator.mediaDevices.getUserMedia(cameraOff ? { audio: c.audio } : c);
    } catch (e) {
      status(t('session.devices_unavailable', { error: e.message }), true);
      return;
    }
  }
  if (cameraOff) {
    state.local.getVideoTracks().forEach((t) => { t.stop(); state.local.removeTrack(t); });
    state.videoMuted = true;
  }
  if (joinMuted) state.audioMuted = true;
  state.local.getAudioTracks().forEach((t) => { t.enabled = !state.audioMuted; });
  state.pc = peerConnection();
  const ws = new WebSocket(state.joined.signal_url + '?token=' + encodeURIComponent(state.joined.token));
  state.ws = ws;
  ws.onmessage = (e) => dispatch(JSON.parse(e.data)).catch((err) => console.error(err));
  ws.onclose = () => { if (!leaving && state.ws === ws) lost(t('session.lost.connection')); };
  $('prejoin').hidden = true;
}

function peerConnection() {
  // TURN servers of the node's region, when the cluster has them: the way out of
  // networks that block UDP or direct paths.
  const pc = new RTCPeerConnection({
    bundlePolicy: 'max-bundle',
    iceServers: state.joined.ice_servers || [],
    ...e2ee.pcConfig(),
  });
  for (const track of state.local.getTracks()) addTrack(pc, track);
  // Something to negotiate, so that the connection comes up before others' tracks do.
  if (!state.local.getTracks().length) pc.addTransceiver('audio', { direction: 'recvonly' });
  pc.ontrack = (e) => {
    e2ee.receiver(e.receiver, e.transceiver.mid);
    slotTrack(e.transceiver.mid, e.track);
  };
  pc.onconnectionstatechange = () => {
    if (pc.connectionState === 'connected') { attempts = 0; rejoining = false; banner(''); }
    if (pc.connectionState === 'disconnected') banner(t('session.connection.interrupted'));
    if (pc.connectionState === 'failed') lost(t('session.lost.media_failed'));
  };
  return pc;
}

function showMeeting() {
  $('waiting').hidden = true;
  $('meeting-view').hidden = false;
  if (!watchOnly()) showSelf();
  renderControls();
}

// ---- Leaving, and losing the connection. ----
function teardown() {
  stopQuality();
  if (state.pc) state.pc.close();
  if (state.ws) state.ws.close();
  state.pc = null; state.ws = null; state.welcomed = false;
  state.midToParticipant.clear();
  resetView();
  recorders.clear();
  state.participants.clear();
  state.unlisted = 0;
  state.waiting.clear();
  clearTiles();
}

function stopLocal() {
  if (state.local) state.local.getTracks().forEach((t) => t.stop());
}

// The visit is over (we left, or were sent away): `text` says why.
function stop(text, isError) {
  leaving = true;
  teardown();
  stopLocal();
  $('meeting-view').hidden = true;
  $('waiting').hidden = true;
  status(text, isError);
}

export function leave() {
  leaving = true;
  localRecording.stop();
  send({ type: CLIENT.leave });
  stop(t('session.left'));
}

// Rejoins at once (a quarter second, jittered so that a node's participants do not all
// come back in the same instant), then backing off to 4 s between attempts; a join
// that answers a 4xx (the meeting ended, is full, is locked…) stops it.
function lost(why) {
  if (state.joined) lostNode = state.joined.node_id;
  teardown();
  status(t('session.lost.rejoining', { why }), true);
  banner(t('session.lost.banner'));
  rejoining = true;
  const wait = Math.min(4000, 250 * 2 ** attempts) * (0.5 + Math.random() / 2);
  attempts += 1;
  setTimeout(() => { if (!leaving) join(); }, wait);
}

// Why a session ended, by its code (the `reason` is for people, and may be reworded):
// a newer session of ours, a host's decision or the meeting's end stop the visit; the
// rest is a lost connection, rejoined (on another node if this one is going away).
on(SERVER.closed, (m) => {
  const reason = m.reason || m.code || t('session.closed.no_reason');
  switch (m.code) {
    case CLOSE.replaced:
      // The other window carries on; this one goes quiet (the node closes the socket).
      leaving = true;
      status(t('session.closed.replaced'), true);
      break;
    case CLOSE.removed: stop(t('session.closed.removed'), true); break;
    case CLOSE.denied: stop(t('session.closed.denied'), true); break;
    case CLOSE.ended: stop(t('session.closed.ended'), true); break;
    case CLOSE.full: stop(t('session.closed.full'), true); break;
    case CLOSE.closed_here:
    case CLOSE.shutdown:
    case CLOSE.fenced:
    case CLOSE.media_failed:
      lost(t('session.closed.by_node', { reason }));
      break;
    case undefined:
      // No code: a media node older than codes (an upgrade under way). It may have been
      // a host's decision, which a rejoin would undo: stop, saying what it said; the
      // visitor can join again.
      stop(t('session.closed.ended_by_node', { reason }), true);
      break;
    default:
      // A code this page does not know (a newer node): rejoining is the safe guess, and
      // a join the controller refuses stops it.
      console.warn('signaling: closed with an unknown code', m.code, m.reason);
      lost(t('session.closed.by_node', { reason }));
  }
});

// ---- Who is in the meeting. ----
function upsert(p) {
  const id = p.participant_id;
  if (id === (state.joined && state.joined.participant_id)) {
    const was = state.role;
    state.role = p.role;
    state.handRaised = p.hand_raised_unix_ms != null;
    if (was !== p.role && state.pc) roleChanged(was).catch((e) => console.error(e));
    else renderControls();
    return;
  }
  if (p.waiting) {
    state.waiting.set(id, p);
    renderPeople();
    return;
  }
  state.waiting.delete(id);
  state.participants.set(id, p);
  // A participant has a tile only while a slot shows them (`slots`).
  if (tileOf(id)) tile(id, p.name).hidden = roomOf(id) !== myRoom();
  renderPeople();
  if (p.local_recording || recorders.has(id)) {
    if (p.local_recording) recorders.add(id); else recorders.delete(id);
    showRecorders();
  }
}
const recorders = new Set(); // who records on their computer, as last shown

on(SERVER.waiting, (m) => {
  $('waiting-title').textContent = m.title || state.title || t('session.waiting.the_meeting');
  $('waiting').hidden = false;
  status(t('session.waiting.status'));
});

on(SERVER.welcome, async (m) => {
  awaitRoom();
  state.welcomed = true;
  status(t('session.in_meeting'));
  state.role = m.role;
  showMeeting();
  for (const p of m.participants) upsert(p);
  // The welcome lists the first page of a large meeting; the panel asks for the rest.
  state.rosterNext = m.participants.length;
  state.unlisted = Math.max(0, (m.participant_count ?? m.participants.length) - m.participants.length);
  renderPeople();
  if (m.active_speaker) setActiveSpeaker(m.active_speaker);
  // Whoever joins a meeting that is being recorded says yes before their media is sent.
  if (!(await consent())) {
    leave();
    return;
  }
  // On slots, the view goes first: the node's one offer then brings the slots.
  sendView();
  await sendOffer();
  if (state.audioMuted || state.videoMuted) sendMute();
  startQuality();
});

// Someone not listed yet (past the welcome's page) changed or left: one fewer unlisted.
function listed(id) {
  if (state.unlisted > 0 && !state.participants.has(id) && !state.waiting.has(id)) state.unlisted -= 1;
}
on(SERVER.participant_joined, (m) => upsert(m.participant));
on(SERVER.participant_updated, (m) => { listed(m.participant.participant_id); upsert(m.participant); });
on(SERVER.roster_page, (m) => {
  state.rosterNext = m.from + m.participants.length;
  for (const p of m.participants) { listed(p.participant_id); upsert(p); }
  if (!m.participants.length) state.unlisted = 0;
  rosterPageCame();
});
on(SERVER.participant_left, (m) => {
  listed(m.participant_id);
  state.participants.delete(m.participant_id);
  state.waiting.delete(m.participant_id);
  removeTile(m.participant_id);
  if (recorders.delete(m.participant_id)) showRecorders();
  renderPeople();
});
on(SERVER.mute, (m) => {
  const p = state.participants.get(m.participant_id);
  if (p) { p.audio_muted = m.audio_muted; p.video_muted = m.video_muted; label(m.participant_id); renderPeople(); }
});

// ---- Negotiation, and which m-line carries whose media. ----
on(SERVER.answer, (m) => state.pc.setRemoteDescription({ type: 'answer', sdp: m.sdp }));
on(SERVER.offer, async (m) => {
  state.offers += 1;
  await state.pc.setRemoteDescription({ type: 'offer', sdp: m.sdp });
  const answer = await state.pc.createAnswer();
  await state.pc.setLocalDescription(answer);
  send({ type: CLIENT.answer, sdp: answer.sdp });
});
// A client on slots gets the roster's changes in batches: each as if it came alone.
on(SERVER.roster, async (m) => { for (const e of m.events) await dispatch(e); });
// Receive slots: each slot's m-line carries whoever the node chose now.
on(SERVER.slots, (m) => {
  for (const s of m.slots) {
    if (s.participant_id) state.midToParticipant.set(s.mid, s.participant_id);
    else state.midToParticipant.delete(s.mid);
    state.midKind.set(s.mid, s.kind);
  }
  showSlots(m.slots);
});
// Dynacast: encode only the simulcast layers someone watches (the lowest always).
on(SERVER.publish_layers, async (m) => {
  const t = state.pc && state.pc.getTransceivers().find((x) => x.mid === m.mid);
  if (!t || !t.sender) return;
  const p = t.sender.getParameters();
  if (!p.encodings || p.encodings.length < 2) return;
  let changed = false;
  for (const e of p.encodings) {
    const active = !e.rid || m.layers.includes(e.rid);
    if (e.active !== active) { e.active = active; changed = true; }
  }
  if (changed) await t.sender.setParameters(p).catch((err) => console.warn('layers', err));
});

// The node refused one of our messages (`in_reply_to` names it).
on(SERVER.error, (m) => {
  console.warn('signaling error', m.message);
  if (m.in_reply_to === CLIENT.mute) { setOwnMute(true, state.videoMuted); status(m.message, true); }
  else if (m.in_reply_to !== CLIENT.layer) status(m.message, true);
  if (m.in_reply_to === CLIENT.board_draw) boardRefused();
  if (m.in_reply_to === CLIENT.local_recording) recordingRefused();
});

$('join').addEventListener('submit', (e) => { e.preventDefault(); join(); });
$('leave').onclick = () => leave();
$('waiting-leave').onclick = () => leave();
