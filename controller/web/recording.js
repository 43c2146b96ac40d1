// Recording on this computer: what the page shows and plays, as a WebM download. Only
// the recorder; the record button and a host's stop are in hosts.js, the marks on the
// tiles in grid.js.
import { CLIENT } from './protocol.js';
import { send } from './signal.js';
import { state } from './state.js';
import { t } from './i18n.js';

let rec = null, chunks = [], timer = null, audio = null, mix = null, tracks = new Set();

// Every audio track the page plays (remote participants and our microphone) into one.
function addAudio(track) {
  if (!mix || track.kind !== 'audio' || tracks.has(track.id)) return;
  tracks.add(track.id);
  audio.createMediaStreamSource(new MediaStream([track])).connect(mix);
}

// The visible tiles, as a grid, on a 1280 × 720 canvas 15 times a second.
function drawTiles(canvas) {
  const c = canvas.getContext('2d');
  return () => {
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
}

// The finished recording is offered as a download at once: nothing leaves the computer.
function download() {
  const blob = new Blob(chunks, { type: 'video/webm' });
  const a = document.createElement('a');
  a.href = URL.createObjectURL(blob);
  a.download = 'fjord-' + (state.meeting || t('rec.file.meeting')) + '-' + new Date().toISOString().replace(/[:.]/g, '-') + '.webm';
  document.body.append(a);
  a.click();
  a.remove();
}

function start() {
  const canvas = document.createElement('canvas');
  canvas.width = 1280; canvas.height = 720;
  const draw = drawTiles(canvas);
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
  rec.onstop = download;
  rec.start(1000);
  send({ type: CLIENT.local_recording, recording: true });
}

function stop() {
  if (!rec) return;
  clearInterval(timer);
  if (rec.state !== 'inactive') rec.stop();
  rec = null;
  if (audio) audio.close();
  audio = null; mix = null;
  send({ type: CLIENT.local_recording, recording: false });
}

export const localRecording = { start, stop, addAudio, active: () => !!rec };
