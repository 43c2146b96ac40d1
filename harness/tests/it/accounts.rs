//! Local accounts over HTTP against a real cluster: the first administrator made from
//! the config, sign-in with a session cookie and its CSRF token, accounts managed by an
//! administrator within their organisation, password changes, and wrong passwords
//! limited per account and per client address.
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

/// A signed-in browser's session: its cookie and CSRF token.
pub(crate) struct Session {
    pub cookie: String,
    pub csrf: String,
}

pub(crate) async fn sign_in(
    api: &crate::Api,
    base: &str,
    email: &str,
    password: &str,
) -> (StatusCode, Value, Option<Session>) {
    let resp = api
        .http
        .post(format!("{base}/auth/password-login"))
        .json(&json!({ "email": email, "password": password }))
        .send()
        .await
        .unwrap();
    let st = resp.status();
    let cookie = resp
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("fjord_session="))
        .map(|v| v.split(';').next().unwrap().to_owned());
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    let session = cookie.map(|cookie| Session {
        cookie,
        csrf: body["csrf"].as_str().unwrap_or_default().to_owned(),
    });
    (st, body, session)
}

/// A call of a signed-in browser (with its CSRF token unless `csrf` is false).
pub(crate) async fn call(
    api: &crate::Api,
    s: &Session,
    method: reqwest::Method,
    url: String,
    body: Option<Value>,
    csrf: bool,
) -> (StatusCode, Value) {
    let mut req = api.http.request(method, url).header("cookie", &s.cookie);
    if csrf {
        req = req.header("x-fjord-csrf", &s.csrf);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    api.send(req).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn local_accounts_sign_in_are_managed_by_their_organisations_administrator_and_wrong_passwords_are_limited()
 {
    let dir = tempfile::tempdir().unwrap();
    let admin_password = "a long admin password";
    let password_file = dir.path().join("admin-password");
    std::fs::write(&password_file, format!("{admin_password}\n")).unwrap();
    let spec = harness::ClusterSpec {
        controllers: 1,
        controller_extra: Some(json!({ "accounts": {
            "enabled": true,
            "failures_per_account": { "per_minute": 4, "burst": 3 },
            "failures_per_address": { "per_minute": 4, "burst": 6 },
            "initial_admin": {
                "email": "Admin@Uni.no",
                "name": "Uni Admin",
                "password_file": password_file,
            },
        }})),
        ..crate::spec()
    };
    let c = harness::Cluster::start(spec).await.unwrap();
    let api = crate::Api::new(&c);
    let base = c.controllers[0].url();
    const GET: reqwest::Method = reqwest::Method::GET;
    const POST: reqwest::Method = reqwest::Method::POST;
    const DELETE: reqwest::Method = reqwest::Method::DELETE;

    // The first administrator exists once the controller is up (asked with the operator
    // key: a sign-in before would count as a wrong password).
    harness::eventually(
        Duration::from_secs(20),
        "the first administrator",
        || async {
            let (_, all) = api
                .operator(reqwest::Method::GET, format!("{base}/v1/accounts"))
                .await;
            (all["accounts"][0]["email"] == "admin@uni.no").then_some(())
        },
    )
    .await
    .unwrap();
    let (st, v, admin) = sign_in(&api, &base, "admin@uni.no", admin_password).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let admin = admin.unwrap();
    let (st, me) = call(&api, &admin, GET, format!("{base}/v1/me"), None, false).await;
    assert_eq!(st, StatusCode::OK, "{me}");
    assert_eq!(
        (
            me["email"].as_str(),
            me["admin"].as_bool(),
            me["local"].as_bool()
        ),
        (Some("admin@uni.no"), Some(true), Some(true))
    );
    assert_eq!(me["org"], "uni.no");

    // Accounts of the administrator's organisation; a change without the session's CSRF
    // token does nothing.
    let bo = json!({ "email": "bo@uni.no", "name": "Bo Ek", "password": "bo's first password" });
    let (st, v) = call(
        &api,
        &admin,
        POST,
        format!("{base}/v1/accounts"),
        Some(bo.clone()),
        false,
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    let (_, list) = call(
        &api,
        &admin,
        GET,
        format!("{base}/v1/accounts"),
        None,
        false,
    )
    .await;
    assert_eq!(list["accounts"].as_array().unwrap().len(), 1, "{list}");
    let (st, v) = call(
        &api,
        &admin,
        POST,
        format!("{base}/v1/accounts"),
        Some(bo.clone()),
        true,
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    assert_eq!(
        (v["email"].as_str(), v["admin"].as_bool()),
        (Some("bo@uni.no"), Some(false))
    );
    assert!(v.get("password_hash").is_none(), "{v}");
    let (st, v) = call(
        &api,
        &admin,
        POST,
        format!("{base}/v1/accounts"),
        Some(bo),
        true,
    )
    .await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    // Not another organisation's, and nothing malformed: each with its reason.
    for (body, status, says) in [
        (
            json!({ "email": "eve@other.no", "name": "Eve", "password": "a good long password" }),
            StatusCode::FORBIDDEN,
            "uni.no",
        ),
        (
            json!({ "email": "cy@uni.no", "name": " ", "password": "a good long password" }),
            StatusCode::BAD_REQUEST,
            "name is needed",
        ),
        (
            json!({ "email": "cy@uni.no", "name": "x".repeat(101), "password": "a good long password" }),
            StatusCode::BAD_REQUEST,
            "longer than 100",
        ),
        (
            json!({ "email": "cy@uni.no", "name": "Cy", "password": "short" }),
            StatusCode::BAD_REQUEST,
            "shorter than 12",
        ),
        (
            json!({ "email": "", "name": "Cy", "password": "a good long password" }),
            StatusCode::BAD_REQUEST,
            "address is needed",
        ),
        (
            json!({ "email": "not an address", "name": "Cy", "password": "a good long password" }),
            StatusCode::BAD_REQUEST,
            "spaces",
        ),
    ] {
        let (st, v) = call(
            &api,
            &admin,
            POST,
            format!("{base}/v1/accounts"),
            Some(body.clone()),
            true,
        )
        .await;
        assert_eq!(st, status, "{body}: {v}");
        assert!(
            v["message"].as_str().unwrap_or_default().contains(says),
            "{body}: {v}"
        );
    }

    // Bo signs in: not an administrator, so no accounts for him.
    let (st, v, bo) = sign_in(&api, &base, "BO@uni.no", "bo's first password").await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let bo = bo.unwrap();
    let (st, v) = call(&api, &bo, GET, format!("{base}/v1/accounts"), None, false).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    let (st, v) = call(
        &api,
        &bo,
        POST,
        format!("{base}/v1/accounts"),
        Some(json!({ "email": "cy@uni.no", "name": "Cy", "password": "a good long password" })),
        true,
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");

    // He changes his password: the current one is asked for.
    let change = |current: &str, new: &str| json!({ "current": current, "new": new });
    let (st, v) = call(
        &api,
        &bo,
        POST,
        format!("{base}/v1/me/password"),
        Some(change("wrong", "bo's second password")),
        true,
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    let (st, v) = call(
        &api,
        &bo,
        POST,
        format!("{base}/v1/me/password"),
        Some(change("bo's first password", "bo's second password")),
        true,
    )
    .await;
    assert_eq!(st, StatusCode::NO_CONTENT, "{v}");
    let (st, _, _) = sign_in(&api, &base, "bo@uni.no", "bo's first password").await;
    assert_eq!(
        st,
        StatusCode::UNAUTHORIZED,
        "the old password no longer opens it"
    );
    // (The wrong current password and this sign-in were two of his account's three.)

    // One more wrong password locks his account, even against the right one...
    let (st, v, _) = sign_in(&api, &base, "bo@uni.no", "a guess").await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{v}");
    let (st, v, _) = sign_in(&api, &base, "bo@uni.no", "bo's second password").await;
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS, "{v}");
    // ... and a wrong password for an address with no account counts like any other:
    // three more from this address (six in all) lock the address for every account.
    for who in ["nobody@uni.no", "ghost@uni.no", "admin@uni.no"] {
        let (st, v, _) = sign_in(&api, &base, who, "not the password").await;
        assert_eq!(st, StatusCode::UNAUTHORIZED, "{who}: {v}");
    }
    let (st, v, _) = sign_in(&api, &base, "admin@uni.no", admin_password).await;
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS, "{v}");
    // The buckets refill (one try every 15 s here): both accounts are usable again.
    tokio::time::sleep(Duration::from_secs(16)).await;
    let (st, v, _) = sign_in(&api, &base, "bo@uni.no", "bo's second password").await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, v, _) = sign_in(&api, &base, "admin@uni.no", admin_password).await;
    assert_eq!(st, StatusCode::OK, "{v}");

    // An operator sees every account; the administrator removes Bo's (not their own).
    let (st, all) = api.operator(GET, format!("{base}/v1/accounts")).await;
    assert_eq!(st, StatusCode::OK, "{all}");
    let emails: Vec<&str> = all["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["email"].as_str())
        .collect();
    assert_eq!(emails, ["admin@uni.no", "bo@uni.no"]);
    let (st, v) = call(
        &api,
        &admin,
        DELETE,
        format!("{base}/v1/accounts/admin@uni.no"),
        None,
        true,
    )
    .await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    let (st, v) = call(
        &api,
        &admin,
        DELETE,
        format!("{base}/v1/accounts/bo@uni.no"),
        None,
        true,
    )
    .await;
    assert_eq!(st, StatusCode::NO_CONTENT, "{v}");
    let (st, _, _) = sign_in(&api, &base, "bo@uni.no", "bo's second password").await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "his account is gone");
}

/// Whether `js` (a function body returning a boolean) holds in `b` within 20 s.
pub(crate) async fn until(b: &harness::webdriver::Browser, what: &str, js: &str) {
    harness::eventually(Duration::from_secs(20), what, || async {
        (b.eval(js, json!([])).await.ok()? == json!(true)).then_some(())
    })
    .await
    .unwrap();
}

/// A one-controller cluster with local accounts and its first administrator
/// ([`harness::LOCAL_ADMIN`], `password`), as `fjord-local-cluster` makes it.
pub(crate) struct Local {
    pub c: harness::Cluster,
    pub base: String,
    pub api: crate::Api,
    pub password: String,
    /// Holds the administrator's password file while the cluster runs.
    _dir: tempfile::TempDir,
}

pub(crate) async fn local_cluster() -> Local {
    let dir = tempfile::tempdir().unwrap();
    let (spec, password) = harness::ClusterSpec {
        controllers: 1,
        ..crate::spec()
    }
    .with_local_admin(dir.path())
    .unwrap();
    let c = harness::Cluster::start(spec).await.unwrap();
    Local {
        base: c.controllers[0].url(),
        api: crate::Api::new(&c),
        c,
        password,
        _dir: dir,
    }
}

/// The operator makes local accounts (`email`, `name`, administrator or not), each with
/// `password`.
pub(crate) async fn make_accounts(l: &Local, accounts: &[(&str, &str, bool)], password: &str) {
    for (email, name, admin) in accounts {
        let (st, v) = l
            .api
            .send(
                l.api
                    .http
                    .post(format!("{}/v1/accounts", l.base))
                    .bearer_auth(&l.api.key)
                    .json(&json!({ "email": email, "name": name, "password": password, "admin": admin })),
            )
            .await;
        assert_eq!(st, StatusCode::CREATED, "{v}");
    }
}

/// Fills the portal's password sign-in form in `b` (on the portal already) and sends it.
pub(crate) async fn portal_sign_in(b: &harness::webdriver::Browser, email: &str, password: &str) {
    b.eval(
        "document.getElementById('pw-email').value = arguments[0]; \
         document.getElementById('pw-password').value = arguments[1]; \
         document.getElementById('password-sign-in').requestSubmit();",
        json!([email, password]),
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_local_clusters_administrator_signs_in_to_the_portal_with_the_printed_password_and_makes_an_account_there()
 {
    let dir = tempfile::tempdir().unwrap();
    // As `fjord-local-cluster` (scripts/cluster.sh) makes it.
    let (spec, password) = harness::ClusterSpec {
        controllers: 1,
        ..crate::spec()
    }
    .with_local_admin(dir.path())
    .unwrap();
    let c = harness::Cluster::start(spec).await.unwrap();
    let base = c.controllers[0].url();
    let b = harness::webdriver::Browser::start(&c.dir.join("logs"), "portal-admin")
        .await
        .unwrap();
    b.goto(&format!("{base}/portal")).await.unwrap();
    until(
        &b,
        "the portal offers the password form, and no provider",
        "return !document.getElementById('password-sign-in').hidden \
         && document.getElementById('sign-in').hidden",
    )
    .await;

    // A wrong password: the page says so and stays signed out.
    let submit = "const [email, password] = arguments; \
        document.getElementById('pw-email').value = email; \
        document.getElementById('pw-password').value = password; \
        document.getElementById('password-sign-in').requestSubmit();";
    b.eval(submit, json!([harness::LOCAL_ADMIN, "not the password"]))
        .await
        .unwrap();
    until(
        &b,
        "the page says the password is wrong",
        "return document.getElementById('status').textContent.includes('wrong e-mail address or password')",
    )
    .await;
    assert_eq!(
        b.eval("return document.getElementById('mine').hidden", json!([]))
            .await
            .unwrap(),
        json!(true)
    );

    // The printed password: the portal greets the administrator and shows their meetings.
    b.eval(submit, json!([harness::LOCAL_ADMIN, password]))
        .await
        .unwrap();
    until(
        &b,
        "signed in: my meetings and the administrator's dashboard",
        "return !document.getElementById('mine').hidden \
         && document.getElementById('who').textContent.includes('administrator, fjord.test')",
    )
    .await;

    // The administrator makes an account in the portal: a password too short is refused
    // with the reason, a good one makes it, and the list shows it.
    let create = "const [email, name, password] = arguments; \
        document.getElementById('u-email').value = email; \
        document.getElementById('u-name').value = name; \
        document.getElementById('u-password').value = password; \
        document.getElementById('user-form').requestSubmit();";
    until(
        &b,
        "the accounts section",
        "return !document.getElementById('users').hidden",
    )
    .await;
    // The browser's own minlength check would stop a short one first: lift it to see
    // the server's answer.
    b.eval(
        "document.getElementById('u-password').removeAttribute('minlength')",
        json!([]),
    )
    .await
    .unwrap();
    b.eval(create, json!(["bo@fjord.test", "Bo Ek", "short"]))
        .await
        .unwrap();
    until(
        &b,
        "the portal says the password is too short",
        "return document.getElementById('status').textContent.includes('shorter than 12')",
    )
    .await;
    b.eval(
        create,
        json!(["bo@fjord.test", "Bo Ek", "a good long password"]),
    )
    .await
    .unwrap();
    until(
        &b,
        "Bo's account in the list",
        "return !!document.querySelector('#user-list tr[data-email=\"bo@fjord.test\"]')",
    )
    .await;
    let api = crate::Api::new(&c);
    let (_, all) = api
        .operator(reqwest::Method::GET, format!("{base}/v1/accounts"))
        .await;
    assert_eq!(all["accounts"][1]["name"], "Bo Ek", "{all}");
}

/// The display name a join token carries (its payload is base64url JSON).
fn token_name(token: &str) -> String {
    use base64::Engine;
    let payload = token.split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    claims["name"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_meeting_for_signed_in_users_sends_a_guest_to_sign_in_and_back_and_admits_them_under_their_own_name()
 {
    let l = local_cluster().await;
    let Local {
        c,
        base,
        api,
        password,
        ..
    } = &l;
    // Bo of the administrator's organisation, Eva of another; made by the operator.
    let good = "a good long password";
    make_accounts(
        &l,
        &[
            ("bo@fjord.test", "Bo Ek", false),
            ("eva@other.org", "Eva Berg", false),
        ],
        good,
    )
    .await;
    let (_, _, admin) = sign_in(api, base, harness::LOCAL_ADMIN, password).await;
    let admin = admin.unwrap();
    let make = |title: &'static str, audience: &'static str| {
        let (api, admin, base) = (&api, &admin, &base);
        async move {
            call(
                api,
                admin,
                reqwest::Method::POST,
                format!("{base}/v1/meetings"),
                Some(json!({ "title": title, "audience": audience, "waiting_room": false })),
                true,
            )
            .await
        }
    };
    let (st, v) = make("Staff meeting", "organisation").await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    assert_eq!(v["audience"], "organisation", "{v}");
    let staff = v["id"].as_str().unwrap().to_owned();
    let (st, v) = make("Thesis defence", "signed_in").await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let defence = v["id"].as_str().unwrap().to_owned();
    let (st, v) = make("Odd", "friends").await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert!(v["message"].as_str().unwrap().contains("audience"), "{v}");
    // An operator's meeting belongs to no organisation.
    let (st, v) = api
        .send(
            api.http
                .post(format!("{base}/v1/meetings"))
                .bearer_auth(&api.key)
                .json(&json!({ "title": "Ops", "audience": "organisation" })),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    let (_, public) = api
        .send(api.http.get(format!("{base}/v1/meetings/{defence}/public")))
        .await;
    assert_eq!(public["audience"], "signed_in", "{public}");

    // A guest is refused with the code the page acts on.
    let join = |id: &str| format!("{base}/v1/meetings/{id}/join");
    let (st, v) = api
        .send(
            api.http
                .post(join(&defence))
                .json(&json!({ "name": "Anon" })),
        )
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{v}");
    assert_eq!(v["error"], "sign_in_required", "{v}");
    // Eva, signed in elsewhere, joins the defence under her own name whatever she
    // types, and not the staff meeting of fjord.test.
    let (_, _, eva) = sign_in(api, base, "eva@other.org", good).await;
    let eva = eva.unwrap();
    let body = json!({ "name": "Somebody Else" });
    let (st, v) = call(
        api,
        &eva,
        reqwest::Method::POST,
        join(&defence),
        Some(body.clone()),
        true,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(token_name(v["token"].as_str().unwrap()), "Eva Berg");
    let (st, v) = call(
        api,
        &eva,
        reqwest::Method::POST,
        join(&staff),
        Some(body.clone()),
        true,
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("members of fjord.test"),
        "{v}"
    );
    // Without the session's CSRF token, a signed-in browser's join is refused.
    let (st, _) = call(
        api,
        &eva,
        reqwest::Method::POST,
        join(&defence),
        Some(body),
        false,
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN);

    // In Chromium: Bo opens the staff meeting's link signed out, is sent to sign in,
    // comes back to it, and joins under his own name, which the page does not let him
    // change.
    let b = harness::webdriver::Browser::start(&c.dir.join("logs"), "signed-in-only")
        .await
        .unwrap();
    b.goto(&format!("{base}/m/{staff}?camera=off"))
        .await
        .unwrap();
    until(
        &b,
        "sent to the portal's sign-in",
        "return location.pathname === '/portal' && !document.getElementById('password-sign-in').hidden",
    )
    .await;
    portal_sign_in(&b, "bo@fjord.test", good).await;
    until(
        &b,
        "back at the meeting, under his signed-in name, not editable",
        &format!(
            "const n = document.getElementById('name'); \
             return location.pathname === '/m/{staff}' && n.value === 'Bo Ek' && n.readOnly \
               && !document.getElementById('signed-in-note').hidden"
        ),
    )
    .await;
    b.eval(
        "document.getElementById('name').value = 'Typed Over'; document.getElementById('join').requestSubmit();",
        json!([]),
    )
    .await
    .unwrap();
    until(
        &b,
        "joined",
        "return !!(window.fjord.joined && window.fjord.joined.token)",
    )
    .await;
    let token = b
        .eval("return window.fjord.joined.token", json!([]))
        .await
        .unwrap();
    assert_eq!(token_name(token.as_str().unwrap()), "Bo Ek");
}
