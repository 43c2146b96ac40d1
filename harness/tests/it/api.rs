//! The public API's contract: statuses and `{error, message}` bodies for bad input and
//! missing or wrong credentials, meeting lifecycle, and the same service over gRPC.
use serde_json::json;

use crate::{Api, spec};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_and_bad_credentials_get_the_documented_status_and_message() {
    let c = harness::Cluster::start(spec()).await.unwrap();
    let api = Api::new(&c);
    let base = c.controllers[0].url();
    let meetings = format!("{base}/v1/meetings");
    let check = |what: &str,
                 st: reqwest::StatusCode,
                 v: &serde_json::Value,
                 status: u16,
                 code: &str,
                 says: &str| {
        assert_eq!(st.as_u16(), status, "{what}: {v}");
        assert_eq!(v["error"], code, "{what}: {v}");
        let msg = v["message"].as_str().unwrap_or_default();
        assert!(
            msg.contains(says),
            "{what}: message {msg:?} should mention {says:?}"
        );
    };

    let (st, v) = api
        .send(api.http.post(&meetings).json(&json!({ "title": "x" })))
        .await;
    check(
        "missing operator key",
        st,
        &v,
        401,
        "unauthorized",
        "operator key",
    );
    let (st, v) = api
        .send(
            api.http
                .post(&meetings)
                .bearer_auth("wrong-key-wrong-key")
                .json(&json!({ "title": "x" })),
        )
        .await;
    check(
        "wrong operator key",
        st,
        &v,
        401,
        "unauthorized",
        "not valid",
    );
    let (st, v) = api.send(api.http.get(format!("{base}/v1/nodes"))).await;
    check(
        "nodes without key",
        st,
        &v,
        401,
        "unauthorized",
        "operator key",
    );

    let authed = || {
        api.http
            .post(&meetings)
            .bearer_auth(&api.key)
            .header("content-type", "application/json")
    };
    let (st, v) = api.send(authed().body("{\"title\": ")).await;
    check("bad JSON", st, &v, 400, "bad_request", "invalid JSON");
    let (st, v) = api
        .send(authed().body("{\"title\":\"x\",\"colour\":\"red\"}"))
        .await;
    check(
        "unknown field",
        st,
        &v,
        400,
        "bad_request",
        "unknown field `colour`",
    );
    let (st, v) = api
        .send(authed().json(&json!({ "title": "t".repeat(201) })))
        .await;
    check("over-long title", st, &v, 400, "bad_request", "title");
    let (st, v) = api.send(authed().json(&json!({ "title": "   " }))).await;
    check("blank title", st, &v, 400, "bad_request", "title");
    let (st, v) = api
        .send(authed().json(&json!({ "title": "x", "residency": "mars" })))
        .await;
    check(
        "unknown residency",
        st,
        &v,
        400,
        "bad_request",
        "unknown region",
    );
    let (st, v) = api.send(authed().json(&json!({ "title": 42 }))).await;
    check("wrong type", st, &v, 400, "bad_request", "invalid type");

    // Password-protected meeting.
    let (st, created) = api
        .send(authed().json(&json!({ "title": "secret", "password": "hunter22" })))
        .await;
    assert_eq!(st, 201, "{created}");
    assert_eq!(created["has_password"], true);
    assert!(
        created.get("password").is_none() && !created.to_string().contains("hunter22"),
        "password echoed: {created}"
    );
    let id = created["id"].as_str().unwrap();
    let (st, v) = api.join(&base, id, json!({ "name": "Ada" })).await;
    check("missing password", st, &v, 401, "unauthorized", "password");
    let (st, v) = api
        .join(&base, id, json!({ "name": "Ada", "password": "hunter2" }))
        .await;
    check(
        "wrong password",
        st,
        &v,
        403,
        "forbidden",
        "wrong meeting password",
    );
    let (st, v) = api
        .join(&base, id, json!({ "name": "Ada", "password": "hunter22" }))
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["role"], "attendee");
    let (st, v) = api
        .join(
            &base,
            id,
            json!({ "name": "Host", "host_key": created["host_key"] }),
        )
        .await;
    assert_eq!(
        (st.as_u16(), v["role"].as_str()),
        (200, Some("host")),
        "{v}"
    );
    let (st, v) = api
        .join(&base, id, json!({ "name": "", "password": "hunter22" }))
        .await;
    check("empty name", st, &v, 400, "bad_request", "name");
    let (st, v) = api
        .join(
            &base,
            id,
            json!({ "name": "Ada", "password": "hunter22", "extra": 1 }),
        )
        .await;
    check(
        "unknown join field",
        st,
        &v,
        400,
        "bad_request",
        "unknown field",
    );

    // Choosing a region is for operators or when the cluster allows it (the test cluster does).
    let (st, v) = api
        .join(&base, "no-such-meeting", json!({ "name": "Ada" }))
        .await;
    check(
        "unknown meeting",
        st,
        &v,
        404,
        "not_found",
        "does not exist",
    );
    let (st, v) = api.join(&base, "../../etc", json!({ "name": "Ada" })).await;
    assert!(st == 404 || st == 400, "{v}");

    // Lifecycle: listing by state, ending, joining an ended meeting.
    let (st, v) = api
        .operator(reqwest::Method::GET, format!("{meetings}?state=bogus"))
        .await;
    check("bad state filter", st, &v, 400, "bad_request", "state");
    let (st, list) = api
        .operator(reqwest::Method::GET, format!("{meetings}?state=active"))
        .await;
    assert_eq!(st, 200);
    let listed = list["meetings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == id)
        .cloned()
        .expect("listed");
    assert_eq!(listed["placements"][0]["region"], "oslo", "{listed}");
    assert!(
        listed["placements"][0]["node_id"]
            .as_str()
            .unwrap()
            .starts_with("media-oslo-")
    );
    // Recording: unknown ids, and an empty meeting, are told apart.
    let (st, v) = api
        .operator(
            reqwest::Method::GET,
            format!("{base}/v1/recordings/nope-nope-nope"),
        )
        .await;
    check(
        "unknown recording",
        st,
        &v,
        404,
        "not_found",
        "does not exist",
    );
    let empty = api.create(&base, json!({ "title": "empty" })).await;
    let (st, v) = api
        .operator(
            reqwest::Method::POST,
            format!("{meetings}/{empty}/recordings"),
        )
        .await;
    check(
        "recording an empty meeting",
        st,
        &v,
        409,
        "conflict",
        "nobody",
    );

    let (st, v) = api
        .operator(reqwest::Method::DELETE, format!("{meetings}/{id}"))
        .await;
    assert_eq!(
        (st.as_u16(), v["state"].as_str()),
        (200, Some("ended")),
        "{v}"
    );
    let (st, v) = api
        .join(&base, id, json!({ "name": "Ada", "password": "hunter22" }))
        .await;
    check("ended meeting", st, &v, 409, "conflict", "ended");
    let (_, ended) = api
        .operator(reqwest::Method::GET, format!("{meetings}?state=ended"))
        .await;
    assert!(
        ended["meetings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["id"] == id)
    );
    let (st, v) = api
        .operator(reqwest::Method::GET, format!("{meetings}/{id}"))
        .await;
    assert_eq!(
        (st.as_u16(), v["placements"].as_array().map(Vec::len)),
        (200, Some(0)),
        "{v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_api_serves_the_same_service_with_the_same_checks() {
    use proto::v1::controller_client::ControllerClient;
    let c = harness::Cluster::start(spec()).await.unwrap();
    let mut client = ControllerClient::connect(c.controllers[1].url())
        .await
        .unwrap();

    let denied = client
        .create_meeting(proto::v1::CreateMeetingRequest {
            title: "g".into(),
            ..Default::default()
        })
        .await;
    assert_eq!(denied.unwrap_err().code(), tonic::Code::Unauthenticated);

    let mut req = tonic::Request::new(proto::v1::CreateMeetingRequest {
        title: "grpc".into(),
        ..Default::default()
    });
    req.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", c.operator_key).parse().unwrap(),
    );
    let created = client.create_meeting(req).await.unwrap().into_inner();
    let id = created.meeting.unwrap().id;
    let joined = client
        .join(proto::v1::JoinRequest {
            meeting_id: id.clone(),
            name: "Grace".into(),
            region: Some("stockholm".into()),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (joined.region.as_str(), joined.node_id.as_str()),
        ("stockholm", "media-stockholm-1")
    );
    assert!(
        joined.signal_url.ends_with(&format!("/signal/{id}")),
        "{}",
        joined.signal_url
    );

    let missing = client
        .join(proto::v1::JoinRequest {
            meeting_id: "nope".into(),
            name: "G".into(),
            ..Default::default()
        })
        .await;
    assert_eq!(missing.unwrap_err().code(), tonic::Code::NotFound);
}

/// Joins over the rate of one client address or of one meeting get 429 with a
/// `Retry-After` and a message that says which limit it was; the others go through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_over_the_rate_of_an_address_or_a_meeting_get_429_with_retry_after() {
    let c = harness::Cluster::start(harness::ClusterSpec {
        controllers: 1,
        join_limits: Some(json!({
            "per_address": { "per_minute": 6, "burst": 4 },
            "per_meeting": { "per_minute": 6, "burst": 2 },
        })),
        ..spec()
    })
    .await
    .unwrap();
    let api = Api::new(&c);
    let base = c.controllers[0].url();
    let (a, b) = (
        api.create(&base, json!({ "title": "a" })).await,
        api.create(&base, json!({ "title": "b" })).await,
    );
    let join = |meeting: &str| {
        api.http
            .post(format!("{base}/v1/meetings/{meeting}/join"))
            .json(&json!({ "name": "Ada", "region": "oslo" }))
            .send()
    };
    let limited = |r: reqwest::Response, says: &'static str| async move {
        assert_eq!(r.status().as_u16(), 429);
        let wait: u64 = r.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        // One join comes back every 10 s at 6 a minute.
        assert!((1..=10).contains(&wait), "Retry-After: {wait}");
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(v["error"], "too_many_requests", "{v}");
        assert!(v["message"].as_str().unwrap().contains(says), "{v}");
    };
    for _ in 0..2 {
        assert_eq!(join(&a).await.unwrap().status().as_u16(), 200);
    }
    // Meeting a has had its burst; b has not.
    limited(join(&a).await.unwrap(), "to meeting").await;
    assert_eq!(join(&b).await.unwrap().status().as_u16(), 200);
    // And now this address has had its 4.
    limited(join(&b).await.unwrap(), "this address").await;
    let text = crate::metrics_text(&base).await;
    assert_eq!(
        harness::metric_sum(
            &text,
            "fjord_controller_joins_total",
            &[("result", "limited")]
        ),
        2.0,
        "{text}"
    );
}
