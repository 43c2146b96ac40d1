// Fjord browser client: a pre-join screen, then one WebSocket to the media node and one
// RTCPeerConnection; the waiting room, the participant panel and the host's controls.
// No build step, no third-party code.
'use strict';
(() => {
  const $ = (id) => document.getElementById(id);
  const params = new URLSearchParams(location.search);
  const state = {
    meeting: null, joined: null, ws: null, pc: null, local: null, screen: null,
    participants: new Map(), // participant_id -> participant object (in the meeting)
    waiting: new Map(), // participant_id -> participant object (in the waiting room; hosts only)
    midToParticipant: new Map(), midKind: new Map(), pinned: new Map(), chat: [], leaving: false,
    audioMuted: false, videoMuted: false, activeSpeaker: null, role: null, room: {},
    handRaised: false, layout: 'gallery', pinnedTile: null, quality: new Map(),
  };
  window.fjord = state;

  function status(text, isError) {
    $('status').textContent = text;
    $('status').className = isError ? 'error' : '';
  }
  function banner(text) {
    $('banner').textContent = text || '';
    $('banner').hidden = !text;
  }
  const isHost = () => state.role === 'host' || state.role === 'co-host';
  // A webinar's attendee watches and listens: no camera, no microphone.
  const watchOnly = () => !!(state.info && state.info.kind === 'webinar') && state.role === 'attendee';

  // Plain-language messages for what the API answers.
  function explain(status, body) {
    const msg = (body && body.message) || '';
    const code = body && body.error;
    if (code === 'meeting_locked') return 'This meeting is locked by its host.';
    if (code === 'too_early' || code === 'series_over' || (code || '').startsWith('registration_')) return msg.charAt(0).toUpperCase() + msg.slice(1) + '.';
    switch (status) {
      case 401: return msg.includes('password') ? 'This meeting needs a password.' : msg;
      case 403: return msg.includes('password') ? 'Wrong password. Please try again.' : msg;
      case 404: return 'This meeting does not exist. Check the link.';
      case 409: return msg.includes('full') ? 'This meeting is full.' : 'This meeting has ended.';
      case 429: return 'Too many attempts. Please wait a moment and try again.';
      case 503: return msg.includes('capacity') ? 'The meeting is full right now. Please try again later.'
                                                : 'The service is busy right now (' + msg + '). Please try again shortly.';
      default: return msg || ('Something went wrong (' + status + ').');
    }
  }

  // ---- Pre-join: the meeting's title, devices, a preview. ----
  async function loadMeeting(id) {
    try {
      const r = await fetch('/v1/meetings/' + encodeURIComponent(id) + '/public');
      if (!r.ok) return;
      const m = await r.json();
      state.info = m;
      state.title = m.title;
      if (m.e2ee) {
        $('e2ee-row').hidden = false;
        $('e2ee-badge').hidden = false;
        if (!$('e2ee-passphrase').value) $('e2ee-passphrase').value = e2ee.fromLink();
      }
      $('title').textContent = m.title;
      $('prejoin-title').textContent = '“' + m.title + '”';
      if (m.has_password) $('password-row').hidden = false;
      // Registration first, unless the link is a registrant's, a host's or a panelist's.
      if (m.registration && !['registrant_key', 'host_key', 'panelist_key'].some((k) => params.get(k))) {
        $('register').hidden = false;
        $('reg-questions').replaceChildren(...m.registration.questions.map((q, i) => {
          const l = document.createElement('label');
          l.textContent = q + ' ';
          const input = document.createElement('input');
          input.id = 'reg-answer-' + i;
          input.maxLength = 500;
          l.append(input);
          return l;
        }));
      }
      if (m.schedule) {
        const when = m.next_start_unix_ms
          ? 'Next: ' + new Date(m.next_start_unix_ms).toLocaleString([], { dateStyle: 'full', timeStyle: 'short' }) + '.'
          : 'This series of meetings is over.';
        $('schedule-text').textContent = when;
        $('calendar-link').href = '/v1/meetings/' + encodeURIComponent(id) + '/calendar.ics';
        $('schedule-row').hidden = false;
      }
    } catch (e) { /* the join says what is wrong */ }
  }

  function constraints() {
    const mic = $('mic-select').value;
    const cam = $('camera-select').value;
    // original_sound=1: no echo cancellation, noise suppression or gain control (music,
    // test rigs whose microphones all play the same signal).
    const audio = params.get('original_sound') === '1'
      ? { echoCancellation: false, noiseSuppression: false, autoGainControl: false } : {};
    if (mic) audio.deviceId = { exact: mic };
    const video = { width: 960, height: 540 };
    if (cam) video.deviceId = { exact: cam };
    return { audio, video };
  }

  async function listDevices() {
    const devices = await navigator.mediaDevices.enumerateDevices();
    const fill = (select, kind, what) => {
      const keep = select.value;
      select.replaceChildren();
      devices.filter((d) => d.kind === kind).forEach((d, i) => {
        const o = document.createElement('option');
        o.value = d.deviceId;
        o.textContent = d.label || (what + ' ' + (i + 1));
        select.append(o);
      });
      if (keep) select.value = keep;
    };
    fill($('mic-select'), 'audioinput', 'Microphone');
    fill($('camera-select'), 'videoinput', 'Camera');
    // Choosing the speaker needs setSinkId (not every browser has it).
    if ('setSinkId' in HTMLMediaElement.prototype) {
      fill($('speaker-select'), 'audiooutput', 'Speaker');
      $('speaker-row').hidden = !$('speaker-select').options.length;
    }
    state.devices = devices.map((d) => ({ kind: d.kind, label: d.label, id: d.deviceId }));
  }

  async function preview() {
    if (state.local) state.local.getTracks().forEach((t) => t.stop());
    try {
      state.local = await navigator.mediaDevices.getUserMedia(constraints());
      $('preview').srcObject = state.local;
      await listDevices();
    } catch (e) {
      state.local = null;
      status('Camera or microphone not available: ' + e.message, true);
    }
  }

  // ---- Joining. ----
  async function join() {
    const meeting = $('meeting').value.trim();
    const name = $('name').value.trim();
    const password = $('password').value;
    if (!meeting || !name) { status('Enter the meeting and your name.', true); return; }
    state.meeting = meeting;
    if (!state.info) await loadMeeting(meeting);
    if (state.info && state.info.e2ee && !e2ee.key) {
      const passphrase = $('e2ee-passphrase').value || e2ee.fromLink();
      if (!passphrase) {
        status('This meeting is end-to-end encrypted: open the full link you were given (it ends with #…) or enter its passphrase.', true);
        return;
      }
      if (!window.fjordE2ee || !(('RTCRtpScriptTransform' in window) || ('createEncodedStreams' in RTCRtpSender.prototype))) {
        status('This browser cannot take part in an end-to-end encrypted meeting. Try a current Chrome, Edge or Firefox.', true);
        return;
      }
      await e2ee.prepare(meeting, passphrase);
    }
    status('Joining…');
    let resp, body;
    try {
      // `?region=` asks for a region explicitly (honoured only where the controller
      // allows overrides: tests and demos of a multi-region cluster on one machine).
      const request = { name };
      if (password) request.password = password;
      if (params.get('host_key')) request.host_key = params.get('host_key');
      if (params.get('panelist_key')) request.panelist_key = params.get('panelist_key');
      if (params.get('registrant_key')) request.registrant_key = params.get('registrant_key');
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
      if ((resp.status === 401 || resp.status === 403) && (body && body.error) !== 'meeting_locked') $('password-row').hidden = false;
      status(explain(resp.status, body), true);
      return;
    }
    state.joined = body;
    state.role = body.role;
    await connect();
  }

  async function connect() {
    const cameraOff = $('join-camera-off').checked || params.get('camera') === 'off';
    const joinMuted = $('join-muted').checked || params.get('muted') === '1';
    if (watchOnly()) {
      // Nothing to send: the preview's camera and microphone are let go.
      if (state.local) state.local.getTracks().forEach((t) => t.stop());
      state.local = new MediaStream();
      banner('You are watching this webinar. Raise your hand or ask in Q&A; a host can invite you to speak.');
    } else if (!state.local) {
      try {
        const c = constraints();
        state.local = await navigator.mediaDevices.getUserMedia(cameraOff ? { audio: c.audio } : c);
      } catch (e) {
        status('Camera or microphone not available: ' + e.message, true);
        return;
      }
    }
    if (cameraOff) {
      state.local.getVideoTracks().forEach((t) => { t.stop(); state.local.removeTrack(t); });
      state.videoMuted = true;
    }
    if (joinMuted) state.audioMuted = true;
    state.local.getAudioTracks().forEach((t) => { t.enabled = !state.audioMuted; });
    // TURN servers of the node's region, when the cluster has them: the way out of
    // networks that block UDP or direct paths.
    const pc = new RTCPeerConnection({
      bundlePolicy: 'max-bundle',
      iceServers: state.joined.ice_servers || [],
      ...e2ee.pcConfig(),
    });
    state.pc = pc;
    for (const track of state.local.getTracks()) addTrack(pc, track);
    // Something to negotiate, so that the connection comes up before others' tracks do.
    if (!state.local.getTracks().length) pc.addTransceiver('audio', { direction: 'recvonly' });
    pc.ontrack = (e) => { e2ee.receiver(e.receiver, e.transceiver.mid); attach(e.transceiver.mid, e.track); };
    pc.onconnectionstatechange = () => {
      if (pc.connectionState === 'connected') { state.attempts = 0; state.rejoining = false; banner(''); }
      if (pc.connectionState === 'disconnected') banner('Your connection is interrupted. Reconnecting…');
      if (pc.connectionState === 'failed') lost('Media connection failed.');
    };
    const ws = new WebSocket(state.joined.signal_url + '?token=' + encodeURIComponent(state.joined.token));
    state.ws = ws;
    ws.onmessage = (e) => handle(JSON.parse(e.data)).catch((err) => console.error(err));
    ws.onclose = () => { if (!state.leaving && state.ws === ws) lost('Connection lost.'); };
    $('prejoin').hidden = true;
  }

  // Own tracks: the camera in three simulcast layers (the node forwards each viewer the
  // one its tile needs), the microphone as is.
  function addTrack(pc, track) {
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

  // ---- End-to-end encryption (meetings created with e2ee; see e2ee.js). ----
  const e2ee = {
    key: null,
    worker: null,
    // The passphrase in the link's fragment: `#key=…` or the whole fragment.
    fromLink() {
      const h = decodeURIComponent(location.hash.slice(1));
      return h.startsWith('key=') ? h.slice(4) : h;
    },
    async prepare(meeting, passphrase) {
      this.key = await window.fjordE2ee.deriveKey(passphrase, meeting);
      if ('RTCRtpScriptTransform' in window) {
        this.worker = new Worker('/static/e2ee.js');
        this.worker.onmessage = (e) => { if (e.data && e.data.failed) undecryptable(e.data.failed); };
      }
      $('e2ee-badge').hidden = false;
    },
    // The legacy API needs the connection to be made for it.
    pcConfig() { return this.key && !this.worker ? { encodedInsertableStreams: true } : {}; },
    attach(end, direction, id) {
      if (!this.key) return;
      if (this.worker) {
        end.transform = new RTCRtpScriptTransform(this.worker, { key: this.key, direction, id });
      } else {
        const { readable, writable } = end.createEncodedStreams();
        let told = 0;
        const failed = () => { if (Date.now() - told > 1000) { told = Date.now(); undecryptable(id); } };
        readable.pipeThrough(window.fjordE2ee.transform(this.key, direction, failed)).pipeTo(writable);
      }
    },
    sender(s) { this.attach(s, 'encrypt', 'me'); },
    receiver(r, mid) { this.attach(r, 'decrypt', mid); },
  };

  // Frames of m-line `mid` do not open with our key: say so on the tile.
  function undecryptable(mid) {
    const pid = state.midToParticipant.get(mid);
    const t = pid && document.getElementById('tile-' + pid);
    if (!t || t.querySelector('.e2ee-fail')) return;
    const note = document.createElement('div');
    note.className = 'e2ee-fail';
    note.textContent = 'This participant\'s media cannot be decrypted: they joined with another passphrase.';
    t.append(note);
    state.e2eeFailures = (state.e2eeFailures || 0) + 1;
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
  state.send = send;

  function showMeeting() {
    $('waiting').hidden = true;
    $('meeting-view').hidden = false;
    if (!watchOnly()) tile(state.joined.participant_id, $('name').value.trim() + ' (you)', state.local);
    renderControls();
  }

  // A webinar's host made us a panelist: camera and microphone join, muted and off until
  // we turn them on; made an attendee again: they stop.
  async function roleChanged(was) {
    const wasWatching = !!(state.info && state.info.kind === 'webinar') && was === 'attendee';
    if (wasWatching && !watchOnly()) {
      try {
        const c = constraints();
        const media = await navigator.mediaDevices.getUserMedia(c);
        media.getTracks().forEach((t) => { state.local.addTrack(t); addTrack(state.pc, t); });
      } catch (e) { status('A host made you a panelist, but the camera or microphone is not available: ' + e.message, true); }
      setOwnMute(true, true);
      const offer = await state.pc.createOffer();
      await state.pc.setLocalDescription(offer);
      send({ type: 'offer', sdp: offer.sdp });
      sendMute();
      tile(state.joined.participant_id, $('name').value.trim() + ' (you)', state.local);
      banner('A host made you a panelist: unmute and turn your camera on to be seen and heard.');
    } else if (!wasWatching && watchOnly()) {
      state.local.getTracks().forEach((t) => { t.stop(); state.local.removeTrack(t); });
      for (const s of state.pc.getSenders()) if (s.track) await s.replaceTrack(null);
      const own = document.getElementById('tile-' + state.joined.participant_id);
      if (own) own.remove();
      banner('You are an attendee again: you watch and listen.');
    }
    renderControls();
  }

  async function handle(m) {
    const pc = state.pc;
    switch (m.type) {
      case 'waiting':
        $('waiting-title').textContent = m.title || state.title || 'the meeting';
        $('waiting').hidden = false;
        status('Waiting for the host to let you in.');
        break;
      case 'welcome': {
        status('In the meeting.');
        state.role = m.role;
        showMeeting();
        for (const p of m.participants) upsert(p);
        if (m.active_speaker) setActiveSpeaker(m.active_speaker);
        const offer = await pc.createOffer();
        await pc.setLocalDescription(offer);
        send({ type: 'offer', sdp: offer.sdp });
        if (state.audioMuted || state.videoMuted) sendMute();
        startQuality();
        break;
      }
      case 'room':
        state.room = m;
        if (m.title) { state.title = m.title; $('title').textContent = m.title; }
        $('lock-badge').hidden = !m.locked;
        renderControls();
        break;
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
      case 'participant_updated':
        upsert(m.participant);
        break;
      case 'participant_left': {
        state.participants.delete(m.participant_id);
        state.waiting.delete(m.participant_id);
        const t = document.getElementById('tile-' + m.participant_id);
        if (t) t.remove();
        renderPeople();
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
        if (p) { p.audio_muted = m.audio_muted; p.video_muted = m.video_muted; label(m.participant_id); renderPeople(); }
        break;
      }
      case 'muted_by_host':
        setOwnMute(m.audio_muted, m.video_muted);
        status((m.by_name || 'A host') + (m.video_muted && !m.audio_muted ? ' stopped your video.' : ' muted you.'));
        break;
      case 'unmute_request':
        banner((m.by_name || 'A host') + ' asks you to unmute. Use the Unmute button if you want to speak.');
        break;
      case 'breakout':
        state.breakout = m;
        showBreakout();
        break;
      case 'broadcast':
        banner((m.by_name || 'The host') + ' to every room: ' + m.text);
        break;
      case 'polls': state.polls = m.polls; renderPolls(); break;
      case 'questions': state.questions = m.questions; renderQuestions(); break;
      case 'reaction': showReaction(m); break;
      case 'board': board.load(m.ops); break;
      case 'local_recording_stop': localRecording.stop(); renderControls(); showRecorders(); status('Recording stopped: ' + m.reason + '. What was recorded is saved.', true); break;
      case 'board_draw': board.add(m); break;
      case 'board_undo': board.undo(m.author, m.stroke_id); break;
      case 'board_clear': board.load([]); if (m.by !== myId()) status((m.by_name || 'A host') + ' cleared the whiteboard.'); break;
      case 'active_speaker': setActiveSpeaker(m.participant_id); break;
      case 'error':
        console.warn('signaling error', m.message);
        if (m.in_reply_to === 'mute') { setOwnMute(true, state.videoMuted); status(m.message, true); }
        else if (m.in_reply_to !== 'layer') status(m.message, true);
        if (m.in_reply_to === 'board_draw') board.refused();
        if (m.in_reply_to === 'local_recording') { localRecording.stop(); renderControls(); showRecorders(); }
        break;
      case 'closed': closed(m.reason || ''); break;
    }
  }

  // Why a session ended: some reasons end the visit, others are rejoined.
  function closed(reason) {
    const stop = (text) => { state.leaving = true; teardown(); stopLocal(); $('meeting-view').hidden = true; $('waiting').hidden = true; status(text, true); };
    if (reason.includes('replaced')) { state.leaving = true; status('You joined from another window; this one left.', true); }
    else if (reason.includes('is full')) stop('This meeting is full.');
    else if (reason.includes('removed you')) stop('A host removed you from this meeting.');
    else if (reason.includes('did not let you in')) stop('The host did not let you into this meeting.');
    else if (reason.includes('ended the meeting')) stop('The host ended the meeting for everyone.');
    else lost('The media node closed the connection (' + reason + ').');
  }

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
    tile(id, p.name).hidden = roomOf(id) !== (state.breakout ? state.breakout.my_room : 0);
    renderPeople();
    showRecorders();
  }

  function setActiveSpeaker(pid) {
    state.activeSpeaker = pid;
    document.querySelectorAll('.tile').forEach((t) => t.classList.toggle('speaking', t.id === 'tile-' + pid));
    applyLayout();
  }

  function tile(pid, name, stream) {
    let t = document.getElementById('tile-' + pid);
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
      // Click or Enter pins the tile in speaker view.
      const pin = () => { state.pinnedTile = state.pinnedTile === pid ? null : pid; applyLayout(); };
      t.addEventListener('dblclick', pin);
      t.addEventListener('keydown', (e) => { if (e.key === 'Enter') pin(); });
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
    const hand = p && p.hand_raised_unix_ms != null ? ' ✋' : '';
    const rec = (p ? p.local_recording : pid === myId() && !!localRecording.active()) ? ' ● REC' : '';
    t.querySelector('.label').textContent = t.dataset.name + muted + hand + rec;
    t.setAttribute('aria-label', t.dataset.name + (muted ? ', muted' : '') + (hand ? ', hand raised' : '') +
      (rec ? ', recording on their computer' : ''));
  }

  // ---- Breakout rooms: which room I am in, and only its participants' tiles. ----
  function roomOf(pid) {
    const b = state.breakout;
    if (!b || !b.open) return 0;
    return (b.assignment && b.assignment[pid]) || 0;
  }
  function roomName(n) {
    return n === 0 ? 'the main room' : ((state.breakout && state.breakout.rooms[n - 1]) || ('room ' + n));
  }
  function showBreakout() {
    const b = state.breakout;
    const mine = b ? b.my_room : 0;
    let text = '';
    if (b && b.open && mine) text = 'You are in breakout room ' + roomName(mine) + '.';
    if (b && b.open && b.closes_unix_ms) {
      const secs = Math.max(0, Math.round((b.closes_unix_ms - Date.now()) / 1000));
      text += ' Breakout rooms close in ' + secs + ' s.';
      clearTimeout(state.breakoutTick);
      state.breakoutTick = setTimeout(showBreakout, 1000);
    }
    $('breakout-banner').textContent = text.trim();
    $('breakout-banner').hidden = !text;
    for (const p of state.participants.values()) {
      const t = document.getElementById('tile-' + p.participant_id);
      if (t) t.hidden = roomOf(p.participant_id) !== mine;
    }
    renderPeople();
  }

  // ---- Layouts: a gallery, or the speaker (or a pinned participant) large. ----
  function applyLayout() {
    const speaker = state.layout === 'speaker';
    $('grid').classList.toggle('speaker-view', speaker);
    const main = state.pinnedTile || state.activeSpeaker;
    document.querySelectorAll('.tile').forEach((t) => {
      t.classList.toggle('main', speaker && t.id === 'tile-' + main);
      t.classList.toggle('pinned', t.id === 'tile-' + state.pinnedTile);
    });
  }

  // Tell the node how large each remote video is shown, so it forwards a layer to match;
  // a tile scrolled out of sight gets the smallest.
  function sendLayer(pid) {
    for (const [mid, who] of state.midToParticipant) {
      if (who !== pid || state.midKind.get(mid) !== 'video') continue;
      const t = document.getElementById('tile-' + pid);
      let size = state.pinned.get(pid) || (t ? { width: t.clientWidth, height: t.clientHeight } : null);
      if (t && !state.pinned.get(pid) && t.dataset.visible === 'no') size = { width: 1, height: 1 };
      if (size) send({ type: 'layer', mid, width: Math.round(size.width), height: Math.round(size.height) });
    }
  }
  const resizes = new ResizeObserver((entries) => {
    for (const e of entries) sendLayer(e.target.id.replace(/^tile-/, ''));
  });
  const visibility = new IntersectionObserver((entries) => {
    for (const e of entries) {
      e.target.dataset.visible = e.isIntersecting ? 'yes' : 'no';
      sendLayer(e.target.id.replace(/^tile-/, ''));
    }
  });
  state.pinLayer = (pid, width, height) => { state.pinned.set(pid, { width, height }); sendLayer(pid); };

  function attach(mid, track) {
    const pid = state.midToParticipant.get(mid);
    if (!pid) return;
    const p = state.participants.get(pid);
    const t = tile(pid, p ? p.name : pid);
    if (track.kind === 'video') { resizes.observe(t); visibility.observe(t); setTimeout(() => sendLayer(pid), 0); }
    const v = t.querySelector('video');
    const s = v.srcObject instanceof MediaStream ? v.srcObject : new MediaStream();
    s.addTrack(track);
    v.srcObject = s;
    const speaker = $('speaker-select').value;
    if (speaker && v.setSinkId) v.setSinkId(speaker).catch(() => {});
    localRecording.addAudio(track);
  }

  // ---- Connection quality, from getStats(): per remote participant and our own. ----
  function startQuality() {
    clearInterval(state.qualityTimer);
    state.lastStats = new Map();
    state.qualityTimer = setInterval(measureQuality, 2000);
  }

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
    const per = new Map();
    for (const [mid, s] of byMid) {
      const pid = state.midToParticipant.get(mid);
      if (!pid) continue;
      const last = state.lastStats.get(mid);
      state.lastStats.set(mid, s);
      if (!last) continue;
      const got = s.packetsReceived - last.packetsReceived;
      const lost = Math.max(0, s.packetsLost - last.packetsLost);
      const bits = 8 * (s.bytesReceived - last.bytesReceived) / ((s.timestamp - last.timestamp) / 1000 || 1);
      const q = per.get(pid) || { lost: 0, got: 0, bitrate: 0 };
      q.lost += lost; q.got += got; q.bitrate += bits;
      per.set(pid, q);
    }
    for (const [pid, q] of per) {
      const loss = q.got + q.lost ? q.lost / (q.got + q.lost) : 0;
      const grade = loss > 0.1 || (rtt || 0) > 0.4 ? 'poor' : loss > 0.02 || (rtt || 0) > 0.2 ? 'fair' : 'good';
      state.quality.set(pid, { loss, rtt, bitrate: q.bitrate, grade });
      const t = document.getElementById('tile-' + pid);
      if (t) {
        const el = t.querySelector('.quality');
        el.className = 'quality ' + grade;
        el.setAttribute('aria-label', 'Connection ' + grade);
        el.title = 'Connection ' + grade + ': ' + Math.round(loss * 100) + ' % lost, ' +
          (rtt == null ? '?' : Math.round(rtt * 1000)) + ' ms round trip, ' + Math.round(q.bitrate / 1000) + ' kbit/s';
      }
    }
    state.ownQuality = { loss: ownLoss, rtt };
    if (pc.connectionState === 'connected') {
      banner(ownLoss > 0.1 || (rtt || 0) > 0.5 ? 'Your connection is poor: others may not see or hear you well.' : '');
    }
  }

  // ---- Polls, Q&A and reactions. ----
  const REACTIONS = ['👍', '👏', '❤️', '😂', '😮', '🎉', '🤔', '👋'];
  const el = (tag, text, cls) => {
    const e = document.createElement(tag);
    if (text != null) e.textContent = text;
    if (cls) e.className = cls;
    return e;
  };

  // One poll: its question, a form to answer while it is open (once), and its results
  // where they are shown (hosts, or everyone once shared); hosts get its actions.
  function pollItem(p) {
    const li = el('li', null, 'poll');
    li.id = 'poll-' + p.poll_id;
    li.append(el('strong', p.question));
    const how = { draft: 'Prepared, not launched', open: 'Open', ended: 'Ended' }[p.state] || p.state;
    li.append(el('div', how + (p.anonymous ? ' · anonymous' : '') + (p.shared ? ' · results shared' : '')));
    if (p.state === 'open' && !p.answered_by_me) {
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
          send({ type: 'poll_answer', poll_id: p.poll_id, text: form.querySelector('input').value });
        } else {
          const choices = [...form.querySelectorAll('input:checked')].map((c) => Number(c.value));
          if (!choices.length) { status('Choose an answer first.', true); return; }
          send({ type: 'poll_answer', poll_id: p.poll_id, choices });
        }
      });
      li.append(form);
    } else if (p.state === 'open') {
      li.append(el('div', 'You answered. Thank you.'));
    }
    if (p.results) {
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
    if (isHost()) {
      const actions = el('div', null, 'actions');
      const act = (type, text) => actions.append(button(text, () => send({ type, poll_id: p.poll_id }), text + ': ' + p.question));
      if (p.state === 'draft') act('poll_launch', 'Launch');
      if (p.state === 'open') act('poll_end', 'End poll');
      if (p.state === 'ended' && !p.shared) act('poll_share', 'Share results');
      li.append(actions);
    }
    return li;
  }

  function renderPolls() {
    $('poll-form').hidden = !isHost();
    const polls = state.polls || [];
    $('poll-list').replaceChildren(...polls.map(pollItem));
    const open = polls.filter((p) => p.state === 'open' && !p.answered_by_me).length;
    $('polls-toggle').textContent = open ? 'Polls (' + open + ' open)' : 'Polls';
    // A poll to answer opens the panel.
    if (open && $('polls').hidden) togglePanel('polls', true);
  }

  function renderQuestions() {
    const items = (state.questions || []).map((q) => {
      const li = el('li', null, 'question');
      li.append(el('div', q.text));
      li.append(el('div', (q.anonymous ? 'Anonymous' : q.author_name) + ' · ' + q.votes + (q.votes === 1 ? ' vote' : ' votes') +
        (q.dismissed ? ' · dismissed' : '')));
      if (q.answer) li.append(el('div', (q.answered_by_name || 'Host') + ': ' + q.answer, 'answer'));
      if (q.answered_live) li.append(el('div', 'Answered live', 'answer'));
      const actions = el('div', null, 'actions');
      if (!q.voted_by_me && !q.mine) {
        actions.append(button('▲ Upvote', () => send({ type: 'question_upvote', question_id: q.question_id }), 'Upvote: ' + q.text));
      }
      if (isHost()) {
        actions.append(button('Answer', () => {
          const text = prompt('Your answer to: ' + q.text);
          if (text && text.trim()) send({ type: 'question_answer', question_id: q.question_id, text: text.trim() });
        }, 'Answer: ' + q.text));
        if (!q.answered_live) actions.append(button('Answered live', () => send({ type: 'question_answer', question_id: q.question_id, live: true }), 'Mark answered live: ' + q.text));
        if (!q.dismissed) actions.append(button('Dismiss', () => send({ type: 'question_dismiss', question_id: q.question_id }), 'Dismiss: ' + q.text));
      }
      li.append(actions);
      return li;
    });
    $('qa-list').replaceChildren(...items);
  }

  // A reaction shows on the sender's tile for four seconds.
  function showReaction(m) {
    const me = state.joined && state.joined.participant_id;
    const t = document.getElementById('tile-' + (m.from === me ? me : m.from));
    if (!t) return;
    const r = el('div', m.emoji, 'reaction');
    r.setAttribute('aria-label', m.name + ' reacted ' + m.emoji);
    t.append(r);
    setTimeout(() => r.remove(), 4000);
  }

  function togglePanel(id, open) {
    $(id).hidden = !open;
    $(id + '-toggle').setAttribute('aria-expanded', String(open));
  }

  // ---- The whiteboard: operations from the node, drawn on a 1600 × 900 canvas. ----
  const myId = () => state.joined && state.joined.participant_id;
  const board = (() => {
    const canvas = $('board-canvas'), overlay = $('board-overlay');
    const ctx = canvas.getContext('2d'), octx = overlay.getContext('2d');
    let ops = [], ids = new Set(), pending = [], strokeId = 0, drawing = null, myStrokes = [];

    function paint(c, op) {
      c.save();
      c.globalCompositeOperation = op.tool === 'eraser' ? 'destination-out' : 'source-over';
      c.strokeStyle = c.fillStyle = op.color;
      c.lineWidth = op.tool === 'eraser' ? op.width * 3 : op.width;
      c.lineCap = c.lineJoin = 'round';
      const p = op.points;
      if (op.tool === 'text') {
        c.font = (op.width * 4) + 'px system-ui, sans-serif';
        c.textBaseline = 'top';
        c.fillText(op.text, p[0], p[1]);
      } else if (op.tool === 'rect') {
        c.strokeRect(Math.min(p[0], p[2]), Math.min(p[1], p[3]), Math.abs(p[2] - p[0]), Math.abs(p[3] - p[1]));
      } else if (op.tool === 'ellipse') {
        c.beginPath();
        c.ellipse((p[0] + p[2]) / 2, (p[1] + p[3]) / 2, Math.abs(p[2] - p[0]) / 2, Math.abs(p[3] - p[1]) / 2, 0, 0, 2 * Math.PI);
        c.stroke();
      } else {
        c.beginPath();
        c.moveTo(p[0], p[1]);
        for (let i = 2; i < p.length; i += 2) c.lineTo(p[i], p[i + 1]);
        if (p.length === 2) c.lineTo(p[0] + 0.1, p[1]);
        c.stroke();
      }
      c.restore();
    }
    function redraw() {
      ctx.clearRect(0, 0, canvas.width, canvas.height);
      for (const op of ops) paint(ctx, op);
    }
    function overlayDraw() {
      octx.clearRect(0, 0, overlay.width, overlay.height);
      for (const op of pending) paint(octx, op);
      if (drawing) paint(octx, drawing);
    }
    // Where a pointer event is, in board units.
    function at(e) {
      const r = canvas.getBoundingClientRect();
      const x = Math.round((e.clientX - r.left) * canvas.width / r.width);
      const y = Math.round((e.clientY - r.top) * canvas.height / r.height);
      return [Math.max(0, Math.min(canvas.width, x)), Math.max(0, Math.min(canvas.height, y))];
    }
    function style() {
      return { tool: $('board-tool').value, color: $('board-color').value, width: Number($('board-width').value) || 4 };
    }
    function sendOp(op) {
      pending.push(op);
      send({ type: 'board_draw', stroke_id: op.stroke_id, tool: op.tool, color: op.color, width: op.width, points: op.points, text: op.text || '' });
    }
    // A stroke goes out a segment at a time while it is drawn (every 50 ms), each
    // starting where the last ended.
    let flushTimer = null;
    function flush() {
      if (!drawing || drawing.points.length < 2 || !drawing.unsent) return;
      sendOp({ ...drawing, points: drawing.points.slice(drawing.from) });
      drawing.from = drawing.points.length - 2;
      drawing.unsent = false;
    }
    canvas.addEventListener('pointerdown', (e) => {
      if (!state.ws) return;
      const s = style();
      const p = at(e);
      if (s.tool === 'text') {
        const text = prompt('Text to put on the whiteboard');
        if (text && text.trim()) {
          strokeId += 1; myStrokes.push(strokeId);
          sendOp({ ...s, stroke_id: strokeId, points: p, text: text.trim().slice(0, 200) });
          overlayDraw();
        }
        return;
      }
      strokeId += 1; myStrokes.push(strokeId);
      drawing = { ...s, stroke_id: strokeId, points: p.slice(), from: 0, unsent: true };
      try { canvas.setPointerCapture(e.pointerId); } catch (_) { /* synthetic events */ }
      if (s.tool === 'pen' || s.tool === 'eraser') flushTimer = setInterval(flush, 50);
      overlayDraw();
    });
    canvas.addEventListener('pointermove', (e) => {
      if (!drawing) return;
      const p = at(e);
      if (drawing.tool === 'pen' || drawing.tool === 'eraser') {
        drawing.points.push(p[0], p[1]);
        drawing.unsent = true;
        if (drawing.points.length - drawing.from >= 2 * 400) flush();
      } else {
        drawing.points = drawing.points.slice(0, 2).concat(p);
      }
      overlayDraw();
    });
    const end = (e) => {
      if (!drawing) return;
      clearInterval(flushTimer);
      if (drawing.tool === 'pen' || drawing.tool === 'eraser') {
        if (drawing.from === 0) drawing.unsent = true;
        flush();
      } else {
        const p = at(e);
        drawing.points = drawing.points.slice(0, 2).concat(p);
        sendOp({ ...drawing });
      }
      drawing = null;
      overlayDraw();
    };
    canvas.addEventListener('pointerup', end);
    canvas.addEventListener('pointercancel', end);
    return {
      load(list) { ops = list.slice(); ids = new Set(ops.map((o) => o.op_id)); pending = []; redraw(); overlayDraw(); },
      add(op) {
        if (ids.has(op.op_id)) return;
        ids.add(op.op_id);
        ops.push(op);
        paint(ctx, op);
        if (op.author === myId()) {
          const i = pending.findIndex((p) => p.stroke_id === op.stroke_id);
          if (i >= 0) { pending.splice(i, 1); overlayDraw(); }
        }
      },
      undo(author, stroke) { ops = ops.filter((o) => !(o.author === author && o.stroke_id === stroke)); redraw(); },
      undoMine() { const s = myStrokes.pop(); if (s != null) send({ type: 'board_undo', stroke_id: s }); },
      // A refused operation is not kept as drawn.
      refused() { pending = []; overlayDraw(); },
      png() {
        const out = document.createElement('canvas');
        out.width = canvas.width; out.height = canvas.height;
        const c = out.getContext('2d');
        c.fillStyle = '#fff'; c.fillRect(0, 0, out.width, out.height);
        c.drawImage(canvas, 0, 0);
        return out.toDataURL('image/png');
      },
    };
  })();

  // ---- Recording on this computer: what the page shows and plays, as WebM. ----
  const localRecording = (() => {
    let rec = null, chunks = [], timer = null, audio = null, mix = null, tracks = new Set();
    // Every audio track the page plays (remote participants and our microphone) into one.
    function addAudio(track) {
      if (!mix || track.kind !== 'audio' || tracks.has(track.id)) return;
      tracks.add(track.id);
      audio.createMediaStreamSource(new MediaStream([track])).connect(mix);
    }
    function start() {
      const canvas = document.createElement('canvas');
      canvas.width = 1280; canvas.height = 720;
      const c = canvas.getContext('2d');
      // The visible tiles, as a grid.
      const draw = () => {
        c.fillStyle = '#10161d';
        c.fillRect(0, 0, canvas.width, canvas.height);
        const tiles = [...document.querySelectorAll('#grid .tile')].filter((t) => !t.hidden);
        const cols = Math.ceil(Math.sqrt(tiles.length || 1));
        const rows = Math.ceil((tiles.length || 1) / cols);
        const w = canvas.width / cols, h = canvas.height / rows;
        tiles.forEach((t, i) => {
          const x = (i % cols) * w, y = Math.floor(i / cols) * h;
          const v = t.querySelector('video');
          if (v && v.videoWidth) c.drawImage(v, x, y, w, h);
          c.fillStyle = '#fff';
          c.font = '20px system-ui, sans-serif';
          c.fillText(t.dataset.name || '', x + 8, y + h - 10);
        });
      };
      draw();
      timer = setInterval(draw, 1000 / 15);
      audio = new AudioContext();
      mix = audio.createMediaStreamDestination();
      tracks = new Set();
      for (const v of document.querySelectorAll('#grid video')) {
        if (v.srcObject instanceof MediaStream) v.srcObject.getAudioTracks().forEach(addAudio);
      }
      if (state.local) state.local.getAudioTracks().forEach(addAudio);
      const stream = canvas.captureStream(15);
      stream.addTrack(mix.stream.getAudioTracks()[0]);
      const type = ['video/webm;codecs=vp8,opus', 'video/webm'].find((t) => MediaRecorder.isTypeSupported(t));
      rec = new MediaRecorder(stream, type ? { mimeType: type } : undefined);
      chunks = [];
      rec.ondataavailable = (e) => { if (e.data.size) chunks.push(e.data); };
      rec.onstop = () => {
        const blob = new Blob(chunks, { type: 'video/webm' });
        const a = document.createElement('a');
        a.href = URL.createObjectURL(blob);
        a.download = 'fjord-' + (state.meeting || 'meeting') + '-' + new Date().toISOString().replace(/[:.]/g, '-') + '.webm';
        document.body.append(a);
        a.click();
        a.remove();
      };
      rec.start(1000);
      send({ type: 'local_recording', recording: true });
    }
    function stop() {
      if (!rec) return;
      clearInterval(timer);
      if (rec.state !== 'inactive') rec.stop();
      rec = null;
      if (audio) audio.close();
      audio = null; mix = null;
      send({ type: 'local_recording', recording: false });
    }
    return { start, stop, addAudio, active: () => !!rec };
  })();

  // Who records on their computer: a badge for everyone, and a mark on their tiles.
  function showRecorders() {
    const names = [...state.participants.values()].filter((p) => p.local_recording).map((p) => p.name);
    if (localRecording.active()) names.unshift('You');
    $('recording-badge').hidden = !names.length;
    $('recording-badge').textContent = names.length
      ? '● ' + names.join(', ') + (names.length === 1 && names[0] !== 'You' ? ' is' : ' are') + ' recording this meeting on their computer'
      : '';
    for (const id of state.participants.keys()) label(id);
    if (state.joined) label(state.joined.participant_id);
  }

  // ---- The participant panel and the host's controls. ----
  function button(text, onclick, labelText) {
    const b = document.createElement('button');
    b.type = 'button';
    b.textContent = text;
    if (labelText) b.setAttribute('aria-label', labelText);
    b.onclick = onclick;
    return b;
  }

  function renderPeople() {
    const list = $('people-list');
    list.replaceChildren();
    const me = state.joined && state.joined.participant_id;
    const all = [...state.participants.values()];
    // Raised hands first, in the order they went up.
    all.sort((a, b) => (a.hand_raised_unix_ms ?? Infinity) - (b.hand_raised_unix_ms ?? Infinity) || a.joined_unix_ms - b.joined_unix_ms);
    for (const p of all) {
      const li = document.createElement('li');
      li.className = 'person';
      li.dataset.pid = p.participant_id;
      const who = document.createElement('span');
      const marks = [p.role !== 'attendee' ? p.role : null, p.audio_muted ? 'muted' : null,
        p.video_muted ? 'video off' : null, p.hand_raised_unix_ms != null ? '✋ hand raised' : null].filter(Boolean);
      const room = state.breakout && state.breakout.rooms.length ? (state.breakout.assignment[p.participant_id] || 0) : null;
      if (room) marks.push('in ' + roomName(room));
      who.textContent = p.name + (marks.length ? ' (' + marks.join(', ') + ')' : '');
      li.append(who);
      if (isHost() && room !== null) {
        const sel = document.createElement('select');
        sel.setAttribute('aria-label', 'Breakout room of ' + p.name);
        ['Main room'].concat(state.breakout.rooms).forEach((name, i) => {
          const o = document.createElement('option');
          o.value = String(i); o.textContent = name;
          sel.append(o);
        });
        sel.value = String(room);
        sel.onchange = () => send({ type: 'breakout_assign', participant_id: p.participant_id, room: Number(sel.value) });
        li.append(sel);
      }
      if (isHost() && p.participant_id !== me) {
        const id = p.participant_id;
        const acts = document.createElement('span');
        acts.className = 'actions';
        acts.append(
          button('Mute', () => send({ type: 'mute_participant', participant_id: id, audio: true }), 'Mute ' + p.name),
          button('Stop video', () => send({ type: 'mute_participant', participant_id: id, video: true }), 'Stop the video of ' + p.name),
          button('Ask to unmute', () => send({ type: 'ask_unmute', participant_id: id }), 'Ask ' + p.name + ' to unmute'),
        );
        if (p.hand_raised_unix_ms != null) acts.append(button('Lower hand', () => send({ type: 'lower_hand', participant_id: id }), 'Lower the hand of ' + p.name));
        if (p.role === 'co-host') acts.append(button('Remove co-host', () => send({ type: 'set_role', participant_id: id, role: 'attendee' }), 'Make ' + p.name + ' an attendee'));
        else if (p.role !== 'host') acts.append(button('Make co-host', () => send({ type: 'set_role', participant_id: id, role: 'co-host' }), 'Make ' + p.name + ' a co-host'));
        // A webinar's attendee can be let talk (made a panelist for a while) and back.
        if (state.info && state.info.kind === 'webinar') {
          if (p.role === 'attendee') acts.append(button('Let talk', () => send({ type: 'set_role', participant_id: id, role: 'panelist' }), 'Make ' + p.name + ' a panelist'));
          else if (p.role === 'panelist') acts.append(button('Back to attendee', () => send({ type: 'set_role', participant_id: id, role: 'attendee' }), 'Make ' + p.name + ' an attendee again'));
        }
        if (state.role === 'host' && p.role !== 'host') acts.append(button('Make host', () => send({ type: 'set_role', participant_id: id, role: 'host' }), 'Make ' + p.name + ' the host'));
        acts.append(
          button('Rename', () => { const n = prompt('New name for ' + p.name, p.name); if (n) send({ type: 'rename', participant_id: id, name: n }); }, 'Rename ' + p.name),
          button('Remove', () => { if (confirm('Remove ' + p.name + ' from the meeting?')) send({ type: 'remove', participant_id: id }); }, 'Remove ' + p.name),
        );
        li.append(acts);
      }
      list.append(li);
    }
    const waiting = $('waiting-list');
    waiting.replaceChildren();
    for (const p of state.waiting.values()) {
      const li = document.createElement('li');
      li.className = 'waiting-person';
      li.dataset.pid = p.participant_id;
      li.append(document.createTextNode(p.name + ' '),
        button('Admit', () => send({ type: 'admit', participant_id: p.participant_id }), 'Admit ' + p.name),
        button('Deny', () => send({ type: 'deny', participant_id: p.participant_id }), 'Deny ' + p.name));
      waiting.append(li);
    }
    $('waiting-list-box').hidden = !isHost() || state.waiting.size === 0;
    const n = state.participants.size + 1;
    $('people-toggle').textContent = 'Participants (' + n + ')' + (isHost() && state.waiting.size ? ' · ' + state.waiting.size + ' waiting' : '');
  }

  function renderControls() {
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
    $('end').hidden = state.role !== 'host';
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
    renderPeople();
  }

  function setOwnMute(audio, video) {
    state.audioMuted = audio;
    state.videoMuted = video;
    if (state.local) {
      state.local.getAudioTracks().forEach((t) => { t.enabled = !audio; });
      state.local.getVideoTracks().forEach((t) => { t.enabled = !video; });
    }
    renderControls();
  }
  function sendMute() { send({ type: 'mute', audio_muted: state.audioMuted, video_muted: state.videoMuted }); }

  function teardown() {
    clearInterval(state.qualityTimer);
    if (state.pc) state.pc.close();
    if (state.ws) state.ws.close();
    state.pc = null; state.ws = null;
    state.midToParticipant.clear();
    state.participants.clear();
    state.waiting.clear();
    $('grid').replaceChildren();
  }
  function stopLocal() {
    if (state.local) state.local.getTracks().forEach((t) => t.stop());
  }

  // Rejoins at once (a quarter second, jittered so that a node's participants do not all
  // come back in the same instant), then backing off to 4 s between attempts; a join
  // that answers a 4xx (the meeting ended, is full, is locked…) stops it.
  function lost(why) {
    if (state.joined) state.lostNode = state.joined.node_id;
    teardown();
    status(why + ' Rejoining…', true);
    banner('Connection lost. Rejoining…');
    state.rejoining = true;
    const wait = Math.min(4000, 250 * 2 ** (state.attempts || 0)) * (0.5 + Math.random() / 2);
    state.attempts = (state.attempts || 0) + 1;
    setTimeout(() => { if (!state.leaving) join(); }, wait);
  }

  state.leave = () => {
    state.leaving = true;
    localRecording.stop();
    send({ type: 'leave' });
    teardown();
    stopLocal();
    $('meeting-view').hidden = true;
    $('waiting').hidden = true;
    status('You left the meeting.');
  };
  state.sendChat = (text) => send({ type: 'chat', text });

  $('join').addEventListener('submit', (e) => { e.preventDefault(); join(); });
  $('register').addEventListener('submit', async (e) => {
    e.preventDefault();
    const id = $('meeting').value.trim();
    const answers = ((state.info && state.info.registration && state.info.registration.questions) || []).map((_, i) => $('reg-answer-' + i).value);
    const resp = await fetch('/v1/meetings/' + encodeURIComponent(id) + '/registrants', {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name: $('reg-name').value, email: $('reg-email').value, answers }),
    }).catch(() => null);
    const body = resp && await resp.json().catch(() => null);
    if (!resp || !resp.ok) { status(resp ? explain(resp.status, body) : 'Cannot reach the meeting service.', true); return; }
    const link = new URL('/m/' + encodeURIComponent(id) + '?registrant_key=' + encodeURIComponent(body.registrant_key), location.href).href;
    $('reg-link').href = link;
    $('reg-link').textContent = link;
    $('reg-done').hidden = false;
    status(body.state === 'approved' ? 'You are registered and approved: use your link to join.' : 'You are registered; the host will approve your registration.');
  });
  $('leave').onclick = () => state.leave();
  $('waiting-leave').onclick = () => state.leave();
  $('mute').onclick = () => { setOwnMute(!state.audioMuted, state.videoMuted); sendMute(); if (!state.audioMuted) banner(''); };
  $('camera').onclick = async () => {
    // Joined with the camera off: turning it on adds a video track and renegotiates.
    if (state.videoMuted && state.local && !state.local.getVideoTracks().length && state.pc) {
      try {
        const cam = await navigator.mediaDevices.getUserMedia({ video: constraints().video });
        const track = cam.getVideoTracks()[0];
        state.local.addTrack(track);
        addTrack(state.pc, track);
        const offer = await state.pc.createOffer();
        await state.pc.setLocalDescription(offer);
        send({ type: 'offer', sdp: offer.sdp });
        tile(state.joined.participant_id, $('name').value.trim() + ' (you)', state.local);
      } catch (e) { status('Camera not available: ' + e.message, true); return; }
    }
    setOwnMute(state.audioMuted, !state.videoMuted);
    sendMute();
  };
  $('share').onclick = async () => {
    const sender = state.pc && state.pc.getSenders().find((s) => s.track && s.track.kind === 'video');
    if (!sender) { status('Turn your camera on to share your screen.', true); return; }
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
  $('hand').onclick = () => send({ type: state.handRaised ? 'lower_hand' : 'raise_hand' });
  $('layout').onclick = () => {
    state.layout = state.layout === 'gallery' ? 'speaker' : 'gallery';
    $('layout').textContent = state.layout === 'gallery' ? 'Speaker view' : 'Gallery view';
    applyLayout();
  };
  $('people-toggle').onclick = () => {
    const open = $('people').hidden;
    $('people').hidden = !open;
    $('people-toggle').setAttribute('aria-expanded', String(open));
    renderPeople();
  };
  $('board-toggle').onclick = () => togglePanel('board', $('board').hidden);
  $('record-local').onclick = () => {
    if (localRecording.active()) localRecording.stop(); else localRecording.start();
    renderControls();
    showRecorders();
  };
  $('local-recording-allowed').onchange = () => send({ type: 'local_recording_allow', allowed: $('local-recording-allowed').checked });
  $('attendee-chat').onchange = () => send({ type: 'attendee_chat', everyone: $('attendee-chat').checked });
  $('board-undo').onclick = () => board.undoMine();
  $('board-clear').onclick = () => { if (confirm('Clear the whiteboard for everyone?')) send({ type: 'board_clear' }); };
  $('board-allow').onchange = () => send({ type: 'board_allow', allowed: $('board-allow').checked });
  $('board-export').onclick = () => {
    const a = document.createElement('a');
    a.href = board.png();
    a.download = 'whiteboard-' + (state.meeting || 'meeting') + '.png';
    a.click();
  };
  $('polls-toggle').onclick = () => togglePanel('polls', $('polls').hidden);
  $('qa-toggle').onclick = () => togglePanel('qa', $('qa').hidden);
  for (const e of REACTIONS) $('reactions').append(button(e, () => send({ type: 'reaction', emoji: e }), 'React ' + e));
  $('poll-kind').onchange = () => { $('poll-options').disabled = $('poll-kind').value === 'text'; };
  $('poll-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const kind = $('poll-kind').value;
    const options = kind === 'text' ? [] : $('poll-options').value.split('\n').map((o) => o.trim()).filter(Boolean);
    send({ type: 'poll_create', question: $('poll-question').value.trim(), kind, options, anonymous: $('poll-anonymous').checked });
    $('poll-question').value = '';
    $('poll-options').value = '';
  });
  $('qa-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const text = $('qa-text').value.trim();
    if (text) send({ type: 'question_ask', text, anonymous: $('qa-anonymous').checked });
    $('qa-text').value = '';
  });
  $('lock').onclick = () => send({ type: 'lock', locked: !state.room.locked });
  $('mute-all').onclick = () => send({ type: 'mute_all', allow_unmute: $('allow-unmute').checked });
  $('allow-unmute').onchange = () => send({ type: 'allow_unmute', allowed: $('allow-unmute').checked });
  $('waiting-room').onchange = () => send({ type: 'waiting_room', enabled: $('waiting-room').checked });
  $('admit-all').onclick = () => send({ type: 'admit_all' });
  $('breakout-create').onclick = () => send({ type: 'breakout_create', rooms: Number($('breakout-count').value) || 1 });
  $('breakout-auto').onclick = () => send({ type: 'breakout_auto' });
  $('breakout-open').onclick = () => send({ type: 'breakout_open' });
  $('breakout-close').onclick = () => send({ type: 'breakout_close', seconds: 60 });
  $('broadcast-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const text = $('broadcast-text').value.trim();
    if (text) send({ type: 'breakout_broadcast', text });
    $('broadcast-text').value = '';
  });
  $('end').onclick = () => { if (confirm('End the meeting for everyone?')) send({ type: 'end_meeting' }); };
  $('chat-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const text = $('chat-text').value.trim();
    if (text) state.sendChat(text);
    $('chat-text').value = '';
  });
  $('mic-select').onchange = preview;
  $('camera-select').onchange = preview;
  $('join-camera-off').onchange = () => {
    if (!state.local) return;
    state.local.getVideoTracks().forEach((t) => { t.enabled = !$('join-camera-off').checked; });
  };

  const m = location.pathname.match(/^\/m\/([^/]+)/);
  if (m) { $('meeting').value = decodeURIComponent(m[1]); loadMeeting($('meeting').value); }
  if (params.get('name')) $('name').value = params.get('name');
  if (params.get('password')) { $('password-row').hidden = false; $('password').value = params.get('password'); }
  if (params.get('muted') === '1') $('join-muted').checked = true;
  if (params.get('camera') === 'off') $('join-camera-off').checked = true;
  if (params.get('autojoin') === '1') join();
  else if (navigator.mediaDevices) preview();
})();
