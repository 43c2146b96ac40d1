// Fjord portal: sign in (at the provider, or with a local account), my password, my
// meetings (create, links, exports, end), my recordings (files, playing the composite),
// and for administrators their organisation's accounts and the dashboard of active and
// ended meetings, refreshed every 2 s.
// No build step, no third-party code. An ES module (strict).
import { t, lang, languageSwitch } from './i18n.js';

(() => {
  const $ = (id) => document.getElementById(id);
  languageSwitch($('lang-switch'));
  // Dates and times in the page's language.
  const locale = lang === 'nb' ? 'nb-NO' : 'en-GB';
  let me = null;
  // A meeting's page that sent the browser here to sign in, to go back to after.
  const next = (() => {
    const n = new URLSearchParams(location.search).get('next') || '';
    return /^\/m\/[^/\\]/.test(n) && !n.includes('//') ? n : null;
  })();
  const status = (text, error) => { $('status').textContent = text; $('status').className = error ? 'error' : ''; };
  const cell = (row, content) => {
    const td = document.createElement('td');
    if (content instanceof Node) td.append(content); else td.textContent = content == null ? '' : String(content);
    row.append(td);
    return td;
  };
  const link = (href, text) => { const a = document.createElement('a'); a.href = href; a.textContent = text; return a; };
  const duration = (secs) => { const m = Math.floor(secs / 60); return m >= 60 ? t('portal.duration.hours', { h: Math.floor(m / 60), min: m % 60 }) : t('portal.duration.minutes', { min: m, s: secs % 60 }); };
  // The server's words for kinds, states and roles, in the page's language (an unknown one as it is).
  const word = (words, w) => (Object.hasOwn(words, w) ? words[w] : w);
  const KINDS = { meeting: t('portal.kind.meeting'), webinar: t('portal.kind.webinar') };
  const MEETING_STATES = { active: t('portal.meeting_state.active'), ended: t('portal.meeting_state.ended') };
  const REGISTRANT_STATES = {
    pending: t('portal.registrant_state.pending'),
    approved: t('portal.registrant_state.approved'),
    rejected: t('portal.registrant_state.rejected'),
  };
  const RECORDING_STATES = {
    starting: t('portal.recording_state.starting'),
    recording: t('portal.recording_state.recording'),
    stopped: t('portal.recording_state.stopped'),
    failed: t('portal.recording_state.failed'),
    deleted: t('portal.recording_state.deleted'),
    paused: t('portal.recording_state.paused'),
  };
  const ROLES = { host: t('portal.role.host'), 'co-host': t('portal.role.co_host'), panelist: t('portal.role.panelist') };

  async function api(method, path, body) {
    const headers = { 'content-type': 'application/json' };
    if (method !== 'GET' && me && me.csrf) headers['x-fjord-csrf'] = me.csrf;
    const r = await fetch(path, { method, headers, body: body ? JSON.stringify(body) : undefined });
    const data = await r.json().catch(() => null);
    if (!r.ok) throw new Error((data && data.message) || ('HTTP ' + r.status));
    return data;
  }

  async function loadMine() {
    const { meetings } = await api('GET', '/v1/meetings');
    const body = $('my-meetings').tBodies[0];
    body.replaceChildren();
    for (const m of meetings) {
      const tr = document.createElement('tr');
      tr.dataset.meeting = m.id;
      cell(tr, m.title);
      cell(tr, word(KINDS, m.kind));
      cell(tr, m.next_start_unix_ms ? new Date(m.next_start_unix_ms).toLocaleString(locale) : '');
      cell(tr, word(MEETING_STATES, m.state));
      const links = document.createElement('span');
      links.append(link('/m/' + m.id, t('portal.mine.link.join')), ' ');
      if (m.schedule) links.append(link('/v1/meetings/' + m.id + '/calendar.ics', t('portal.mine.link.calendar')), ' ');
      if (m.registration) links.append(link('/v1/meetings/' + m.id + '/registrants?format=csv', t('portal.mine.link.registrants')), ' ');
      links.append(link('/v1/meetings/' + m.id + '/participants?format=csv', t('portal.mine.link.participants')), ' ',
        link('/v1/meetings/' + m.id + '/polls?format=csv', t('portal.mine.link.polls')), ' ',
        link('/v1/meetings/' + m.id + '/recordings', t('portal.mine.link.recordings')));
      cell(tr, links);
      if (m.state === 'active') {
        const edit = button(t('portal.mine.edit'), t('portal.mine.edit.label', { title: m.title }), () => startEdit(m));
        links.append(' ', edit);
        if (m.registration) links.append(' ', button(t('portal.mine.registrants'), t('portal.mine.registrants.label', { title: m.title }), () => loadRegistrants(m).catch((e) => status(e.message, true))));
        const end = document.createElement('button');
        end.type = 'button';
        end.textContent = t('portal.mine.end');
        end.onclick = () => api('DELETE', '/v1/meetings/' + m.id).then(loadMine).catch((e) => status(e.message, true));
        cell(tr, end);
      } else cell(tr, '');
      body.append(tr);
    }
  }

  const button = (text, label, onclick) => {
    const b = document.createElement('button');
    b.type = 'button';
    b.textContent = text;
    b.setAttribute('aria-label', label);
    b.onclick = onclick;
    return b;
  };

  // The registrants of a meeting that takes registrations, to approve or reject.
  async function loadRegistrants(m) {
    const { registrants } = await api('GET', '/v1/meetings/' + m.id + '/registrants');
    $('registrants-title').textContent = m.title;
    const body = $('registrant-list').tBodies[0];
    body.replaceChildren();
    for (const r of registrants) {
      const tr = document.createElement('tr');
      tr.dataset.registrant = r.registrant_id;
      tr.dataset.state = r.state;
      cell(tr, r.name);
      cell(tr, r.email);
      cell(tr, r.answers.join('; '));
      cell(tr, word(REGISTRANT_STATES, r.state));
      const decide = document.createElement('span');
      const act = (what) => async () => {
        try {
          await api('POST', '/v1/meetings/' + m.id + '/registrants/' + encodeURIComponent(r.registrant_id) + '/' + what);
          status(what === 'approve' ? t('portal.registrants.approved', { name: r.name }) : t('portal.registrants.rejected', { name: r.name }));
          await loadRegistrants(m);
        } catch (e) { status(e.message, true); }
      };
      if (r.state !== 'approved') decide.append(button(t('portal.registrants.approve'), t('portal.registrants.approve.label', { name: r.name }), act('approve')), ' ');
      if (r.state !== 'rejected') decide.append(button(t('portal.registrants.reject'), t('portal.registrants.reject.label', { name: r.name }), act('reject')));
      cell(tr, decide);
      body.append(tr);
    }
    $('registrants').hidden = false;
  }

  // The form makes a meeting, or edits one (what a meeting's host may change after).
  let editing = null;
  function startEdit(m) {
    editing = m;
    $('create-legend').textContent = t('portal.create.legend.edit', { title: m.title });
    $('create-submit').textContent = t('portal.create.save');
    $('edit-cancel').hidden = false;
    $('c-title').value = m.title;
    $('c-kind').value = m.kind;
    $('c-description').value = m.description;
    $('c-password').value = '';
    $('c-password').placeholder = m.has_password ? t('portal.create.password.unchanged') : t('portal.create.password.none');
    $('c-no-password').checked = false;
    $('c-no-password-row').hidden = !m.has_password;
    $('c-classification').value = m.classification;
    $('c-residency').value = m.residency || '';
    for (const id of ['c-kind', 'c-classification', 'c-residency', 'c-e2ee']) $(id).disabled = true;
    $('c-waiting').value = m.waiting_room ? 'on' : 'off';
    $('c-audience').value = m.audience;
    $('c-registration').value = m.registration ? m.registration.approval : '';
    $('c-questions').value = m.registration ? m.registration.questions.join('\n') : '';
    const s = m.schedule;
    $('c-start').value = s ? s.start : '';
    $('c-tz').value = s ? s.time_zone : '';
    $('c-duration').value = s ? s.duration_minutes : 60;
    $('c-repeat').value = s && s.recurrence ? s.recurrence.frequency : '';
    $('c-count').value = s && s.recurrence && s.recurrence.count ? s.recurrence.count : 10;
    $('create').scrollIntoView();
    $('c-title').focus();
  }
  function stopEdit() {
    editing = null;
    $('create').reset();
    $('create-legend').textContent = t('portal.create.legend');
    $('create-submit').textContent = t('portal.create.submit');
    $('edit-cancel').hidden = true;
    $('c-no-password-row').hidden = true;
    $('c-password').placeholder = t('portal.create.password.none');
    for (const id of ['c-kind', 'c-classification', 'c-residency', 'c-e2ee']) $(id).disabled = false;
  }
  $('edit-cancel').onclick = stopEdit;

  const size = (bytes) => bytes >= 1e9 ? t('portal.size.gb', { n: (bytes / 1e9).toFixed(1) }) : bytes >= 1e6 ? t('portal.size.mb', { n: (bytes / 1e6).toFixed(1) }) : t('portal.size.kb', { n: Math.ceil(bytes / 1e3) });

  // The recordings of the meetings I host (an administrator: the organisation's), with
  // their files behind short-lived signed links and the composite played here.
  async function loadRecordings() {
    const { recordings } = await api('GET', '/v1/recordings');
    const body = $('recording-list').tBodies[0];
    body.replaceChildren();
    $('recordings-none').hidden = recordings.length > 0;
    for (const r of recordings) {
      const tr = document.createElement('tr');
      tr.dataset.recording = r.recording_id;
      tr.dataset.state = r.state;
      cell(tr, r.meeting_title || r.meeting_id);
      cell(tr, new Date(r.started_unix_ms).toLocaleString(locale));
      cell(tr, r.duration_ms ? duration(Math.round(r.duration_ms / 1000)) : '');
      cell(tr, r.bytes ? size(r.bytes) : '');
      cell(tr, r.classification);
      cell(tr, r.error ? t('portal.recordings.state_error', { state: word(RECORDING_STATES, r.state), error: r.error }) : word(RECORDING_STATES, r.state));
      cell(tr, r.expires_unix_ms ? new Date(r.expires_unix_ms).toLocaleDateString(locale) : '');
      const files = document.createElement('span');
      for (const d of r.downloads) files.append(link(d.url, d.file), ' ');
      cell(tr, files);
      const composite = r.downloads.find((d) => /^composite(-s\d+)?\.mp4$/.test(d.file));
      if (composite) {
        const play = document.createElement('button');
        play.type = 'button';
        play.textContent = t('portal.recordings.play');
        play.setAttribute('aria-label', t('portal.recordings.play.label', { title: r.meeting_title || r.meeting_id }));
        play.onclick = () => {
          $('player').src = composite.url;
          $('player-caption').textContent = t('portal.recordings.caption', { title: r.meeting_title || r.meeting_id, when: new Date(r.started_unix_ms).toLocaleString(locale) });
          $('player-box').hidden = false;
          $('player').play().catch((e) => status(t('portal.recordings.cannot_play', { error: e.message }), true));
        };
        cell(tr, play);
      } else cell(tr, '');
      body.append(tr);
    }
  }
  $('recordings-refresh').onclick = () => loadRecordings().catch((e) => status(e.message, true));

  // Usage statistics: a bar per period (participant-minutes) and the table of figures.
  async function loadUsage() {
    const q = new URLSearchParams({ period: $('us-period').value });
    if ($('us-from').value) q.set('from', $('us-from').value);
    if ($('us-to').value) q.set('to', $('us-to').value);
    if ($('us-tz').value) q.set('time_zone', $('us-tz').value);
    const u = await api('GET', '/v1/usage?' + q);
    q.set('format', 'csv');
    $('usage-csv').href = '/v1/usage?' + q;
    const svg = $('usage-chart');
    const ns = 'http://www.w3.org/2000/svg';
    svg.querySelectorAll('rect, text').forEach((e) => e.remove());
    const max = Math.max(1, ...u.periods.map((p) => p.participant_minutes));
    const w = 720 / Math.max(1, u.periods.length);
    u.periods.forEach((p, i) => {
      const h = Math.round(150 * p.participant_minutes / max);
      const bar = document.createElementNS(ns, 'rect');
      bar.setAttribute('x', String(i * w + 1));
      bar.setAttribute('y', String(160 - h));
      bar.setAttribute('width', String(Math.max(1, w - 2)));
      bar.setAttribute('height', String(h));
      bar.setAttribute('fill', '#4ea8de');
      bar.dataset.start = p.start;
      const tip = document.createElementNS(ns, 'title');
      tip.textContent = t('portal.usage.bar', { start: p.start, minutes: p.participant_minutes, peak: p.peak_concurrent });
      bar.append(tip);
      svg.append(bar);
    });
    const body = $('usage-table').tBodies[0];
    body.replaceChildren();
    for (const p of u.periods) {
      const tr = document.createElement('tr');
      tr.dataset.start = p.start;
      for (const v of [p.start, p.meetings, p.participant_minutes, p.unique_participants, p.peak_concurrent, p.joins]) cell(tr, v);
      cell(tr, p.regions.map((r) => t('portal.usage.region', { region: r.region, minutes: r.participant_minutes, peak: r.peak_concurrent })).join('; '));
      body.append(tr);
    }
    $('usage').hidden = false;
  }
  $('usage-form').addEventListener('submit', (e) => {
    e.preventDefault();
    loadUsage().catch((err) => status(t('portal.usage.failed', { error: err.message }), true));
  });

  async function loadDashboard() {
    let data;
    try { data = await api('GET', '/v1/dashboard'); } catch (e) { status(t('portal.dashboard.failed', { error: e.message }), true); return; }
    const active = $('active').tBodies[0];
    const ended = $('ended').tBodies[0];
    const rowsA = [];
    const rowsE = [];
    for (const m of data.meetings) {
      const tr = document.createElement('tr');
      tr.dataset.meeting = m.id;
      tr.dataset.state = m.state;
      cell(tr, m.kind === 'webinar' ? t('portal.dashboard.webinar_title', { title: m.title }) : m.title);
      cell(tr, m.owner ? m.owner.name : '');
      if (m.state === 'active') {
        const ul = document.createElement('ul');
        for (const p of m.participants_now) {
          const li = document.createElement('li');
          li.className = 'participant';
          const q = [];
          if (p.rtt_ms != null) q.push(t('portal.dashboard.rtt', { ms: Math.round(p.rtt_ms) }));
          if (p.loss != null) q.push(t('portal.dashboard.loss', { percent: (p.loss * 100).toFixed(1) }));
          if (p.jitter_ms != null) q.push(t('portal.dashboard.jitter', { ms: p.jitter_ms.toFixed(1) }));
          const where = { name: p.name, region: p.region, node: p.node_id };
          const who = p.role !== 'attendee' ? t('portal.dashboard.participant.role', { ...where, role: word(ROLES, p.role) }) : t('portal.dashboard.participant', where);
          li.textContent = q.length ? t('portal.dashboard.participant.quality', { participant: who, quality: q.join(', ') }) : who;
          ul.append(li);
        }
        cell(tr, ul);
        cell(tr, m.placements.map((p) => p.region + ': ' + p.node_id).join(', '));
        cell(tr, duration(m.duration_secs));
        cell(tr, m.recording ? t('portal.dashboard.recording') : '');
        rowsA.push(tr);
      } else {
        cell(tr, m.participants_total);
        cell(tr, duration(m.duration_secs));
        cell(tr, m.ended_unix_ms ? new Date(m.ended_unix_ms).toLocaleString(locale) : '');
        rowsE.push(tr);
      }
    }
    active.replaceChildren(...rowsA);
    ended.replaceChildren(...rowsE);
  }

  $('create').addEventListener('submit', async (e) => {
    e.preventDefault();
    const body = { title: $('c-title').value, description: $('c-description').value, audience: $('c-audience').value };
    if ($('c-waiting').value) body.waiting_room = $('c-waiting').value === 'on';
    let schedule = null;
    if ($('c-start').value) {
      schedule = {
        start: $('c-start').value.slice(0, 16),
        time_zone: $('c-tz').value || Intl.DateTimeFormat().resolvedOptions().timeZone,
        duration_minutes: Number($('c-duration').value),
      };
      if ($('c-repeat').value) schedule.recurrence = { frequency: $('c-repeat').value, count: Number($('c-count').value) };
    }
    const questions = $('c-questions').value.split('\n').map((q) => q.trim()).filter(Boolean);
    const registration = $('c-registration').value ? { approval: $('c-registration').value, questions } : null;
    try {
      if (editing) {
        body.schedule = schedule;
        body.registration = registration;
        if ($('c-no-password').checked) body.password = null;
        else if ($('c-password').value) body.password = $('c-password').value;
        await api('PATCH', '/v1/meetings/' + editing.id, body);
        status(t('portal.create.saved', { title: body.title }));
        stopEdit();
        await loadMine();
        return;
      }
      body.kind = $('c-kind').value;
      if (schedule) body.schedule = schedule;
      if (registration) body.registration = registration;
      if ($('c-password').value) body.password = $('c-password').value;
      if ($('c-classification').value) body.classification = $('c-classification').value;
      if ($('c-residency').value) body.residency = $('c-residency').value;
      if ($('c-e2ee').value) body.e2ee = $('c-e2ee').value === 'on';
      const m = await api('POST', '/v1/meetings', body);
      const linkTo = (key, value) => new URL('/m/' + m.id + '?' + key + '=' + encodeURIComponent(value), location.href).href;
      $('host-link').href = $('host-link').textContent = linkTo('host_key', m.host_key);
      $('created').hidden = false;
      $('panelist-row').hidden = !m.panelist_key;
      if (m.panelist_key) $('panelist-link').href = $('panelist-link').textContent = linkTo('panelist_key', m.panelist_key);
      status(t('portal.create.created'));
      $('create').reset();
      await loadMine();
    } catch (err) { status(err.message, true); }
  });

  async function loadOrg() {
    const o = await api('GET', '/v1/org/settings');
    $('org-name').textContent = '(' + o.org + ')';
    $('o-waiting').checked = o.waiting_room;
    $('o-e2ee').checked = o.e2ee;
    $('o-recording').checked = o.recording_allowed;
    $('o-classification').checked = !!o.recording_needs_classification;
    $('o-regions').value = o.allowed_regions.join(', ');
    $('o-retention').value = o.retention_secs ? Math.round(o.retention_secs / 86400) : '';
    $('org').hidden = false;
  }
  $('org-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const days = $('o-retention').value;
    try {
      await api('PUT', '/v1/org/settings', {
        waiting_room: $('o-waiting').checked, e2ee: $('o-e2ee').checked, recording_allowed: $('o-recording').checked,
        recording_needs_classification: $('o-classification').checked,
        allowed_regions: $('o-regions').value.split(',').map((r) => r.trim()).filter(Boolean),
        retention_secs: days ? Number(days) * 86400 : null,
      });
      status(t('portal.org.saved'));
      await loadOrg();
    } catch (err) { status(err.message, true); }
  });

  // Local accounts: one's own password; an administrator's organisation's accounts.
  $('password-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    try {
      await api('POST', '/v1/me/password', { current: $('p-current').value, new: $('p-new').value });
      status(t('portal.password.changed'));
      $('password-form').reset();
    } catch (err) { status(err.message, true); }
  });

  async function loadUsers() {
    const { accounts } = await api('GET', '/v1/accounts');
    const body = $('user-list').tBodies[0];
    body.replaceChildren();
    for (const a of accounts) {
      const tr = document.createElement('tr');
      tr.dataset.email = a.email;
      cell(tr, a.email);
      cell(tr, a.name);
      cell(tr, a.admin ? t('portal.users.role.admin') : t('portal.users.role.user'));
      cell(tr, new Date(a.created_unix_ms).toLocaleDateString(locale));
      const remove = document.createElement('button');
      remove.type = 'button';
      remove.textContent = t('portal.users.remove');
      remove.setAttribute('aria-label', t('portal.users.remove.label', { email: a.email }));
      remove.hidden = a.email === me.email;
      remove.onclick = async () => {
        if (!confirm(t('portal.users.remove.confirm', { email: a.email }))) return;
        try {
          await api('DELETE', '/v1/accounts/' + encodeURIComponent(a.email));
          status(t('portal.users.removed', { email: a.email }));
          await loadUsers();
        } catch (err) { status(err.message, true); }
      };
      cell(tr, remove);
      body.append(tr);
    }
    $('users').hidden = false;
  }
  $('user-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    try {
      const a = await api('POST', '/v1/accounts', {
        email: $('u-email').value, name: $('u-name').value, password: $('u-password').value, admin: $('u-admin').checked,
      });
      status(t('portal.users.created', { email: a.email }));
      $('user-form').reset();
      await loadUsers();
    } catch (err) { status(err.message, true); }
  });

  $('sign-out').onclick = async () => {
    await fetch('/auth/logout', { method: 'POST' });
    location.reload();
  };

  $('password-sign-in').addEventListener('submit', async (e) => {
    e.preventDefault();
    const r = await fetch('/auth/password-login', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ email: $('pw-email').value, password: $('pw-password').value }),
    });
    if (r.ok) { if (next) location.assign(next); else location.reload(); return; }
    const data = await r.json().catch(() => null);
    status((data && data.message) || ('HTTP ' + r.status), true);
    $('pw-password').value = '';
  });

  (async () => {
    const r = await fetch('/v1/me');
    if (!r.ok) {
      // Which ways in this cluster has: its identity provider, local accounts, or both.
      const ways = await fetch('/auth/methods').then((m) => m.json()).catch(() => ({}));
      $('sign-in').hidden = !ways.oidc;
      if (next) $('sign-in').href = '/auth/login?next=' + encodeURIComponent(next);
      $('password-sign-in').hidden = !ways.accounts;
      status(!(ways.oidc || ways.accounts) ? t('portal.sign_in.unavailable')
        : next ? t('portal.sign_in.for_meeting')
          : t('portal.sign_in.prompt'));
      return;
    }
    me = await r.json();
    if (next) { location.replace(next); return; }
    $('who').textContent = me.admin ? t('portal.who.admin', { name: me.name, org: me.org }) : me.name;
    $('sign-out').hidden = false;
    $('mine').hidden = false;
    if (me.calendar_url) {
      $('feed-link').href = me.calendar_url;
      $('feed-link').textContent = me.calendar_url;
      $('feed-row').hidden = false;
    }
    await loadMine().catch((e) => status(e.message, true));
    $('recordings').hidden = false;
    await loadRecordings().catch((e) => status(t('portal.recordings.failed', { error: e.message }), true));
    if (me.local) $('password').hidden = false;
    if (me.admin) {
      const ways = await fetch('/auth/methods').then((m) => m.json()).catch(() => ({}));
      if (ways.accounts) await loadUsers().catch((e) => status(t('portal.users.failed', { error: e.message }), true));
      await loadOrg().catch((e) => status(e.message, true));
      $('us-tz').value = Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC';
      await loadUsage().catch((e) => status(t('portal.usage.failed', { error: e.message }), true));
      $('dashboard').hidden = false;
      await loadDashboard();
      setInterval(loadDashboard, 2000);
    }
  })();
})();
