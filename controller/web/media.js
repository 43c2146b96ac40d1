// What we send of ourselves: camera and microphone (their tracks, codec and mute state),
// the screen, the raised hand, and what a change of role does to them.
import { CLIENT, ROLE, SERVER } from './protocol.js';
import { e2ee } from './e2ee.js';
import { constraints } from './join.js';
import { tile, removeTile } from './grid.js';
import { renderControls } from './hosts.js';
import { on, send } from './signal.js';
import { state, watchOnly, myId } from './state.js';
import { $, banner, params, status } from './dom.js';
import { t } from './i18n.js';

// Own tracks: the camera in three simulcast layers (the node forwards each viewer the
// one its tile needs), the microphone as is.
export function addTrack(pc, track) {
  const init = { direction: 'sendonly', streams: [state.local] };
  if (track.kind === 'video' && params.get('simulcast') !== '0') {
    init.sendEncodings = [
      { rid: 'l', scaleResolutionDownBy: 4, maxBitrate: 150000 },
      { rid: 'm', scaleResolutionDownBy: 2, maxBitrate: 500000 },
      { rid: 'h', maxBitrate: 1500000 },
    ];
  }
  const t = pc.addTransceiver(track, init);
  // video_codec=h264 (or vp8, vp9, av1) puts that codec first in what we offer. An
  // encrypted meeting sends VP8, whose frames stay packetizable when sealed.
  if (track.kind === 'video' && e2ee.key) preferCodec(t, 'vp8');
  else if (track.kind === 'video' && params.get('video_codec')) preferCodec(t, params.get('video_codec'));
  e2ee.sender(t.sender);
  return t;
}

function preferCodec(transceiver, name) {
  const mime = 'video/' + name.toLowerCase();
  const codecs = RTCRtpReceiver.getCapabilities('video').codecs;
  const first = codecs.filter((c) => c.mimeType.toLowerCase() === mime);
  if (!first.length) { status(t('media.codec_unsupported', { codec: name }), true); return; }
  transceiver.setCodecPreferences(first.concat(codecs.filter((c) => c.mimeType.toLowerCase() !== mime)));
}

// We offer: the first time, and whenever we add a track.
export async function sendOffer() {
  const offer = await state.pc.createOffer();
  await state.pc.setLocalDescription(offer);
  send({ type: CLIENT.offer, sdp: offer.sdp });
}

// Our own tile, with our camera (muted: we do not play ourselves).
export const showSelf = () => tile(myId(), t('media.self_name', { name: $('name').value.trim() }), state.local);

export function setOwnMute(audio, video) {
  state.audioMuted = audio;
  state.videoMuted = video;
  if (state.local) {
    state.local.getAudioTracks().forEach((t) => { t.enabled = !audio; });
    state.local.getVideoTracks().forEach((t) => { t.enabled = !video; });
  }
  renderControls();
}

export const sendMute = () => send({ type: CLIENT.mute, audio_muted: state.audioMuted, video_muted: state.videoMuted });

// A webinar's host made us a panelist: camera and microphone join, muted and off until
// we turn them on; made an attendee again: they stop.
export async function roleChanged(was) {
  const wasWatching = !!(state.info && state.info.kind === 'webinar') && was === ROLE.attendee;
  if (wasWatching && !watchOnly()) {
    try {
      const media = await navigator.mediaDevices.getUserMedia(constraints());
      media.getTracks().forEach((t) => { state.local.addTrack(t); addTrack(state.pc, t); });
    } catch (e) { status(t('media.panelist.devices_unavailable', { error: e.message }), true); }
    setOwnMute(true, true);
    await sendOffer();
    sendMute();
    showSelf();
    banner(t('media.panelist.promoted'));
  } else if (!wasWatching && watchOnly()) {
    state.local.getTracks().forEach((t) => { t.stop(); state.local.removeTrack(t); });
    for (const s of state.pc.getSenders()) if (s.track) await s.replaceTrack(null);
    removeTile(myId());
    banner(t('media.panelist.demoted'));
  }
  renderControls();
}

on(SERVER.muted_by_host, (m) => {
  setOwnMute(m.audio_muted, m.video_muted);
  const name = m.by_name || t('media.by_host.a_host');
  status(m.video_muted && !m.audio_muted ? t('media.by_host.video_stopped', { name }) : t('media.by_host.muted', { name }));
});
on(SERVER.unmute_request, (m) => {
  banner(t('media.by_host.unmute_request', { name: m.by_name || t('media.by_host.a_host') }));
});

$('mute').onclick = () => { setOwnMute(!state.audioMuted, state.videoMuted); sendMute(); if (!state.audioMuted) banner(''); };

$('camera').onclick = async () => {
  // Joined with the camera off: turning it on adds a video track and renegotiates.
  if (state.videoMuted && state.local && !state.local.getVideoTracks().length && state.pc) {
    try {
      const cam = await navigator.mediaDevices.getUserMedia({ video: constraints().video });
      const track = cam.getVideoTracks()[0];
      state.local.addTrack(track);
      addTrack(state.pc, track);
      await sendOffer();
      showSelf();
    } catch (e) { status(t('media.camera_unavailable', { error: e.message }), true); return; }
  }
  setOwnMute(state.audioMuted, !state.videoMuted);
  sendMute();
};

// The screen replaces the camera on its sender (and the camera comes back after).
$('share').onclick = async () => {
  const sender = state.pc && state.pc.getSenders().find((s) => s.track && s.track.kind === 'video');
  if (!sender) { status(t('media.share.camera_needed'), true); return; }
  if (state.screen) {
    state.screen.getTracks().forEach((t) => t.stop());
    state.screen = null;
    await sender.replaceTrack(state.local.getVideoTracks()[0]);
    $('share').textContent = t('media.share.start');
    return;
  }
  try {
    state.screen = await navigator.mediaDevices.getDisplayMedia({ video: true });
    await sender.replaceTrack(state.screen.getVideoTracks()[0]);
    $('share').textContent = t('media.share.stop');
  } catch (e) { status(t('media.share.failed', { error: e.message }), true); }
};

$('hand').onclick = () => send({ type: state.handRaised ? CLIENT.lower_hand : CLIENT.raise_hand });
