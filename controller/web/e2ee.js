// End-to-end encryption of media frames for meetings created with `e2ee: true`.
//
// Each encoded frame is sealed with AES-GCM (256-bit key, a fresh 12-byte IV per frame)
// before the browser packetizes it, and opened after the receiving browser has put it
// back together: the media node forwards what it cannot read. The key is derived from
// the meeting's passphrase, which travels in the link's fragment (`#…`, never sent to a
// server), with PBKDF2 (SHA-256, salted with the meeting id).
//
// A frame's first bytes stay in clear, authenticated as the cipher's additional data,
// so that the media node can still tell a VP8 keyframe from others and rewrite the
// simulcast stream (10 bytes of a keyframe, 3 of another VP8 frame, the Opus TOC byte of
// audio). Sealed frame: clear bytes | ciphertext and tag | IV | how many bytes are clear.
//
// The same module runs in the page (the key, and the legacy insertable streams API) and
// in a module worker (RTCRtpScriptTransform, where the browser has it). It imports
// nothing, so that the worker loads only this file.
const IV_BYTES = 12;
const TAG_BYTES = 16;

function clearBytes(frame) {
  // RTCEncodedAudioFrame has no `type`.
  if (frame.type === undefined) return 1;
  return frame.type === 'key' ? 10 : 3;
}

async function seal(key, frame, controller) {
  const data = new Uint8Array(frame.data);
  const n = Math.min(clearBytes(frame), data.length);
  const iv = crypto.getRandomValues(new Uint8Array(IV_BYTES));
  const sealed = new Uint8Array(await crypto.subtle.encrypt(
    { name: 'AES-GCM', iv, additionalData: data.subarray(0, n) }, key, data.subarray(n)));
  const out = new Uint8Array(n + sealed.length + IV_BYTES + 1);
  out.set(data.subarray(0, n), 0);
  out.set(sealed, n);
  out.set(iv, n + sealed.length);
  out[out.length - 1] = n;
  frame.data = out.buffer;
  controller.enqueue(frame);
}

// A frame that does not open (another key, or none) is dropped: the viewer sees no
// picture rather than a garbled one, and `failed` is told.
async function open(key, frame, controller, failed) {
  const data = new Uint8Array(frame.data);
  const n = data.length ? data[data.length - 1] : 0;
  if (data.length < n + TAG_BYTES + IV_BYTES + 1) { failed(); return; }
  const ivAt = data.length - 1 - IV_BYTES;
  try {
    const plain = new Uint8Array(await crypto.subtle.decrypt(
      { name: 'AES-GCM', iv: data.subarray(ivAt, ivAt + IV_BYTES), additionalData: data.subarray(0, n) },
      key, data.subarray(n, ivAt)));
    const out = new Uint8Array(n + plain.length);
    out.set(data.subarray(0, n), 0);
    out.set(plain, n);
    frame.data = out.buffer;
    controller.enqueue(frame);
  } catch (e) {
    failed();
  }
}

export function transform(key, direction, failed) {
  return new TransformStream({
    transform: (frame, controller) => (direction === 'encrypt'
      ? seal(key, frame, controller)
      : open(key, frame, controller, failed)),
  });
}

export async function deriveKey(passphrase, meetingId) {
  const material = await crypto.subtle.importKey(
    'raw', new TextEncoder().encode(passphrase), 'PBKDF2', false, ['deriveKey']);
  return crypto.subtle.deriveKey(
    { name: 'PBKDF2', hash: 'SHA-256', iterations: 200000, salt: new TextEncoder().encode('fjord-e2ee:' + meetingId) },
    material, { name: 'AES-GCM', length: 256 }, false, ['encrypt', 'decrypt']);
}

if (typeof WorkerGlobalScope !== 'undefined' && self instanceof WorkerGlobalScope) {
  self.onrtctransform = (event) => {
    const { key, direction, id } = event.transformer.options;
    let told = 0;
    const failed = () => {
      const now = Date.now();
      if (now - told > 1000) { told = now; self.postMessage({ failed: id }); }
    };
    event.transformer.readable.pipeThrough(transform(key, direction, failed)).pipeTo(event.transformer.writable);
  };
}

// ---- In the page: the meeting's key, and the transform on each sender and receiver. ----
export const e2ee = {
  key: null,
  worker: null,
  failed: null,
  // The passphrase in the link's fragment: `#key=…` or the whole fragment.
  fromLink() {
    const h = decodeURIComponent(location.hash.slice(1));
    return h.startsWith('key=') ? h.slice(4) : h;
  },
  // An encoded transform, in a worker or in the page: without one, no encrypted meeting.
  supported() {
    return ('RTCRtpScriptTransform' in window) || ('createEncodedStreams' in RTCRtpSender.prototype);
  },
  // `failed(mid)`: frames of m-line `mid` do not open with our key (told at most once a
  // second per m-line).
  async prepare(meeting, passphrase, failed) {
    this.key = await deriveKey(passphrase, meeting);
    this.failed = failed;
    if ('RTCRtpScriptTransform' in window) {
      this.worker = new Worker('/static/e2ee.js', { type: 'module' });
      this.worker.onmessage = (e) => { if (e.data && e.data.failed) failed(e.data.failed); };
    }
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
      const failed = () => { if (Date.now() - told > 1000) { told = Date.now(); this.failed(id); } };
      readable.pipeThrough(transform(this.key, direction, failed)).pipeTo(writable);
    }
  },
  sender(s) { this.attach(s, 'encrypt', 'me'); },
  receiver(r, mid) { this.attach(r, 'decrypt', mid); },
};
