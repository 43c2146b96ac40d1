// Recording on the servers (the hosts' cloud recording): the badge everyone sees while
// it runs, the hosts' Record, Pause and Stop, and the question put to whoever joins a
// meeting that is being recorded, before their camera and microphone are sent. The node
// tells its state in `room` (hosts.js hands it here); the leader controller carries out
// what hosts ask.
import { $, status } from './dom.js';
import { CLIENT } from './protocol.js';
import { send } from './signal.js';
import { isHost, state } from './state.js';
import { t } from './i18n.js';

const recordingOn = () => !!state.room.cloud_recording && state.room.cloud_recording !== 'off';
let roomKnown = null; // resolves with the first `room` after a `welcome`
let consented = false; // asked once a visit: a rejoin does not ask again
let lastError = null;

// The first `room` of this session (the node sends it right after `welcome`).
export function awaitRoom() {
  let resolve;
  const p = new Promise((r) => { resolve = r; });
  roomKnown = { p, resolve };
}

// Whether we may send our media: at once when the meeting is not being recorded (or we
// said yes before), else when the person says so. False: they chose to leave.
export async function consent() {
  if (roomKnown) await roomKnown.p;
  if (!recordingOn() || consented) { consented = consented || recordingOn(); return true; }
  const box = $('recording-consent');
  box.hidden = false;
  $('consent-continue').focus();
  const yes = await new Promise((resolve) => {
    $('consent-continue').onclick = () => resolve(true);
    $('consent-leave').onclick = () => resolve(false);
  });
  box.hidden = true;
  consented = yes;
  return yes;
}

// The room's recording state, as `room` says it.
export function cloudRoom(m) {
  const first = !!roomKnown;
  if (roomKnown) { roomKnown.resolve(); roomKnown = null; }
  const badge = $('cloud-badge');
  badge.hidden = !recordingOn();
  badge.textContent = m.cloud_recording === 'paused'
    ? t('cloud.badge.paused')
    : t('cloud.badge.recording');
  // Someone already in sees the badge when a recording starts: no question (their
  // media flows already), and none on a rejoin.
  if (!first && recordingOn() && state.welcomed) consented = true;
  if (m.cloud_recording_error && m.cloud_recording_error !== lastError && isHost()) {
    status(t('cloud.error.stopped', { error: m.cloud_recording_error }), true);
  }
  lastError = m.cloud_recording_error || null;
  renderCloud();
}

export function renderCloud() {
  const host = isHost() && !state.room.cloud_recording_refusal;
  const record = $('cloud-record'), pause = $('cloud-pause');
  record.hidden = !host;
  pause.hidden = !host || !recordingOn();
  record.textContent = recordingOn() ? t('cloud.record.stop') : t('cloud.record.start');
  record.setAttribute('aria-pressed', String(recordingOn()));
  pause.textContent = state.room.cloud_recording === 'paused' ? t('cloud.pause.resume') : t('cloud.pause.pause');
  pause.setAttribute('aria-pressed', String(state.room.cloud_recording === 'paused'));
}

$('cloud-record').onclick = () => {
  send({ type: CLIENT.cloud_recording, action: recordingOn() ? 'stop' : 'start' });
};
$('cloud-pause').onclick = () => {
  send({ type: CLIENT.cloud_recording, action: state.room.cloud_recording === 'paused' ? 'resume' : 'pause' });
};
