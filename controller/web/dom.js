// Small DOM helpers every module of the page uses, and the page's URL parameters.

export const $ = (id) => document.getElementById(id);

// `?autojoin=1`, `?name=…`, `?simulcast=0`, … (docs/signaling.md lists them).
export const params = new URLSearchParams(location.search);

// One line of what is going on, or of what went wrong (then shown as an error).
export function status(text, isError) {
  $('status').textContent = text;
  $('status').className = isError ? 'error' : '';
}

// The banner: trouble with our own connection, or what a host asks of us; '' hides it.
export function banner(text) {
  $('banner').textContent = text || '';
  $('banner').hidden = !text;
}

export function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text != null) e.textContent = text;
  if (cls) e.className = cls;
  return e;
}

// A button; `labelText` names it for screen readers (and the tests) where its text is
// the same on every row.
export function button(text, onclick, labelText) {
  const b = document.createElement('button');
  b.type = 'button';
  b.textContent = text;
  if (labelText) b.setAttribute('aria-label', labelText);
  b.onclick = onclick;
  return b;
}

// A side panel (`polls`, `qa`, `board`) and its toggle button (`{id}-toggle`).
export function togglePanel(id, open) {
  $(id).hidden = !open;
  $(id + '-toggle').setAttribute('aria-expanded', String(open));
}
