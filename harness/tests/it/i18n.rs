//! The meeting page and the portal in Norwegian (bokmål): a browser whose language is
//! `nb` gets both in it, with no English string of the catalogue left on the screen, and
//! the language switch brings English back.
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::accounts::until;

/// What of the English catalogue (`arguments[0]`, values that differ in Norwegian,
/// `arguments[1]`) the page shows: its visible text, attributes people read
/// (placeholder, title, aria-label, alt) and its title, against each English string's
/// fixed parts (between placeholders): a short one must not be a whole text of the
/// page, a long one not in it anywhere.
const ENGLISH_LEFT: &str = "const [en, nb] = arguments; \
    const texts = []; \
    const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT); \
    while (walker.nextNode()) { \
      const n = walker.currentNode; const el = n.parentElement; \
      if (!el || el.closest('[hidden], script, style')) continue; \
      const s = n.textContent.trim(); if (s) texts.push(s); \
    } \
    for (const e of document.querySelectorAll('[placeholder], [title], [aria-label], [alt]')) { \
      if (e.closest('[hidden]')) continue; \
      for (const a of ['placeholder', 'title', 'aria-label', 'alt']) { const v = e.getAttribute(a); if (v) texts.push(v.trim()); } \
    } \
    texts.push(document.title); \
    const page = texts.join('\\n'); \
    const left = []; \
    for (const [k, v] of Object.entries(en)) { \
      if (v === nb[k]) continue; \
      for (const f of v.split(/\\{\\w+\\}/)) { \
        const frag = f.trim(); \
        if (frag.length < 4) continue; \
        if (texts.includes(frag) || (frag.length >= 12 && page.includes(frag))) left.push(k + ': ' + frag); \
      } \
    } \
    return { left, texts: texts.length, lang: document.documentElement.lang };";

async fn english_left(b: &harness::webdriver::Browser, en: &Value, nb: &Value) -> Value {
    b.eval(ENGLISH_LEFT, json!([en, nb])).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_meeting_page_and_the_portal_in_norwegian_show_no_english_string_from_the_catalogue() {
    let l = crate::accounts::local_cluster().await;
    let crate::accounts::Local {
        c,
        base,
        api,
        password,
        ..
    } = &l;
    let catalogue = |code: &'static str| {
        let (api, base) = (&api, &base);
        async move {
            let (st, v) = api
                .send(api.http.get(format!("{base}/static/i18n-{code}.json")))
                .await;
            assert_eq!(st, StatusCode::OK);
            v
        }
    };
    let (en, nb) = (catalogue("en").await, catalogue("nb").await);

    // The server answers a reader of Norwegian in Norwegian.
    for path in ["/portal", "/m/abc-defg-hij"] {
        let html = api
            .http
            .get(format!("{base}{path}"))
            .header("accept-language", "nb-NO,nb;q=0.9,en;q=0.5")
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(html.contains("<html lang=\"nb\">"), "{path}");
    }

    let b = harness::webdriver::Browser::start_lang(&c.dir.join("logs"), "norsk", "nb")
        .await
        .unwrap();
    // The pre-join screen of a meeting with a password, a schedule and registration.
    let id = api
        .create(
            base,
            json!({ "title": "Disputas", "password": "hemmelig passord",
                    "schedule": { "start": "2027-03-01T10:00", "time_zone": "Europe/Oslo", "duration_minutes": 120 },
                    "registration": { "approval": "manual", "questions": ["Institutt"] } }),
        )
        .await;
    b.goto(&format!("{base}/m/{id}")).await.unwrap();
    until(
        &b,
        "the pre-join screen in Norwegian",
        "return document.documentElement.lang === 'nb' \
         && document.getElementById('prejoin-title').textContent.includes('Disputas') \
         && !document.getElementById('register').hidden",
    )
    .await;
    let left = english_left(&b, &en, &nb).await;
    assert_eq!(left["left"], json!([]), "pre-join: {left}");
    assert!(left["texts"].as_u64().unwrap() > 20, "{left}");

    // In a meeting.
    let open = api
        .create(base, json!({ "title": "Seminar i fysikk" }))
        .await;
    b.goto(&format!("{base}/m/{open}?name=Kari%20Nordmann&autojoin=1"))
        .await
        .unwrap();
    until(
        &b,
        "in the meeting",
        "return !!(window.fjord && window.fjord.joined) && document.getElementById('prejoin').hidden",
    )
    .await;
    let left = english_left(&b, &en, &nb).await;
    assert_eq!(left["left"], json!([]), "in the meeting: {left}");

    // The portal of an administrator, every section open.
    b.goto(&format!("{base}/portal")).await.unwrap();
    until(
        &b,
        "the sign-in form",
        "return !document.getElementById('password-sign-in').hidden",
    )
    .await;
    let left = english_left(&b, &en, &nb).await;
    assert_eq!(left["left"], json!([]), "portal, signed out: {left}");
    crate::accounts::portal_sign_in(&b, harness::LOCAL_ADMIN, password).await;
    until(
        &b,
        "the administrator's portal",
        "return !document.getElementById('dashboard').hidden && !document.getElementById('usage').hidden \
         && !document.getElementById('users').hidden && !document.getElementById('org').hidden",
    )
    .await;
    let left = english_left(&b, &en, &nb).await;
    assert_eq!(left["left"], json!([]), "portal: {left}");

    // The switch: English, kept for the next page.
    b.eval(
        "const s = document.getElementById('lang-switch'); s.value = 'en'; s.dispatchEvent(new Event('change'));",
        json!([]),
    )
    .await
    .unwrap();
    until(
        &b,
        "the portal in English",
        "return document.documentElement.lang === 'en' && !!document.getElementById('mine') && !document.getElementById('mine').hidden",
    )
    .await;
    b.goto(&format!("{base}/m/{id}")).await.unwrap();
    until(
        &b,
        "the meeting page in English too",
        "return document.documentElement.lang === 'en' && document.getElementById('lang-switch').value === 'en'",
    )
    .await;
}
