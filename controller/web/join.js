// The pre-join screen: the meeting's title and settings, devices and a preview, and
// registration; and what the API's refusals mean in plain language. Joining itself is
// session.js's.
import { e2ee } from './e2ee.js';
import { state } from './state.js';
import { $, params, status } from './dom.js';
import { lang, t } from './i18n.js';

// Plain-language messages for what the API answers: by its `error` code where that
// tells, by the status (and a look at the message) where it does not.
export function explain(httpStatus, body) {
  const msg = (body && body.message) || '';
  const code = body && body.error;
  if (code === 'meeting_locked') return t('join.error.locked');
  if (code === 'meeting_full') return t('join.error.full');
  if (code === 'too_early' || code === 'series_over' || (code || '').startsWith('registration_')) return msg.charAt(0).toUpperCase() + msg.slice(1) + '.';
  switch (httpStatus) {
    case 401: return msg.includes('password') ? t('join.error.password_needed') : msg;
    case 403: return msg.includes('password') ? t('join.error.password_wrong') : msg;
    case 404: return t('join.error.not_found');
    case 409: return t('join.error.ended');
    case 429: return t('join.error.too_many_attempts');
    case 503: return msg.includes('capacity') ? t('join.error.at_capacity')
                                              : t('join.error.busy', { reason: msg });
    default: return msg || t('join.error.other', { status: httpStatus });
  }
}

// Who is signed in on this browser (GET /v1/me: name, organisation, the session's CSRF
// token, which a join from a signed-in browser carries), or null.
export async function whoAmI() {
  if (state.me === undefined) {
    const r = await fetch('/v1/me').catch(() => null);
    state.me = r && r.ok ? await r.json().catch(() => null) : null;
  }
  return state.me;
}

// Off to sign in, and back to this meeting after (the link's fragment, which may hold
// an end-to-end passphrase, stays in this tab and never goes to a server).
export function signInFirst() {
  if (location.hash) sessionStorage.setItem('fjord-return-hash', location.hash);
  location.assign('/portal?next=' + encodeURIComponent(location.pathname + location.search));
}

// The meeting's public facts: title, password, encryption, registration, schedule.
export async function loadMeeting(id) {
  try {
    const r = await fetch('/v1/meetings/' + encodeURIComponent(id) + '/public');
    if (!r.ok) return;
    const m = await r.json();
    state.info = m;
    // For signed-in users: under the name their sign-in gives, or first to sign in.
    if (m.audience && m.audience !== 'anyone') {
      const me = await whoAmI();
      if (!me) { signInFirst(); return; }
      $('name').value = me.name;
      $('name').readOnly = true;
      $('signed-in-note').textContent = t('join.signed_in_as', { name: me.name, email: me.email });
      $('signed-in-note').hidden = false;
    }
    state.title = m.title;
    if (m.e2ee) {
      $('e2ee-row').hidden = false;
      $('e2ee-badge').hidden = false;
      if (!$('e2ee-passphrase').value) $('e2ee-passphrase').value = e2ee.fromLink();
    }
    $('title').textContent = m.title;
    $('prejoin-title').textContent = t('join.title_quoted', { title: m.title });
    if (m.has_password) $('password-row').hidden = false;
    // Told before joining; asked again in the meeting before any media is sent.
    $('prejoin-recording').hidden = !m.recording;
    // Registration first, unless the link is a registrant's, a host's or a panelist's.
    if (m.registration && !['registrant_key', 'host_key', 'panelist_key'].some((k) => params.get(k))) showRegistration(m.registration);
    if (m.schedule) showSchedule(id, m);
  } catch (e) { /* the join says what is wrong */ }
}

function showRegistration(registration) {
  $('register').hidden = false;
  $('reg-questions').replaceChildren(...registration.questions.map((q, i) => {
    const l = document.createElement('label');
    l.textContent = q + ' ';
    const input = document.createElement('input');
    input.id = 'reg-answer-' + i;
    input.maxLength = 500;
    l.append(input);
    return l;
  }));
}

function showSchedule(id, m) {
  const when = m.next_start_unix_ms
    ? t('join.schedule.next', { when: new Date(m.next_start_unix_ms).toLocaleString(lang === 'nb' ? 'nb-NO' : [], { dateStyle: 'full', timeStyle: 'short' }) })
    : t('join.schedule.over');
  $('schedule-text').textContent = when;
  $('calendar-link').href = '/v1/meetings/' + encodeURIComponent(id) + '/calendar.ics';
  $('schedule-row').hidden = false;
}

// getUserMedia's constraints for the chosen microphone and camera.
export function constraints() {
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
  // `what(n)`: the name of the n-th device of its kind, for one that has no label.
  const fill = (select, kind, what) => {
    const keep = select.value;
    select.replaceChildren();
    devices.filter((d) => d.kind === kind).forEach((d, i) => {
      const o = document.createElement('option');
      o.value = d.deviceId;
      o.textContent = d.label || what(i + 1);
      select.append(o);
    });
    if (keep) select.value = keep;
  };
  fill($('mic-select'), 'audioinput', (n) => t('join.device.microphone', { n }));
  fill($('camera-select'), 'videoinput', (n) => t('join.device.camera', { n }));
  // Choosing the speaker needs setSinkId (not every browser has it).
  if ('setSinkId' in HTMLMediaElement.prototype) {
    fill($('speaker-select'), 'audiooutput', (n) => t('join.device.speaker', { n }));
    $('speaker-row').hidden = !$('speaker-select').options.length;
  }
}

// The camera preview; the devices get their names once the browser has let us use them.
export async function preview() {
  if (state.local) state.local.getTracks().forEach((t) => t.stop());
  try {
    state.local = await navigator.mediaDevices.getUserMedia(constraints());
    $('preview').srcObject = state.local;
    await listDevices();
  } catch (e) {
    state.local = null;
    status(t('join.devices_unavailable', { error: e.message }), true);
  }
}

// The form's fields from the link: /m/{id}, ?name=, ?password=, ?muted=1, ?camera=off.
export function prefill() {
  // Back from signing in: the fragment this tab kept.
  const hash = sessionStorage.getItem('fjord-return-hash');
  if (hash) {
    sessionStorage.removeItem('fjord-return-hash');
    if (!location.hash) history.replaceState(null, '', location.pathname + location.search + hash);
  }
  const m = location.pathname.match(/^\/m\/([^/]+)/);
  if (m) { $('meeting').value = decodeURIComponent(m[1]); loadMeeting($('meeting').value); }
  if (params.get('name')) $('name').value = params.get('name');
  if (params.get('password')) { $('password-row').hidden = false; $('password').value = params.get('password'); }
  if (params.get('muted') === '1') $('join-muted').checked = true;
  if (params.get('camera') === 'off') $('join-camera-off').checked = true;
}

$('register').addEventListener('submit', async (e) => {
  e.preventDefault();
  const id = $('meeting').value.trim();
  const answers = ((state.info && state.info.registration && state.info.registration.questions) || []).map((_, i) => $('reg-answer-' + i).value);
  const resp = await fetch('/v1/meetings/' + encodeURIComponent(id) + '/registrants', {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ name: $('reg-name').value, email: $('reg-email').value, answers }),
  }).catch(() => null);
  const body = resp && await resp.json().catch(() => null);
  if (!resp || !resp.ok) { status(resp ? explain(resp.status, body) : t('join.unreachable'), true); return; }
  const link = new URL('/m/' + encodeURIComponent(id) + '?registrant_key=' + encodeURIComponent(body.registrant_key), location.href).href;
  $('reg-link').href = link;
  $('reg-link').textContent = link;
  $('reg-done').hidden = false;
  status(body.state === 'approved' ? t('join.registered.approved') : t('join.registered.pending'));
});
$('mic-select').onchange = preview;
$('camera-select').onchange = preview;
$('join-camera-off').onchange = () => {
  if (!state.local) return;
  state.local.getVideoTracks().forEach((t) => { t.enabled = !$('join-camera-off').checked; });
};
