//! Sign-in through OpenID Connect against a real provider (`oidc-provider` on Node.js),
//! in headless Chromium and over plain HTTP; the portal, and the administrators'
//! dashboard following a meeting from its participants' joining to its end.
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use harness::eventually;
use harness::oidc::{CLIENT_ID, Provider};
use harness::webdriver::Browser;
use reqwest::StatusCode;
use serde_json::{Value, json};

/// A cluster whose controllers sign users in at a provider (boss@uni.no administers
/// uni.no); the cluster, the provider, the controller's URL and the secret's directory.
async fn start() -> (harness::Cluster, Provider, String, tempfile::TempDir) {
    let mut provider = Provider::reserve();
    let dir = tempfile::tempdir().unwrap();
    let spec = harness::ClusterSpec {
        controllers: 1,
        oidc: Some(
            provider
                .controller_config(dir.path(), &["boss@uni.no"])
                .unwrap(),
        ),
        ..crate::spec()
    };
    let c = harness::Cluster::start(spec).await.unwrap();
    let base = c.controllers[0].url();
    provider
        .start(
            &format!("{base}/auth/callback"),
            "uni.no",
            &c.dir.join("logs/oidc-provider.log"),
        )
        .await
        .unwrap();
    (c, provider, base, dir)
}

/// Signs `login` in through the portal's button and the provider's login page; returns
/// once the portal greets them.
async fn sign_in(b: &Browser, base: &str, login: &str) -> String {
    b.goto(&format!("{base}/portal")).await.unwrap();
    eventually(
        Duration::from_secs(10),
        "the portal offers to sign in",
        || async {
            let shown = b
                .eval(
                    "const a = document.getElementById('sign-in'); return !!a && !a.hidden;",
                    json!([]),
                )
                .await
                .ok()?;
            (shown == json!(true)).then_some(())
        },
    )
    .await
    .unwrap();
    b.eval("document.getElementById('sign-in').click()", json!([]))
        .await
        .unwrap();
    eventually(
        Duration::from_secs(10),
        "the provider's login page",
        || async {
            let v = b
                .eval(
                    "return !!document.querySelector('input[name=login]')",
                    json!([]),
                )
                .await
                .ok()?;
            (v == json!(true)).then_some(())
        },
    )
    .await
    .unwrap();
    b.eval(
        "document.querySelector('input[name=login]').value = arguments[0];
         document.querySelector('input[name=password]').value = 'any password';
         document.getElementById('sign-in').click();",
        json!([login]),
    )
    .await
    .unwrap();
    eventually(Duration::from_secs(10), "the portal greets the user", || async {
        let v = b
            .eval(
                "return location.pathname === '/portal' ? document.getElementById('who').textContent : ''",
                json!([]),
            )
            .await
            .ok()?;
        v.as_str().filter(|s| !s.is_empty()).map(str::to_owned)
    })
    .await
    .unwrap()
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Genuine ID tokens of boss@uni.no (its administrator), pia@uni.no and eve@other.org.
async fn org_tokens(provider: &Provider) -> (String, String, String) {
    let token = |login: &str, domain: &str| {
        let mut c = claims(provider, login);
        c["email"] = json!(format!("{login}@{domain}"));
        async move { provider.sign(&c).await.unwrap() }
    };
    (
        token("boss", "uni.no").await,
        token("pia", "uni.no").await,
        token("eve", "other.org").await,
    )
}

/// The claims of a genuine ID token for `login` at `provider`.
fn claims(provider: &Provider, login: &str) -> Value {
    json!({
        "iss": provider.issuer(),
        "aud": CLIENT_ID,
        "sub": login,
        "email": format!("{login}@uni.no"),
        "name": login[..1].to_uppercase() + &login[1..],
        "iat": now_secs(),
        "exp": now_secs() + 600,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn oidc_sign_in_lands_in_the_portal_and_forged_expired_stateless_or_verifierless_sign_ins_are_refused()
 {
    let (c, provider, base, _dir) = start().await;
    let b = Browser::start(&c.dir.join("logs"), "portal").await.unwrap();
    let who = sign_in(&b, &base, "boss").await;
    assert!(
        who.contains("Boss") && who.contains("administrator"),
        "{who}"
    );
    // The portal shows the administrator's name first, then the sections as their
    // data loads: look once both could be there.
    let script = "return [document.getElementById('mine').hidden, document.getElementById('dashboard').hidden]";
    let _ = eventually(
        Duration::from_secs(10),
        "my meetings and the dashboard",
        || async {
            b.eval(script, json!([]))
                .await
                .ok()
                .filter(|v| *v == json!([false, false]))
        },
    )
    .await;
    let shown = b.eval(script, json!([])).await.unwrap();
    assert_eq!(
        shown,
        json!([false, false]),
        "my meetings and the dashboard"
    );

    // The session's changes need its CSRF token: without, refused; with, done.
    let made = b
        .eval_async(
            "const done = arguments[arguments.length - 1];
             (async () => {
               const post = (headers) => fetch('/v1/meetings', { method: 'POST', headers: Object.assign({ 'content-type': 'application/json' }, headers), body: JSON.stringify({ title: 'Mine' }) });
               const bare = await post({});
               const me = await (await fetch('/v1/me')).json();
               const good = await post({ 'x-fjord-csrf': me.csrf });
               done([bare.status, good.status, (await good.json()).owner]);
             })().catch((e) => done(String(e)));",
            json!([]),
        )
        .await
        .unwrap();
    assert_eq!(made[0], 403, "{made}");
    assert_eq!(made[1], 201, "{made}");
    assert_eq!(made[2]["email"], "boss@uni.no", "{made}");

    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    // A genuine ID token of the provider signs in an API client; a tampered one, one
    // without a signature, an expired one and one for another client do not.
    let me = |token: String| {
        let req = http.get(format!("{base}/v1/me")).bearer_auth(token);
        async move {
            let resp = req.send().await.unwrap();
            (
                resp.status(),
                resp.json::<Value>().await.unwrap_or_default(),
            )
        }
    };
    let genuine = provider.sign(&claims(&provider, "boss")).await.unwrap();
    let (st, v) = me(genuine.clone()).await;
    assert_eq!(
        (st, v["admin"].clone()),
        (StatusCode::OK, json!(true)),
        "{v}"
    );
    // The user's calendar feed (a secret address) lists their scheduled meetings.
    let resp = http
        .post(format!("{base}/v1/meetings"))
        .bearer_auth(&genuine)
        .json(&json!({ "title": "Weekly seminar", "schedule": { "start": "2027-01-11T10:00", "time_zone": "Europe/Oslo", "duration_minutes": 60, "recurrence": { "frequency": "weekly", "count": 8 } } }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let feed = v["calendar_url"].as_str().unwrap().to_owned();
    // The feed is served from the controller's view of etcd, which the watch brings the
    // new meeting to a moment after the create's answer.
    let ics = harness::eventually(
        Duration::from_secs(5),
        "the meeting in the feed",
        || async {
            let ics = http.get(&feed).send().await.ok()?.text().await.ok()?;
            ics.contains("SUMMARY:Weekly seminar").then_some(ics)
        },
    )
    .await
    .unwrap();
    assert!(ics.contains("RRULE:FREQ=WEEKLY"), "{ics}");
    let tampered = feed.replace(".ics", "x.ics");
    assert_eq!(
        http.get(&tampered).send().await.unwrap().status(),
        StatusCode::NOT_FOUND
    );

    let parts: Vec<&str> = genuine.split('.').collect();
    let mut forged_claims = claims(&provider, "mallory");
    forged_claims["email"] = json!("boss@uni.no");
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        B64.encode(forged_claims.to_string()),
        parts[2]
    );
    let unsigned = format!("{}.{}.", B64.encode(r#"{"alg":"none"}"#), parts[1]);
    let mut old = claims(&provider, "boss");
    old["iat"] = json!(now_secs() - 7200);
    old["exp"] = json!(now_secs() - 3600);
    let expired = provider.sign(&old).await.unwrap();
    let mut elsewhere = claims(&provider, "boss");
    elsewhere["aud"] = json!("another-client");
    let other_client = provider.sign(&elsewhere).await.unwrap();
    for (token, says) in [
        (forged, "signature"),
        (unsigned, "ID token"),
        (expired, "expired"),
        (other_client, "another client"),
    ] {
        let (st, v) = me(token).await;
        assert_eq!(st, StatusCode::UNAUTHORIZED, "{v}");
        assert!(v["message"].as_str().unwrap().contains(says), "{says}: {v}");
    }

    // A sign-in comes back only to the browser that started it: with its state and its
    // PKCE verifier (in the sign-in cookie).
    let resp = http.get(format!("{base}/auth/login")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let to = resp.headers()["location"].to_str().unwrap().to_owned();
    assert!(to.starts_with(&provider.issuer()), "{to}");
    assert!(to.contains("code_challenge_method=S256"), "{to}");
    let state = reqwest::Url::parse(&to)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "state")
        .unwrap()
        .1
        .into_owned();
    let login_cookie = resp.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    assert!(login_cookie.starts_with("fjord_login="), "{login_cookie}");
    let callback = |state: &str, cookie: Option<&str>| {
        let mut req = http.get(format!("{base}/auth/callback?code=some-code&state={state}"));
        if let Some(c) = cookie {
            req = req.header("cookie", c);
        }
        async move {
            let resp = req.send().await.unwrap();
            (
                resp.status(),
                resp.json::<Value>().await.unwrap_or_default(),
            )
        }
    };
    let (st, v) = callback("not-the-state", Some(&login_cookie)).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("state does not match"),
        "{v}"
    );
    let (st, v) = callback(&state, None).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("PKCE verifier is missing"),
        "{v}"
    );
    // The right state and verifier, but a code the provider never gave: it refuses.
    let (st, v) = callback(&state, Some(&login_cookie)).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{v}");
    assert!(v["message"].as_str().unwrap().contains("refused"), "{v}");
}

/// What a session cookie's `/v1/me` says, and a meeting made with that session (the
/// status and body of `POST /v1/meetings`).
async fn me_and_a_meeting(base: &str, cookie: &str) -> (Value, StatusCode, Value) {
    let http = reqwest::Client::new();
    let me: Value = http
        .get(format!("{base}/v1/me"))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let resp = http
        .post(format!("{base}/v1/meetings"))
        .header("cookie", cookie)
        .header("x-fjord-csrf", me["csrf"].as_str().unwrap())
        .json(&json!({ "title": "Seminar" }))
        .send()
        .await
        .unwrap();
    let status = resp.status();
    (me, status, resp.json().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_claims_from_userinfo_give_the_organisation_roles_and_administrators_feide_style() {
    let mut provider = Provider::reserve();
    let dir = tempfile::tempdir().unwrap();
    let mut oidc = provider.controller_config(dir.path(), &[]).unwrap();
    oidc["scopes"] = json!(["openid", "email", "profile", "affiliation", "groups"]);
    oidc["claims"] = json!({
        "organisation": "schacHomeOrganization",
        "roles": "eduPersonAffiliation",
        "groups": "groups",
        "admin_groups": ["fjord-admins"],
        "host_roles": ["employee", "faculty"],
    });
    let spec = harness::ClusterSpec {
        controllers: 1,
        oidc: Some(oidc),
        ..crate::spec()
    };
    let c = harness::Cluster::start(spec).await.unwrap();
    let base = c.controllers[0].url();
    // A student whose address is a subdomain's, a lecturer in the administrators'
    // group, and someone whose provider sends no organisation.
    let directory = json!({
        "kari": { "email": "kari@student.uni.no", "schacHomeOrganization": "uni.no", "eduPersonAffiliation": ["student", "member"] },
        "ola": { "email": "ola@uni.no", "schacHomeOrganization": "uni.no", "eduPersonAffiliation": ["employee", "faculty", "member"], "groups": ["physics", "fjord-admins"] },
        "per": { "email": "per@hiof.no", "eduPersonAffiliation": ["employee"] },
    });
    provider
        .start_with(
            &format!("{base}/auth/callback"),
            "uni.no",
            Some(&directory),
            &c.dir.join("logs/oidc-provider.log"),
        )
        .await
        .unwrap();

    // The ID token carries no e-mail, name or affiliation: all of it is userinfo's.
    let kari = provider.sign_in_http(&base, "kari").await.unwrap();
    let (me, st, made) = me_and_a_meeting(&base, &kari).await;
    assert_eq!(
        (&me["email"], &me["name"], &me["org"], &me["admin"]),
        (
            &json!("kari@student.uni.no"),
            &json!("Kari"),
            &json!("uni.no"),
            &json!(false)
        ),
        "{me}"
    );
    assert_eq!(me["roles"], json!(["member", "student"]), "{me}");
    assert_eq!(st, StatusCode::FORBIDDEN, "students join meetings: {made}");
    assert!(
        made["message"]
            .as_str()
            .unwrap()
            .contains("employee or faculty"),
        "{made}"
    );

    let ola = provider.sign_in_http(&base, "ola").await.unwrap();
    let (me, st, made) = me_and_a_meeting(&base, &ola).await;
    assert_eq!(
        (&me["org"], &me["admin"]),
        (&json!("uni.no"), &json!(true)),
        "{me}"
    );
    assert_eq!(
        me["roles"],
        json!(["employee", "faculty", "member"]),
        "{me}"
    );
    assert_eq!(st, StatusCode::CREATED, "{made}");
    let settings: Value = reqwest::Client::new()
        .get(format!("{base}/v1/org/settings"))
        .header("cookie", &ola)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        settings["org"], "uni.no",
        "the group made Ola its administrator: {settings}"
    );

    let per = provider.sign_in_http(&base, "per").await.unwrap();
    let (me, st, made) = me_and_a_meeting(&base, &per).await;
    assert_eq!(
        (&me["org"], &me["admin"]),
        (&json!("hiof.no"), &json!(false)),
        "without the claim, the e-mail's domain: {me}"
    );
    assert_eq!(st, StatusCode::CREATED, "{made}");
    let resp = reqwest::Client::new()
        .get(format!("{base}/v1/org/settings"))
        .header("cookie", &per)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_dashboard_shows_an_active_meeting_with_its_participants_region_and_node_and_moves_it_to_ended()
 {
    let (c, provider, base, _dir) = start().await;
    let b = Browser::start(&c.dir.join("logs"), "dashboard")
        .await
        .unwrap();
    sign_in(&b, &base, "boss").await;
    let http = reqwest::Client::new();
    let token = provider.sign(&claims(&provider, "boss")).await.unwrap();

    // A meeting of someone at the same organisation, and one elsewhere, not shown.
    let create = |login: &str, title: &str| {
        let provider = &provider;
        let (http, base, title, login) = (
            http.clone(),
            base.clone(),
            title.to_owned(),
            login.to_owned(),
        );
        async move {
            let token = provider.sign(&claims(provider, &login)).await.unwrap();
            let resp = http
                .post(format!("{base}/v1/meetings"))
                .bearer_auth(token)
                .json(&json!({ "title": title, "waiting_room": false }))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), StatusCode::CREATED);
            resp.json::<Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    let id = create("pia", "Lab meeting").await;
    let pia = provider.sign(&claims(&provider, "pia")).await.unwrap();
    let resp = http
        .get(format!("{base}/v1/dashboard"))
        .bearer_auth(&pia)
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::FORBIDDEN,
        "the dashboard is for administrators"
    );

    // Olga publishes (her node measures her audio's jitter), Sven receives (his node
    // measures the round trip from his receiver reports).
    let bots = [
        crate::join_bot(
            &base,
            &id,
            "Olga Oslo",
            Some("oslo"),
            Some(crate::hosts::clip(440)),
        )
        .await,
        crate::join_bot(&base, &id, "Sven Stockholm", Some("stockholm"), None).await,
    ];
    let joined = std::time::Instant::now();
    let row = |state: &'static str| {
        let b = &b;
        let id = id.clone();
        async move {
            b.eval(
                "const r = document.querySelector('#' + arguments[0] + ' tr[data-meeting=\"' + arguments[1] + '\"]'); return r ? r.textContent : null;",
                json!([state, id]),
            )
            .await
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
        }
    };
    let shown = eventually(
        Duration::from_secs(5),
        "the dashboard shows both participants",
        || async {
            row("active")
                .await
                .filter(|t| t.contains("Olga Oslo") && t.contains("Sven Stockholm"))
        },
    )
    .await
    .unwrap();
    eprintln!("shown {:?} after joining: {shown}", joined.elapsed());
    for (b, region) in bots.iter().zip(["oslo", "stockholm"]) {
        assert!(
            shown.contains(&format!("{region}, {}", b.node_id)),
            "{shown}"
        );
    }
    assert!(
        shown.contains("Lab meeting") && shown.contains("Pia"),
        "{shown}"
    );
    // The media nodes' figures for each participant follow.
    let figures = eventually(Duration::from_secs(15), "quality figures for both", || async {
        let items = b
            .eval(
                "return [...document.querySelectorAll('#active tr[data-meeting=\"' + arguments[0] + '\"] li')].map((li) => li.textContent)",
                json!([id]),
            )
            .await
            .ok()?;
        let items: Vec<String> = serde_json::from_value(items).ok()?;
        let olga = items.iter().find(|t| t.starts_with("Olga"))?;
        let sven = items.iter().find(|t| t.starts_with("Sven"))?;
        (olga.contains("jitter") && sven.contains("rtt")).then(|| items.clone())
    })
    .await
    .unwrap();
    eprintln!("{figures:?}");

    let resp = http
        .delete(format!("{base}/v1/meetings/{id}"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::OK,
        "an administrator of the organisation ends it"
    );
    eventually(
        Duration::from_secs(5),
        "the meeting moves to ended",
        || async {
            let ended = row("ended").await?;
            (row("active").await.is_none() && ended.contains("Lab meeting")).then_some(())
        },
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_organisations_settings_give_its_meetings_their_defaults_regions_recording_rule_and_retention()
 {
    let (_c, provider, base, _dir) = start().await;
    let http = reqwest::Client::new();
    let (boss, pia, eve) = org_tokens(&provider).await;
    let call = |method: reqwest::Method, path: &str, who: &str, body: Option<Value>| {
        let mut req = http
            .request(method, format!("{base}{path}"))
            .bearer_auth(who);
        if let Some(b) = body {
            req = req.json(&b);
        }
        async move {
            let resp = req.send().await.unwrap();
            (
                resp.status(),
                resp.json::<Value>().await.unwrap_or_default(),
            )
        }
    };
    use reqwest::Method;

    // Only administrators read and set them; until set, the defaults hold.
    let (st, _) = call(Method::GET, "/v1/org/settings", &pia, None).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, o) = call(Method::GET, "/v1/org/settings", &boss, None).await;
    assert_eq!(st, StatusCode::OK, "{o}");
    assert_eq!(
        (
            o["org"].as_str(),
            o["waiting_room"].as_bool(),
            o["recording_allowed"].as_bool()
        ),
        (Some("uni.no"), Some(true), Some(true)),
        "{o}"
    );
    let settings = json!({ "waiting_room": false, "recording_allowed": false, "e2ee": false, "allowed_regions": ["stockholm"], "retention_secs": 7200 });
    for (field, bad, says) in [
        ("allowed_regions", json!(["atlantis"]), "allowed_regions"),
        ("retention_secs", json!(60), "retention_secs"),
    ] {
        let mut b = settings.clone();
        b[field] = bad;
        let (st, e) = call(Method::PUT, "/v1/org/settings", &boss, Some(b)).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{e}");
        assert!(e["message"].as_str().unwrap().contains(says), "{e}");
    }
    let (st, o) = call(
        Method::PUT,
        "/v1/org/settings",
        &boss,
        Some(settings.clone()),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{o}");
    assert_eq!(o["updated_by"], "boss@uni.no", "{o}");

    // A member's meeting takes them: no waiting room, its media in Stockholm only, no
    // recording on the servers, personal data kept two hours after it ends.
    let (st, m) = call(
        Method::POST,
        "/v1/meetings",
        &pia,
        Some(json!({ "title": "Group meeting" })),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{m}");
    assert_eq!(
        (m["waiting_room"].as_bool(), m["residency"].as_str()),
        (Some(false), Some("stockholm")),
        "{m}"
    );
    let (st, e) = call(
        Method::POST,
        "/v1/meetings",
        &pia,
        Some(json!({ "title": "x", "residency": "oslo" })),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{e}");
    assert!(
        e["message"].as_str().unwrap().contains("stockholm only"),
        "{e}"
    );
    let id = m["id"].as_str().unwrap();
    let (st, e) = call(
        Method::POST,
        &format!("/v1/meetings/{id}/recordings"),
        &pia,
        None,
    )
    .await;
    assert_eq!(
        (st, e["error"].as_str()),
        (StatusCode::CONFLICT, Some("recording_forbidden")),
        "{e}"
    );
    let (st, ended) = call(Method::DELETE, &format!("/v1/meetings/{id}"), &pia, None).await;
    assert_eq!(st, StatusCode::OK, "{ended}");
    let kept = ended["personal_data_deleted_after_unix_ms"]
        .as_i64()
        .unwrap()
        - ended["ended_unix_ms"].as_i64().unwrap();
    assert_eq!(kept, 7_200_000, "{ended}");

    // Recording allowed only for meetings made with a data classification: one made
    // without is refused saying so; one with goes past that check (to "nobody in it").
    let mut only_classified = settings.clone();
    only_classified["recording_allowed"] = true.into();
    only_classified["recording_needs_classification"] = true.into();
    let (st, o) = call(
        Method::PUT,
        "/v1/org/settings",
        &boss,
        Some(only_classified),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{o}");
    assert_eq!(o["recording_needs_classification"], true, "{o}");
    for (body, code) in [
        (
            json!({ "title": "Unclassified" }),
            "classification_required",
        ),
        (
            json!({ "title": "Classified", "classification": "internal" }),
            "conflict",
        ),
    ] {
        let (st, m) = call(Method::POST, "/v1/meetings", &pia, Some(body)).await;
        assert_eq!(st, StatusCode::CREATED, "{m}");
        let id = m["id"].as_str().unwrap();
        let (st, e) = call(
            Method::POST,
            &format!("/v1/meetings/{id}/recordings"),
            &pia,
            None,
        )
        .await;
        assert_eq!(
            (st, e["error"].as_str()),
            (StatusCode::CONFLICT, Some(code)),
            "{e}"
        );
    }

    // Another organisation's member is not bound by them.
    let (st, m) = call(
        Method::POST,
        "/v1/meetings",
        &eve,
        Some(json!({ "title": "Elsewhere", "residency": "oslo" })),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{m}");
    assert_eq!(m["waiting_room"], true, "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_portal_lists_a_hosts_recordings_and_plays_the_composite_and_other_organisations_see_none()
 {
    let (mut c, provider, base, _dir) = start().await;
    c.start_recording(crate::node("recording-oslo-1", "oslo"))
        .unwrap();
    c.wait_ready(Duration::from_secs(20)).await.unwrap();
    let http = reqwest::Client::new();
    let (boss, pia, eve) = org_tokens(&provider).await;
    let call = |method: reqwest::Method, path: String, who: &str| {
        let req = http
            .request(method, format!("{base}{path}"))
            .bearer_auth(who);
        async move {
            let resp = req.timeout(Duration::from_secs(60)).send().await.unwrap();
            (
                resp.status(),
                resp.json::<Value>().await.unwrap_or_default(),
            )
        }
    };

    // Pia records her meeting for a few seconds.
    let (st, m) = http
        .post(format!("{base}/v1/meetings"))
        .bearer_auth(&pia)
        .json(&json!({ "title": "Lab meeting", "waiting_room": false }))
        .send()
        .await
        .map(|r| (r.status(), r))
        .unwrap();
    assert_eq!(st, StatusCode::CREATED);
    let m: Value = m.json().await.unwrap();
    let meeting = m["id"].as_str().unwrap().to_owned();
    let _ada = crate::recording::publisher(&base, &meeting, "Ada", 440, "ball").await;
    let (st, r) = call(
        reqwest::Method::POST,
        format!("/v1/meetings/{meeting}/recordings"),
        &pia,
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{r}");
    let rid = r["recording_id"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (st, r) = call(
        reqwest::Method::POST,
        format!("/v1/recordings/{rid}/stop"),
        &pia,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{r}");
    assert!(
        r["bytes"].as_u64().unwrap() > 10_000 && r["duration_ms"].as_u64().unwrap() >= 3_000,
        "{r}"
    );
    assert!(
        r["expires_unix_ms"].as_i64().unwrap() > r["stopped_unix_ms"].as_i64().unwrap(),
        "{r}"
    );

    // Her organisation's administrator sees it; another organisation's member does not.
    let ids = |v: &Value| -> Vec<String> {
        v["recordings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["recording_id"].as_str().unwrap().to_owned())
            .collect()
    };
    let (st, v) = call(reqwest::Method::GET, "/v1/recordings".into(), &boss).await;
    assert_eq!((st, ids(&v)), (StatusCode::OK, vec![rid.clone()]), "{v}");
    let (st, v) = call(reqwest::Method::GET, "/v1/recordings".into(), &eve).await;
    assert_eq!((st, ids(&v)), (StatusCode::OK, vec![]), "{v}");
    let (st, v) = call(reqwest::Method::GET, format!("/v1/recordings/{rid}"), &eve).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    let (st, _) = http
        .get(format!("{base}/v1/recordings"))
        .send()
        .await
        .map(|r| (r.status(), ()))
        .unwrap();
    assert_eq!(st, StatusCode::UNAUTHORIZED, "nobody signed in, no key");

    // In the portal: listed with its facts, and the composite plays in the page.
    let b = Browser::start(&c.dir.join("logs"), "pia").await.unwrap();
    sign_in(&b, &base, "pia").await;
    let row = eventually(Duration::from_secs(10), "the recording's row", || async {
        let v = b
            .eval(
                "const tr = document.querySelector('#recording-list tr[data-recording=\"' + arguments[0] + '\"]'); \
                 return tr ? [...tr.cells].map(c => c.textContent) : null",
                json!([rid]),
            )
            .await
            .ok()?;
        v.as_array().map(|cells| cells.iter().map(|c| c.as_str().unwrap_or("").to_owned()).collect::<Vec<_>>())
    })
    .await
    .unwrap();
    assert_eq!(row[0], "Lab meeting", "{row:?}");
    assert!(
        row[2].contains("s") && !row[3].is_empty(),
        "duration and size: {row:?}"
    );
    assert_eq!(
        (row[4].as_str(), row[5].as_str()),
        ("internal", "stopped"),
        "{row:?}"
    );
    assert!(
        !row[6].is_empty() && row[7].contains("composite.mp4"),
        "{row:?}"
    );
    b.eval(
        "document.querySelector('#recording-list tr[data-recording=\"' + arguments[0] + '\"] button').click()",
        json!([rid]),
    )
    .await
    .unwrap();
    let played = eventually(Duration::from_secs(20), "the composite to play", || async {
        let v = b
            .eval(
                "const v = document.getElementById('player'); \
                 return { w: v.videoWidth, h: v.videoHeight, t: v.currentTime, ready: v.readyState, err: v.error && v.error.message, src: v.src }",
                json!([]),
            )
            .await
            .ok()?;
        (v["t"].as_f64().unwrap_or(0.0) > 1.0).then_some(v)
    })
    .await;
    let v = match played {
        Ok(v) => v,
        Err(e) => panic!(
            "{e}: {:?}",
            b.eval("const v = document.getElementById('player'); return { t: v.currentTime, ready: v.readyState, err: v.error && v.error.message, status: document.getElementById('status').textContent }", json!([])).await
        ),
    };
    // The test cluster's composites are 640x360 (harness/src/cluster: the recording node).
    assert_eq!(
        (v["w"].as_u64(), v["h"].as_u64()),
        (Some(640), Some(360)),
        "{v}"
    );
    assert!(
        v["src"].as_str().unwrap().contains("sig="),
        "a signed link: {v}"
    );
}
