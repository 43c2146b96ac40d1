// The grid: a tile per participant, the gallery or speaker layout, the video layer each
// tile asks the node for, connection quality, and the marks on tiles (speaking,
// recording, undecryptable media).
import { CLIENT, SERVER } from './protocol.js';
import { localRecording } from './recording.js';
import { on, send } from './signal.js';
import { state, myId } from './state.js';
import { $, banner } from './dom.js';
import { t } from './i18n.js';

let layout = 'gallery';
let pinnedTile = null; // the tile shown large in speaker view, whoever speaks
let qualityTimer = null;
let lastStats = new Map(); // mid -> its last inbound-rtp stats
let e2eeFailures = 0;

// Pins `pid` (shown large in speaker view, first on every gallery page), or unpins.
export function togglePin(pid) {
  pinnedTile = pinnedTile === pid ? null : pid;
  applyLayout();
  sendView();
}
export const isPinned = (pid) => pinnedTile === pid;

export const tileOf = (pid) => document.getElementById('tile-' + pid);

export function tile(pid, name, stream) {
  let t = tileOf(pid);
  if (!t) {
    t = document.createElement('div');
    t.className = pid === state.activeSpeaker ? 'tile speaking' : 'tile';
    t.id = 'tile-' + pid;
    t.tabIndex = 0;
    const v = document.createElement('video');
    v.autoplay = true; v.playsInline = true;
    if (stream) v.muted = true;
    const l = document.createElement('span');
    l.className = 'label';
    const q = document.createElement('span');
    q.className = 'quality';
    q.setAttribute('role', 'img');
    t.append(v, l, q);
    // Double-click or Enter pins the tile (the panel's Pin does too).
    t.addEventListener('dblclick', () => togglePin(pid));
    t.addEventListener('keydown', (e) => { if (e.key === 'Enter') togglePin(pid); });
    $('grid').append(t);
  }
  t.dataset.name = name;
  if (stream) t.querySelector('video').srcObject = stream;
  label(pid);
  return t;
}

export function removeTile(pid) {
  const t = tileOf(pid);
  if (t) t.remove();
}

export const clearTiles = () => $('grid').replaceChildren();

export function label(pid) {
  const tl = tileOf(pid);
  if (!tl) return;
  const p = state.participants.get(pid);
  const muted = p && p.audio_muted ? ' 🔇' : '';
  const hand = p && p.hand_raised_unix_ms != null ? ' ✋' : '';
  const rec = (p ? p.local_recording : pid === myId() && localRecording.active()) ? ' ' + t('grid.tile.rec') : '';
  tl.querySelector('.label').textContent = tl.dataset.name + muted + hand + rec;
  // The screen reader's label: the name, then each mark in words.
  let said = tl.dataset.name;
  if (muted) said = t('grid.tile.aria.muted', { label: said });
  if (hand) said = t('grid.tile.aria.hand_raised', { label: said });
  if (rec) said = t('grid.tile.aria.recording', { label: said });
  tl.setAttribute('aria-label', said);
}

// Who records on their computer: a badge for everyone, and a mark on their tiles.
export function showRecorders() {
  const names = [...state.participants.values()].filter((p) => p.local_recording).map((p) => p.name);
  const you = t('grid.recorders.you');
  if (localRecording.active()) names.unshift(you);
  $('recording-badge').hidden = !names.length;
  $('recording-badge').textContent = names.length
    ? (names.length === 1 && names[0] !== you
      ? t('grid.recorders.one_other', { names: names.join(', ') })
      : t('grid.recorders.you_or_several', { names: names.join(', ') }))
    : '';
  // The tiles there are (a page's worth on slots), not everyone in the meeting.
  for (const tl of document.querySelectorAll('.tile')) label(tl.id.replace(/^tile-/, ''));
}

// Frames of m-line `mid` do not open with our key: say so on the tile.
export function undecryptable(mid) {
  const pid = state.midToParticipant.get(mid);
  const tl = pid && tileOf(pid);
  if (!tl || tl.querySelector('.e2ee-fail')) return;
  const note = document.createElement('div');
  note.className = 'e2ee-fail';
  note.textContent = t('grid.tile.undecryptable');
  tl.append(note);
  e2eeFailures += 1;
}
export const e2eeFailureCount = () => e2eeFailures;

export function setActiveSpeaker(pid) {
  state.activeSpeaker = pid;
  document.querySelectorAll('.tile').forEach((t) => t.classList.toggle('speaking', t.id === 'tile-' + pid));
  applyLayout();
}
on(SERVER.active_speaker, (m) => setActiveSpeaker(m.participant_id));

// ---- Layouts: a gallery, or the speaker (or a pinned participant) large. ----
function applyLayout() {
  const speaker = layout === 'speaker';
  $('grid').classList.toggle('speaker-view', speaker);
  const main = pinnedTile || state.activeSpeaker;
  document.querySelectorAll('.tile').forEach((t) => {
    t.classList.toggle('main', speaker && t.id === 'tile-' + main);
    t.classList.toggle('pinned', t.id === 'tile-' + pinnedTile);
  });
}

$('layout').onclick = () => {
  layout = layout === 'gallery' ? 'speaker' : 'gallery';
  $('layout').textContent = layout === 'gallery' ? t('grid.layout.speaker') : t('grid.layout.gallery');
  applyLayout();
  sendView();
};

// Asks for `pid`'s video at this size from now on, whatever its tile's (tests, and
// anyone who wants to look at the layers).
export function pinLayer(pid, width, height) {
  sizeAsked = { width, height };
  sendView();
}

// ---- Receive slots: a fixed set of m-lines the node fills. ----
// The page says what it shows (`view`): nine tiles a page, gallery or speaker, the pinned
// tile, the tiles' sizes; each video slot's track goes onto the tile of whoever the node
// says it carries (`slots`), the audio slots play as they are. Nobody's joining
// renegotiates, and the grid holds a page of tiles however many are in the meeting.
const slotTracks = new Map(); // mid -> the slot's MediaStreamTrack
const slotCarries = new Map(); // video slot mid -> the participant it carries now
let page = 0;
let sizeAsked = null; // pinLayer on slots: every slot asks for this size
let lastView = '';
const TILES_PER_PAGE = 9;

// The size of a tile now: the gallery's (columns of at least 14rem, as style.css lays
// them out), or in speaker view the stage's and a thumbnail's.
function tileSizes() {
  if (sizeAsked) return [sizeAsked];
  const width = Math.max(160, $('grid').clientWidth || 960);
  const sized = (w) => ({ width: Math.round(w), height: Math.round(w * 9 / 16) });
  const rem = parseFloat(getComputedStyle(document.documentElement).fontSize) || 16;
  if (layout === 'speaker') return [sized(width), sized(Math.min(width, 9 * rem * 1.5))];
  const cols = Math.max(1, Math.min(3, Math.floor(width / (14 * rem))));
  return [sized(width / cols)];
}

export function sendView() {
  // Not from the waiting room: the node answers anything but `leave` there with an
  // error, which would overwrite what the page says (a resize sends a view).
  if (!state.ws || !state.welcomed) return;
  const view = {
    type: CLIENT.view,
    video_slots: TILES_PER_PAGE,
    audio_slots: 3,
    mode: layout === 'speaker' ? 'speaker' : 'gallery',
    page,
    tiles: tileSizes(),
    pinned: pinnedTile ? [pinnedTile] : [],
  };
  // The node counts views against a rate: only a change is worth one.
  const text = JSON.stringify(view);
  if (text === lastView) return;
  lastView = text;
  send(view);
}
export const resetView = () => { lastView = ''; slotTracks.clear(); slotCarries.clear(); };

// The grid resized (the window, the side panel): the tiles' sizes go to the node once
// it has settled.
let resized = null;
new ResizeObserver(() => { clearTimeout(resized); resized = setTimeout(sendView, 300); }).observe($('grid'));

// A slot's track arrived: audio plays at once (whoever speaks); video waits for `slots`.
export function slotTrack(mid, track) {
  slotTracks.set(mid, track);
  if (track.kind !== 'audio') return;
  const a = document.createElement('audio');
  a.autoplay = true;
  a.hidden = true;
  a.className = 'slot-audio';
  a.srcObject = new MediaStream([track]);
  const speaker = $('speaker-select').value;
  if (speaker && a.setSinkId) a.setSinkId(speaker).catch(() => {});
  document.body.append(a);
  localRecording.addAudio(track);
}

// What each video slot carries now: its track onto that participant's tile; a tile no
// slot carries any more goes (the panel still lists its participant).
export function showSlots(slots) {
  for (const s of slots) {
    if (s.kind !== 'video' || s.screen) continue;
    if (s.participant_id) slotCarries.set(s.mid, s.participant_id);
    else slotCarries.delete(s.mid);
  }
  const shown = new Set(slotCarries.values());
  for (const t of document.querySelectorAll('.tile')) {
    const pid = t.id.replace(/^tile-/, '');
    if (pid !== myId() && !shown.has(pid)) t.remove();
  }
  for (const [mid, pid] of slotCarries) {
    const track = slotTracks.get(mid);
    if (!track) continue;
    const p = state.participants.get(pid);
    const t = tile(pid, p ? p.name : pid);
    t.hidden = false;
    if (t.dataset.slot === mid) continue;
    t.dataset.slot = mid;
    t.querySelector('video').srcObject = new MediaStream([track]);
  }
  applyLayout();
}

$('pager').hidden = false;
{
  const turn = (by) => { page = Math.max(0, page + by); $('page-no').textContent = String(page + 1); sendView(); };
  $('page-prev').onclick = () => turn(-1);
  $('page-next').onclick = () => turn(1);
}

// ---- Connection quality, from getStats(): per remote participant and our own. ----
export function startQuality() {
  clearInterval(qualityTimer);
  lastStats = new Map();
  qualityTimer = setInterval(measureQuality, 2000);
}
export const stopQuality = () => clearInterval(qualityTimer);

async function measureQuality() {
  const pc = state.pc;
  if (!pc) return;
  const report = await pc.getStats().catch(() => null);
  if (!report) return;
  const byMid = new Map();
  let rtt = null; let ownLoss = 0;
  report.forEach((s) => {
    if (s.type === 'inbound-rtp' && s.mid) byMid.set(s.mid, s);
    if (s.type === 'candidate-pair' && s.nominated && s.currentRoundTripTime != null) rtt = s.currentRoundTripTime;
    if (s.type === 'remote-inbound-rtp' && s.fractionLost != null) ownLoss = Math.max(ownLoss, s.fractionLost);
  });
  for (const [pid, q] of perParticipant(byMid)) showQuality(pid, q, rtt);
  if (pc.connectionState === 'connected') {
    banner(ownLoss > 0.1 || (rtt || 0) > 0.5 ? t('grid.own_connection_poor') : '');
  }
}

// Packets got and lost and bits per second since the last measurement, per participant
// (summed over their m-lines).
function perParticipant(byMid) {
  const per = new Map();
  for (const [mid, s] of byMid) {
    const pid = state.midToParticipant.get(mid);
    if (!pid) continue;
    const last = lastStats.get(mid);
    lastStats.set(mid, s);
    if (!last) continue;
    const got = s.packetsReceived - last.packetsReceived;
    const lost = Math.max(0, s.packetsLost - last.packetsLost);
    const bits = 8 * (s.bytesReceived - last.bytesReceived) / ((s.timestamp - last.timestamp) / 1000 || 1);
    const q = per.get(pid) || { lost: 0, got: 0, bitrate: 0 };
    q.lost += lost; q.got += got; q.bitrate += bits;
    per.set(pid, q);
  }
  return per;
}

// The dot on the tile: good, fair or poor, with the numbers in its title.
function showQuality(pid, q, rtt) {
  const loss = q.got + q.lost ? q.lost / (q.got + q.lost) : 0;
  const grade = loss > 0.1 || (rtt || 0) > 0.4 ? 'poor' : loss > 0.02 || (rtt || 0) > 0.2 ? 'fair' : 'good';
  const tl = tileOf(pid);
  if (!tl) return;
  const el = tl.querySelector('.quality');
  el.className = 'quality ' + grade;
  const quality = { good: t('grid.quality.good'), fair: t('grid.quality.fair'), poor: t('grid.quality.poor') }[grade];
  el.setAttribute('aria-label', quality);
  el.title = t('grid.quality.details', {
    quality,
    loss: Math.round(loss * 100),
    rtt: rtt == null ? '?' : Math.round(rtt * 1000),
    bitrate: Math.round(q.bitrate / 1000),
  });
}
