//! The portal's forms for hosts and administrators, filled in and sent in headless
//! Chromium against a real cluster with local accounts, and what each did read back
//! through the API: a meeting with every setting, a webinar's panelists' link, the
//! registrants approved and rejected, the meeting edited, the exports, the
//! organisation's settings, one's own password. (The accounts and usage forms are
//! exercised in `accounts.rs`.)
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::accounts::{call, sign_in, until};

/// Sets form fields by id (`{"id": value}`; a boolean checks a box), then submits the
/// form `form`.
const FILL: &str = "const [form, fields] = arguments; \
    for (const [id, v] of Object.entries(fields)) { \
      const e = document.getElementById(id); \
      if (typeof v === 'boolean') e.checked = v; else e.value = v; \
    } \
    document.getElementById(form).requestSubmit();";

fn status_says(text: &str) -> String {
    format!(
        "return document.getElementById('status').textContent.includes({})",
        json!(text)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_portal_form_for_hosts_and_administrators_does_in_chromium_what_the_api_does() {
    let l = crate::accounts::local_cluster().await;
    let crate::accounts::Local {
        c,
        base,
        api,
        password,
        ..
    } = &l;
    let (_, _, s) = sign_in(api, base, harness::LOCAL_ADMIN, password).await;
    let s = s.unwrap();
    let get = |path: String| {
        let (api, s, base) = (&api, &s, &base);
        async move {
            let (st, v) = call(api, s, Method::GET, format!("{base}{path}"), None, true).await;
            assert_eq!(st, StatusCode::OK, "{path}: {v}");
            v
        }
    };
    let meeting = |title: &'static str| {
        let get = &get;
        async move {
            let list = get("/v1/meetings".into()).await;
            list["meetings"]
                .as_array()
                .unwrap()
                .iter()
                .find(|m| m["title"] == title)
                .cloned()
                .unwrap_or_else(|| panic!("no meeting {title:?} in {list}"))
        }
    };

    let b = harness::webdriver::Browser::start(&c.dir.join("logs"), "portal-forms")
        .await
        .unwrap();
    b.goto(&format!("{base}/portal")).await.unwrap();
    b.eval(
        FILL,
        json!(["password-sign-in", { "pw-email": harness::LOCAL_ADMIN, "pw-password": password }]),
    )
    .await
    .unwrap();
    until(
        &b,
        "signed in",
        "return !document.getElementById('mine').hidden",
    )
    .await;

    // A meeting with every setting the form has.
    b.eval(
        FILL,
        json!(["create", {
            "c-title": "Thesis defence", "c-kind": "meeting", "c-description": "Kari's defence",
            "c-password": "defence password", "c-classification": "restricted", "c-residency": "oslo",
            "c-start": "2027-03-01T10:00", "c-tz": "Europe/Oslo", "c-duration": "120", "c-repeat": "",
            "c-registration": "manual", "c-questions": "Department\n\nStudent number ",
            "c-waiting": "off", "c-audience": "signed_in", "c-e2ee": "off",
        }]),
    )
    .await
    .unwrap();
    until(
        &b,
        "created, with the host's link",
        "return !document.getElementById('created').hidden \
         && document.getElementById('host-link').textContent.includes('host_key=') \
         && document.getElementById('panelist-row').hidden",
    )
    .await;
    let m = meeting("Thesis defence").await;
    let id = m["id"].as_str().unwrap().to_owned();
    assert_eq!(
        [
            &m["has_password"],
            &m["classification"],
            &m["residency"],
            &m["waiting_room"],
            &m["audience"],
            &m["e2ee"],
            &m["description"]
        ],
        [
            &json!(true),
            &json!("restricted"),
            &json!("oslo"),
            &json!(false),
            &json!("signed_in"),
            &json!(false),
            &json!("Kari's defence")
        ],
        "{m}"
    );
    assert_eq!(
        m["registration"],
        json!({ "approval": "manual", "questions": ["Department", "Student number"] }),
        "{m}"
    );
    assert_eq!(
        (
            &m["schedule"]["start"],
            &m["schedule"]["time_zone"],
            &m["schedule"]["duration_minutes"]
        ),
        (
            &json!("2027-03-01T10:00"),
            &json!("Europe/Oslo"),
            &json!(120)
        ),
        "{m}"
    );

    // A local account has its calendar feed too: the scheduled meeting is in it.
    let me = get("/v1/me".into()).await;
    let feed = me["calendar_url"].as_str().unwrap().to_owned();
    harness::eventually(
        std::time::Duration::from_secs(5),
        "the meeting in the local user's calendar feed",
        || async {
            let ics = api.http.get(&feed).send().await.ok()?.text().await.ok()?;
            ics.contains("SUMMARY:Thesis defence").then_some(())
        },
    )
    .await
    .unwrap();

    // A webinar: the panelists' link, which joins as a panelist.
    b.eval(
        FILL,
        json!(["create", { "c-title": "All-staff webinar", "c-kind": "webinar" }]),
    )
    .await
    .unwrap();
    until(
        &b,
        "the panelists' link",
        "return !document.getElementById('panelist-row').hidden",
    )
    .await;
    let link = b
        .eval(
            "return document.getElementById('panelist-link').href",
            json!([]),
        )
        .await
        .unwrap();
    let link = reqwest::Url::parse(link.as_str().unwrap()).unwrap();
    let key = link
        .query_pairs()
        .find(|(k, _)| k == "panelist_key")
        .unwrap()
        .1
        .into_owned();
    let webinar = meeting("All-staff webinar").await;
    assert_eq!(webinar["kind"], "webinar");
    assert!(link.path().ends_with(webinar["id"].as_str().unwrap()));
    let (st, j) = api
        .send(
            api.http
                .post(format!(
                    "{base}/v1/meetings/{}/join",
                    webinar["id"].as_str().unwrap()
                ))
                .json(&json!({ "name": "Panel", "panelist_key": key })),
        )
        .await;
    assert_eq!(
        (st, &j["role"]),
        (StatusCode::OK, &json!("panelist")),
        "{j}"
    );

    // Two register; the host approves one and rejects the other in the portal.
    for name in ["Ann", "Per"] {
        let (st, v) = api
            .send(
                api.http
                    .post(format!("{base}/v1/meetings/{id}/registrants"))
                    .json(&json!({ "name": name, "email": format!("{}@uni.no", name.to_lowercase()), "answers": ["Physics", "123"] })),
            )
            .await;
        assert_eq!(st, StatusCode::CREATED, "{v}");
    }
    b.eval(
        "document.querySelector('button[aria-label=\"Registrants of Thesis defence\"]').click()",
        json!([]),
    )
    .await
    .unwrap();
    until(
        &b,
        "two pending registrants",
        "return document.querySelectorAll('#registrant-list tr[data-state=\"pending\"]').length === 2",
    )
    .await;
    b.eval(
        "document.querySelector('button[aria-label=\"Approve Ann\"]').click()",
        json!([]),
    )
    .await
    .unwrap();
    until(
        &b,
        "Ann approved",
        "return document.querySelectorAll('#registrant-list tr[data-state=\"approved\"]').length === 1",
    )
    .await;
    b.eval(
        "document.querySelector('button[aria-label=\"Reject Per\"]').click()",
        json!([]),
    )
    .await
    .unwrap();
    until(
        &b,
        "Per rejected",
        "return document.querySelectorAll('#registrant-list tr[data-state=\"rejected\"]').length === 1",
    )
    .await;
    let list = get(format!("/v1/meetings/{id}/registrants")).await;
    let states: Vec<(String, String)> = list["registrants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_owned(),
                r["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(
        states.contains(&("Ann".into(), "approved".into()))
            && states.contains(&("Per".into(), "rejected".into())),
        "{states:?}"
    );

    // Edited: a new title, no password, approval at once, open to anyone, a waiting room.
    b.eval(
        "document.querySelector('button[aria-label=\"Edit Thesis defence\"]').click()",
        json!([]),
    )
    .await
    .unwrap();
    until(
        &b,
        "the form holds the meeting",
        "return document.getElementById('c-title').value === 'Thesis defence' \
         && document.getElementById('c-classification').disabled \
         && !document.getElementById('c-no-password-row').hidden",
    )
    .await;
    b.eval(
        FILL,
        json!(["create", {
            "c-title": "PhD defence", "c-no-password": true, "c-registration": "automatic",
            "c-audience": "anyone", "c-waiting": "on",
        }]),
    )
    .await
    .unwrap();
    until(&b, "saved", &status_says("saved")).await;
    let m = meeting("PhD defence").await;
    assert_eq!(
        [
            &m["id"],
            &m["has_password"],
            &m["audience"],
            &m["waiting_room"],
            &m["registration"]["approval"],
            &m["classification"]
        ],
        [
            &json!(id),
            &json!(false),
            &json!("anyone"),
            &json!(true),
            &json!("automatic"),
            &json!("restricted")
        ],
        "{m}"
    );
    assert_eq!(
        m["registration"]["questions"],
        json!(["Department", "Student number"])
    );
    assert_eq!(
        m["schedule"]["start"], "2027-03-01T10:00",
        "the schedule stays: {m}"
    );

    // The row's exports answer (CSV where it is one).
    let exports = b
        .eval_async(
            "const done = arguments[arguments.length - 1]; \
             const row = document.querySelector('#my-meetings tr[data-meeting=\"' + arguments[0] + '\"]'); \
             Promise.all([...row.querySelectorAll('a')].map(async (a) => { \
               const r = await fetch(a.href); \
               return [a.textContent, r.status, r.headers.get('content-type')]; \
             })).then(done, (e) => done(String(e)));",
            json!([id]),
        )
        .await
        .unwrap();
    let exports: Vec<(String, u16, String)> =
        serde_json::from_value(exports.clone()).unwrap_or_else(|e| panic!("{e}: {exports}"));
    for what in [
        "Join link",
        "Calendar",
        "Registrants",
        "Participants",
        "Polls",
        "Recordings",
    ] {
        let (_, st, _) = exports
            .iter()
            .find(|(t, _, _)| t == what)
            .unwrap_or_else(|| panic!("no {what} in {exports:?}"));
        assert_eq!(*st, 200, "{what}: {exports:?}");
    }
    for (t, _, ty) in &exports {
        if ["Registrants", "Participants", "Polls"].contains(&t.as_str()) {
            assert!(ty.starts_with("text/csv"), "{t}: {ty}");
        }
    }

    // The organisation's settings: a region that does not exist is refused with the
    // reason; good ones are saved.
    until(
        &b,
        "the organisation's settings",
        "return !document.getElementById('org').hidden",
    )
    .await;
    b.eval(
        FILL,
        json!(["org-form", { "o-waiting": false, "o-e2ee": false, "o-recording": false, "o-regions": "atlantis", "o-retention": "2" }]),
    )
    .await
    .unwrap();
    until(&b, "the region refused", &status_says("allowed_regions")).await;
    b.eval(FILL, json!(["org-form", { "o-regions": "stockholm" }]))
        .await
        .unwrap();
    until(
        &b,
        "settings saved",
        &status_says("Organisation settings saved"),
    )
    .await;
    let o: Value = get("/v1/org/settings".into()).await;
    assert_eq!(
        [
            &o["waiting_room"],
            &o["e2ee"],
            &o["recording_allowed"],
            &o["allowed_regions"],
            &o["retention_secs"]
        ],
        [
            &json!(false),
            &json!(false),
            &json!(false),
            &json!(["stockholm"]),
            &json!(2 * 86400)
        ],
        "{o}"
    );

    // One's own password: a wrong current one is refused, then it is changed.
    let new = "my new and long password";
    b.eval(
        FILL,
        json!(["password-form", { "p-current": "not my password", "p-new": new }]),
    )
    .await
    .unwrap();
    until(
        &b,
        "the wrong current password refused",
        "return document.getElementById('status').className === 'error'",
    )
    .await;
    b.eval(
        FILL,
        json!(["password-form", { "p-current": password, "p-new": new }]),
    )
    .await
    .unwrap();
    until(&b, "password changed", &status_says("Password changed")).await;
    let (st, _, _) = sign_in(api, base, harness::LOCAL_ADMIN, new).await;
    assert_eq!(st, StatusCode::OK);
    let (st, _, _) = sign_in(api, base, harness::LOCAL_ADMIN, password).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
}
