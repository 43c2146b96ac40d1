// Fjord browser client: join through the controller, one WebSocket to the media node,
// one RTCPeerConnection. No build step, no third-party code.
'use strict';
(() => {
  const $ = (id) => document.getElementById(id);
  const params = new URLSearchParams(location.search);
  const state = {
    meeting: null, joined: null, ws: null, pc: null, local: null, screen: null,
    participants: new Map(), // participant_id -> {name, audio_muted, video_muted}
    midToParticipant: new Map(), midKind: new Map(), pinned: new Map(), chat: [], leaving: false, audioMuted: false, videoMuted: false, activeSpeaker: null,
  };
  window.fjord = state;

  function status(text, isError) {
    $('status').textContent = text;
    $('status').className = isError ? 'error' : '';
  }

  // Plain-language messages for what the API answers.
  function explain(status, body) {
    const msg = (body && body.message) || '';
    switch (status) {
      case 401: return msg.includes('password') ? 'This meeting needs a password.' : msg;
      case 403: return msg.includes('password') ? 'Wrong password. Please try again.' : msg;
      case 404: return 'This meeting does not exist. Check the link.';
      case 409: return 'This meeting has ended.';
      case 503: return msg.includes('capacity') ? 'The meeting is full right now. Please try again later.'
                                                : 'The service is busy right now (' + msg + '). Please try again shortly.';
      default: return msg || ('Something went wrong (' + status + ').');
    }
  }

  async function join() {
    const meeting = $('meeting').value.trim();
    const name = $('name').value.trim();
    const password = $('password').value;
    if (!meeting || !name) { status('Enter the meeting and your name.', true); return; }
    state.meeting = meeting;
    status('Joining…');
    let resp, body;
    try {
      // `?region=` asks for a region explicitly (honoured only where the controller
      // allows overrides: tests and demos of a multi-region cluster on one machine).
      const request = { name };
      if (password) request.password = password;
      if (params.get('region')) request.region = params.get('region');
      // Rejoining: say which node we lost, so that the controller checks it first.
      if (state.rejoining && state.lostNode) request.lost_node = state.lostNode;
      resp = await fetch('/v1/meetings/' + encodeURIComponent(meeting) + '/join', {
        method: 'POST', headers: { 'content-type': 'application/json' },
        body: JSON.stringify(request),
      });
      body = await resp.json().catch(() => null);
    } catch (e) {
      if (state.rejoining) { lost('Cannot reach the meeting service.'); return; }
      status('Cannot reach the meeting service. Check your connection.', true);
      return;
    }
    // Rejoining after a lost connection: a busy or unreachable service is tried again.
    if (!resp.ok && state.rejoining && resp.status >= 500) {
      lost(explain(resp.status, body));
      return;
    }
    if (!resp.ok) {
      state.rejoining = false;
      if (resp.status === 401 || resp.status === 403) $('password-row').hidden = false;
      status(explain(resp.status, body), true);
      return;
    }
    state.joined = body;
    await connect();
  }

  async function connect() {
    if (!state.local) {
      try {
        // original_sound=1 turns off echo cancellation, noise suppression and gain control
        // (for music, and for test rigs whose microphones all play the same signal).
        const audio = params.get('original_sound') === '1'
          ? { echoCancellation: false, noiseSuppression: false, autoGainControl: false } : true;
        state.local = await navigator.mediaDevices.getUserMedia({ audio, video: { width: 960, height: 540 } });
      } catch (e) {
        status('Camera or microphone not available: ' + e.message, true);
        return;
      }
    }
    // TURN servers of the node's region, when the cluster has them: the way out of
    // networks that block UDP or direct paths.
    const pc = new RTCPeerConnection({
      bundlePolicy: 'max-bundle',
      iceServers: state.joined.ice_servers || [],
    });
    state.pc = pc;
    // Camera in three simulcast layers; the node forwards each viewer the one its tile needs.
    for (const track of state.local.getTracks()) {
      const init = { direction: 'sendonly', streams: [state.local] };
      if (track.kind === 'video' && params.get('simulcast') !== '0') {
        init.sendEncodings = [
          { rid: 'l', scaleResolutionDownBy: 4, maxBitrate: 150000 },
          { rid: 'm', scaleResolutionDownBy: 2, maxBitrate: 500000 },
          { rid: 'h', maxBitrate: 1500000 },
        ];
      }
      const t = pc.addTransceiver(track, init);
      // video_codec=h264 (or vp8, vp9, av1) puts that codec first in what we offer.
      if (track.kind === 'video' && params.get('video_codec')) preferCodec(t, params.get('video_codec'));
    }
    pc.ontrack = (e) => attach(e.transceiver.mid, e.track);
    pc.onconnectionstatechange = () => {
      if (pc.connectionState === 'connected') { state.attempts = 0; state.rejoining = false; }
      if (pc.connectionState === 'failed') lost('Media connection failed.');
    };
    const ws = new WebSocket(state.joined.signal_url + '?token=' + encodeURIComponent(state.joined.token));
    state.ws = ws;
    ws.onmessage = (e) => handle(JSON.parse(e.data)).catch((err) => console.error(err));
    ws.onclose = () => { if (!state.leaving && state.ws === ws) lost('Connection lost.'); };
    $('join').hidden = true;
    $('meeting-view').hidden = false;
    tile(state.joined.participant_id, $('name').value.trim() + ' (you)', state.local);
  }

  function preferCodec(transceiver, name) {
    const mime = 'video/' + name.toLowerCase();
    const codecs = RTCRtpReceiver.getCapabilities('video').codecs;
    const first = codecs.filter((c) => c.mimeType.toLowerCase() === mime);
    if (!first.length) { status('This browser cannot send ' + name + ' video; using its default codec.', true); return; }
    transceiver.setCodecPreferences(first.concat(codecs.filter((c) => c.mimeType.toLowerCase() !== mime)));
  }

  function send(msg) {
    if (state.ws && state.ws.readyState === WebSocket.OPEN) state.ws.send(JSON.stringify(Object.assign({ v: 1 }, msg)));
  }

  async function handle(m) {
    const pc = state.pc;
    switch (m.type) {
      case 'welcome': {
        status('In the meeting.');
        for (const p of m.participants) { state.participants.set(p.participant_id, p); tile(p.participant_id, p.name); }
        if (m.active_speaker) setActiveSpeaker(m.active_speaker);
        const offer = await pc.createOffer();
        await pc.setLocalDescription(offer);
        send({ type: 'offer', sdp: offer.sdp });
        break;
      }
      case 'answer': await pc.setRemoteDescription({ type: 'answer', sdp: m.sdp }); break;
      case 'offer': {
        await pc.setRemoteDescription({ type: 'offer', sdp: m.sdp });
        const answer = await pc.createAnswer();
        await pc.setLocalDescription(answer);
        send({ type: 'answer', sdp: answer.sdp });
        break;
      }
      case 'track':
        state.midToParticipant.set(m.mid, m.participant_id);
        state.midKind.set(m.mid, m.kind);
        break;
      case 'track_removed': state.midToParticipant.delete(m.mid); break;
      case 'participant_joined':
        state.participants.set(m.participant.participant_id, m.participant);
        tile(m.participant.participant_id, m.participant.name);
        break;
      case 'participant_left': {
        state.participants.delete(m.participant_id);
        const t = document.getElementById('tile-' + m.participant_id);
        if (t) t.remove();
        break;
      }
      case 'chat': {
        state.chat.push(m);
        const li = document.createElement('li');
        li.textContent = m.name + ': ' + m.text;
        $('chat-log').append(li);
        break;
      }
      case 'mute': {
        const p = state.participants.get(m.participant_id);
        if (p) { p.audio_muted = m.audio_muted; p.video_muted = m.video_muted; label(m.participant_id); }
        break;
      }
      case 'active_speaker': setActiveSpeaker(m.participant_id); break;
      case 'error': console.warn('signaling error', m.message); break;
      case 'closed':
        if (m.reason.includes('replaced')) { state.leaving = true; status('You joined from another window; this one left.', true); }
        else if (m.reason.includes('is full')) { state.leaving = true; teardown(); status('This meeting is full.', true); }
        else lost('The media node closed the connection (' + m.reason + ').');
        break;
    }
  }

  function setActiveSpeaker(pid) {
    state.activeSpeaker = pid;
    document.querySelectorAll('.tile').forEach((t) => t.classList.toggle('speaking', t.id === 'tile-' + pid));
  }

  function tile(pid, name, stream) {
    let t = document.getElementById('tile-' + pid);
    if (!t) {
      t = document.createElement('div');
      t.className = pid === state.activeSpeaker ? 'tile speaking' : 'tile';
      t.id = 'tile-' + pid;
      const v = document.createElement('video');
      v.autoplay = true; v.playsInline = true;
      if (stream) v.muted = true;
      const l = document.createElement('span');
      l.className = 'label';
      t.append(v, l);
      $('grid').append(t);
    }
    t.dataset.name = name;
    if (stream) t.querySelector('video').srcObject = stream;
    label(pid);
    return t;
  }

  function label(pid) {
    const t = document.getElementById('tile-' + pid);
    if (!t) return;
    const p = state.participants.get(pid);
    const muted = p && p.audio_muted ? ' 🔇' : '';
    t.querySelector('.label').textContent = t.dataset.name + muted;
  }

  // Tell the node how large each remote video is shown, so it forwards a layer to match.
  function sendLayer(pid) {
    for (const [mid, who] of state.midToParticipant) {
      if (who !== pid || state.midKind.get(mid) !== 'video') continue;
      const t = document.getElementById('tile-' + pid);
      const size = state.pinned.get(pid) || (t ? { width: t.clientWidth, height: t.clientHeight } : null);
      if (size) send({ type: 'layer', mid, width: Math.round(size.width), height: Math.round(size.height) });
    }
  }
  const resizes = new ResizeObserver((entries) => {
    for (const e of entries) sendLayer(e.target.id.replace(/^tile-/, ''));
  });
  state.pinLayer = (pid, width, height) => { state.pinned.set(pid, { width, height }); sendLayer(pid); };

  function attach(mid, track) {
    const pid = state.midToParticipant.get(mid);
    if (!pid) return;
    const p = state.participants.get(pid);
    const t = tile(pid, p ? p.name : pid);
    if (track.kind === 'video') { resizes.observe(t); setTimeout(() => sendLayer(pid), 0); }
    const v = t.querySelector('video');
    const s = v.srcObject instanceof MediaStream ? v.srcObject : new MediaStream();
    s.addTrack(track);
    v.srcObject = s;
  }

  function teardown() {
    if (state.pc) state.pc.close();
    if (state.ws) state.ws.close();
    state.pc = null; state.ws = null;
    state.midToParticipant.clear();
    state.participants.clear();
    $('grid').replaceChildren();
  }

  // Rejoins at once (a quarter second, jittered so that a node's participants do not all
  // come back in the same instant), then backing off to 4 s between attempts; a join
  // that answers a 4xx (the meeting ended, is full, …) stops it.
  function lost(why) {
    if (state.joined) state.lostNode = state.joined.node_id;
    teardown();
    status(why + ' Rejoining…', true);
    state.rejoining = true;
    const wait = Math.min(4000, 250 * 2 ** (state.attempts || 0)) * (0.5 + Math.random() / 2);
    state.attempts = (state.attempts || 0) + 1;
    setTimeout(() => { if (!state.leaving) join(); }, wait);
  }

  state.leave = () => {
    state.leaving = true;
    send({ type: 'leave' });
    teardown();
    if (state.local) state.local.getTracks().forEach((t) => t.stop());
    $('meeting-view').hidden = true;
    status('You left the meeting.');
  };
  state.sendChat = (text) => send({ type: 'chat', text });

  $('join').addEventListener('submit', (e) => { e.preventDefault(); join(); });
  $('leave').onclick = () => state.leave();
  $('mute').onclick = () => {
    state.audioMuted = !state.audioMuted;
    state.local.getAudioTracks().forEach((t) => { t.enabled = !state.audioMuted; });
    $('mute').textContent = state.audioMuted ? 'Unmute' : 'Mute';
    send({ type: 'mute', audio_muted: state.audioMuted, video_muted: state.videoMuted });
  };
  $('camera').onclick = () => {
    state.videoMuted = !state.videoMuted;
    state.local.getVideoTracks().forEach((t) => { t.enabled = !state.videoMuted; });
    $('camera').textContent = state.videoMuted ? 'Camera on' : 'Camera off';
    send({ type: 'mute', audio_muted: state.audioMuted, video_muted: state.videoMuted });
  };
  $('share').onclick = async () => {
    const sender = state.pc && state.pc.getSenders().find((s) => s.track && s.track.kind === 'video');
    if (!sender) return;
    if (state.screen) {
      state.screen.getTracks().forEach((t) => t.stop());
      state.screen = null;
      await sender.replaceTrack(state.local.getVideoTracks()[0]);
      $('share').textContent = 'Share screen';
      return;
    }
    try {
      state.screen = await navigator.mediaDevices.getDisplayMedia({ video: true });
      await sender.replaceTrack(state.screen.getVideoTracks()[0]);
      $('share').textContent = 'Stop sharing';
    } catch (e) { status('Screen sharing was not started: ' + e.message, true); }
  };
  $('chat-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const text = $('chat-text').value.trim();
    if (text) state.sendChat(text);
    $('chat-text').value = '';
  });

  const m = location.pathname.match(/^\/m\/([^/]+)/);
  if (m) $('meeting').value = decodeURIComponent(m[1]);
  if (params.get('name')) $('name').value = params.get('name');
  if (params.get('password')) { $('password-row').hidden = false; $('password').value = params.get('password'); }
  if (params.get('autojoin') === '1') join();
})();
