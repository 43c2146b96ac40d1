// The page's words in the reader's language. Every string the meeting page and the
// portal show comes from one catalogue per language (/static/i18n-{lang}.json, the
// same keys in each: a test fails on a key missing in one, or used and in none).
// The language: `?lang=` in the link, else the reader's choice from the switch (kept in
// this browser), else the one the server picked from Accept-Language (<html lang>).
//
//   t('key', { name })     the string, with {name} filled in
//   tn('key', n, { … })    'key.one' when n is 1, else 'key.other' ({n} filled in)
//   translate(root)        fills elements' text and attributes from their data-i18n
//                          (text), data-i18n-placeholder, -title, -aria-label, -alt
//   languageSwitch(select) the switch: a <select> of the languages; a change reloads
export const LANGUAGES = { en: 'English', nb: 'Norsk (bokmål)' };

function pick() {
  const ok = (l) => (l && Object.hasOwn(LANGUAGES, l) ? l : null);
  const asked = ok(new URLSearchParams(location.search).get('lang'));
  let stored = null;
  try { stored = ok(localStorage.getItem('fjord-lang')); } catch (e) { /* storage off */ }
  return asked || stored || ok(document.documentElement.lang) || 'en';
}

export const lang = pick();
document.documentElement.lang = lang;

let catalogue = {};
try {
  const r = await fetch('/static/i18n-' + lang + '.json');
  if (r.ok) catalogue = await r.json();
  else console.error('i18n: the catalogue for ' + lang + ' answered ' + r.status);
} catch (e) {
  console.error('i18n: the catalogue for ' + lang + ' did not load: ' + e);
}

export function t(key, vars) {
  let s = catalogue[key];
  if (typeof s !== 'string') {
    console.error('i18n: no string ' + key + ' in ' + lang);
    s = key;
  }
  return vars ? s.replace(/\{(\w+)\}/g, (m, k) => (Object.hasOwn(vars, k) ? String(vars[k]) : m)) : s;
}

export function tn(key, n, vars) {
  return t(key + (n === 1 ? '.one' : '.other'), Object.assign({ n }, vars));
}

const ATTRIBUTES = ['placeholder', 'title', 'aria-label', 'alt'];

export function translate(root = document) {
  for (const e of root.querySelectorAll('[data-i18n]')) e.textContent = t(e.dataset.i18n);
  for (const a of ATTRIBUTES) {
    for (const e of root.querySelectorAll('[data-i18n-' + a + ']')) e.setAttribute(a, t(e.getAttribute('data-i18n-' + a)));
  }
}

export function languageSwitch(select) {
  select.replaceChildren(...Object.entries(LANGUAGES).map(([code, name]) => {
    const o = document.createElement('option');
    o.value = code;
    o.textContent = name;
    o.lang = code;
    return o;
  }));
  select.value = lang;
  select.onchange = () => {
    try { localStorage.setItem('fjord-lang', select.value); } catch (e) { /* storage off */ }
    const u = new URL(location.href);
    u.searchParams.delete('lang');
    location.replace(u.href);
  };
}

translate();
