//! Registration with manual approval, the hosts' exports of registrants and of who
//! actually attended (written by the media nodes as participants come and go), and their
//! deletion with the meeting when its retention is over.
use std::time::Duration;

use harness::eventually;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::Api;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_manual_approval_only_approved_registrants_join_and_the_exports_list_exactly_who_registered_and_attended()
 {
    // Personal data is kept 3 s after the meeting ends (30 days by default).
    let c = harness::Cluster::start(harness::ClusterSpec {
        controller_extra: Some(json!({ "retention_secs": 3 })),
        ..crate::spec()
    })
    .await
    .unwrap();
    let api = Api::new(&c);
    let base = c.controllers[0].url();
    let (st, m) = api
        .send(
            api.http
                .post(format!("{base}/v1/meetings"))
                .bearer_auth(&api.key)
                .json(&json!({
                    "title": "Thesis defence",
                    "waiting_room": false,
                    "registration": { "approval": "manual", "questions": ["Affiliation?"] },
                })),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{m}");
    assert_eq!(m["registration"]["approval"], "manual", "{m}");
    let id = m["id"].as_str().unwrap().to_owned();
    let host_key = m["host_key"].as_str().unwrap().to_owned();
    let post = |path: String, body: Value, key: Option<&str>| {
        let mut req = api
            .http
            .post(format!("{base}/v1/meetings/{id}{path}"))
            .json(&body);
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        api.send(req)
    };

    // Three register; bad registrations are refused saying why.
    let mut people = Vec::new();
    for (name, email, affiliation) in [
        ("Ada Lovelace", "ada@uni.no", "UiO"),
        ("Bo Berg", "bo@uni.no", "NTNU"),
        ("Cy Dahl", "cy@uni.no", "UiB"),
    ] {
        let (st, r) = post(
            "/registrants".into(),
            json!({ "name": name, "email": email, "answers": [affiliation] }),
            None,
        )
        .await;
        assert_eq!(st, StatusCode::CREATED, "{r}");
        assert_eq!(r["state"], "pending", "{r}");
        assert!(
            r["join_url"].as_str().unwrap().contains("registrant_key="),
            "{r}"
        );
        people.push(r);
    }
    for (body, status, says) in [
        (
            json!({ "name": "X", "email": "not-an-address", "answers": ["a"] }),
            StatusCode::BAD_REQUEST,
            "email",
        ),
        (
            json!({ "name": "X", "email": "x@uni.no", "answers": [] }),
            StatusCode::BAD_REQUEST,
            "answers",
        ),
        (
            json!({ "name": "Ada again", "email": "ADA@uni.no", "answers": ["a"] }),
            StatusCode::CONFLICT,
            "registered",
        ),
    ] {
        let (st, e) = post("/registrants".into(), body, None).await;
        assert_eq!(st, status, "{e}");
        assert!(e["message"].as_str().unwrap().contains(says), "{e}");
    }
    let key = |i: usize| people[i]["registrant_key"].as_str().unwrap().to_owned();
    let rid = |i: usize| people[i]["registrant_id"].as_str().unwrap().to_owned();

    // Only a host decides: Ada approved, Bo rejected, Cy left pending.
    let (st, _) = post(
        format!("/registrants/{}/approve", rid(0)),
        json!({}),
        Some(&key(0)),
    )
    .await;
    assert_eq!(
        st,
        StatusCode::FORBIDDEN,
        "a registrant's own key decides nothing"
    );
    for (i, verb, state) in [(0, "approve", "approved"), (1, "reject", "rejected")] {
        let (st, r) = post(
            format!("/registrants/{}/{verb}", rid(i)),
            json!({}),
            Some(&host_key),
        )
        .await;
        assert_eq!(
            (st, r["state"].as_str()),
            (StatusCode::OK, Some(state)),
            "{r}"
        );
    }

    // Who may join: not without a registration, not pending, not rejected, not with a
    // forged key; the approved one, under the registered name.
    let join = |body: Value| post("/join".into(), body, None);
    for (body, code) in [
        (json!({ "name": "Gate crasher" }), "registration_required"),
        (
            json!({ "name": "Cy", "registrant_key": key(2) }),
            "registration_pending",
        ),
        (
            json!({ "name": "Bo", "registrant_key": key(1) }),
            "registration_rejected",
        ),
        (
            json!({ "name": "Ada", "registrant_key": format!("{}.forged", rid(0)) }),
            "registration_unknown",
        ),
    ] {
        let (st, e) = join(body).await;
        assert_eq!(
            (st, e["error"].as_str()),
            (StatusCode::FORBIDDEN, Some(code)),
            "{e}"
        );
    }
    let host = crate::hosts::host(&base, &id, &host_key, None, 440).await;
    let cfg = bot::BotConfig {
        registrant_key: Some(key(0)),
        ..crate::bot_config(
            &base,
            &id,
            "Someone else",
            None,
            Some(crate::hosts::clip(550)),
        )
    };
    let ada_came = now_ms();
    let ada = bot::Bot::join(cfg, Duration::from_secs(20)).await.unwrap();
    let ada_in = now_ms();
    assert_eq!(
        ada.welcome.name, "Ada Lovelace",
        "the registered name: {:?}",
        ada.welcome
    );
    let (ada_id, ada_node) = (ada.participant_id.clone(), ada.node_id.clone());
    let export = |what: &str, format: &str| {
        let req = api
            .http
            .get(format!("{base}/v1/meetings/{id}/{what}?format={format}"))
            .bearer_auth(&host_key);
        async move {
            let resp = req.send().await.unwrap();
            assert_eq!(resp.status(), StatusCode::OK);
            resp.text().await.unwrap()
        }
    };
    // Ada leaves once her arrival is on record.
    eventually(
        Duration::from_secs(10),
        "Ada's arrival is recorded",
        || async {
            let v: Value = serde_json::from_str(&export("participants", "json").await).unwrap();
            v["participants"]
                .as_array()?
                .iter()
                .any(|p| p["participant_id"] == ada_id.as_str())
                .then_some(())
        },
    )
    .await
    .unwrap();
    // She stays two seconds in all: longer than the exports' tolerance, so that her
    // arrival and departure cannot be told apart by mistake.
    let stayed = Duration::from_millis(u64::try_from(now_ms() - ada_in).unwrap_or(0));
    tokio::time::sleep(Duration::from_secs(2).saturating_sub(stayed)).await;
    let ada_went = now_ms();
    ada.leave().await;

    // The exports: exactly the three registrants with their states and answers, and the
    // two who attended, Ada with her registration and her times within 2 s.
    let regs: Value = serde_json::from_str(&export("registrants", "json").await).unwrap();
    let states: Vec<(String, String, String)> = regs["registrants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().into(),
                r["state"].as_str().unwrap().into(),
                r["answers"][0].as_str().unwrap().into(),
            )
        })
        .collect();
    let mut want = vec![
        ("Ada Lovelace".into(), "approved".into(), "UiO".into()),
        ("Bo Berg".into(), "rejected".into(), "NTNU".into()),
        ("Cy Dahl".into(), "pending".into(), "UiB".into()),
    ];
    let mut got = states.clone();
    got.sort();
    want.sort();
    assert_eq!(got, want, "{regs}");
    let csv = export("registrants", "csv").await;
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 4, "{csv}");
    assert_eq!(
        lines[0],
        "registrant_id,name,email,state,registered_unix_ms,decided_unix_ms,Affiliation?"
    );

    let attended = eventually(
        Duration::from_secs(10),
        "Ada's departure is recorded",
        || async {
            let v: Value = serde_json::from_str(&export("participants", "json").await).unwrap();
            let list = v["participants"].as_array().cloned().unwrap_or_default();
            list.iter()
                .any(|p| p["participant_id"] == ada_id.as_str() && !p["left_unix_ms"].is_null())
                .then_some(list)
        },
    )
    .await
    .unwrap();
    assert_eq!(attended.len(), 2, "{attended:?}");
    let a = attended
        .iter()
        .find(|p| p["participant_id"] == ada_id.as_str())
        .unwrap();
    assert_eq!(a["name"], "Ada Lovelace");
    assert_eq!(a["registrant_id"], rid(0).as_str());
    assert_eq!(a["node_id"], ada_node.as_str());
    let joined = a["joined_unix_ms"].as_i64().unwrap();
    let left = a["left_unix_ms"].as_i64().unwrap();
    assert!(
        joined >= ada_came - 2000 && joined <= ada_in + 2000,
        "joined {joined}, came {ada_came}..{ada_in}"
    );
    assert!(
        (left - ada_went).abs() <= 2000,
        "left {left}, went {ada_went}"
    );
    let h = attended
        .iter()
        .find(|p| p["participant_id"] == host.participant_id.as_str())
        .unwrap();
    assert!(
        h["registrant_id"].is_null() && h["left_unix_ms"].is_null(),
        "{h}"
    );
    assert_eq!(h["role"], "host");
    let csv = export("participants", "csv").await;
    assert_eq!(csv.lines().count(), 3, "{csv}");

    // Over a date range, the operator's export has this meeting with the same two.
    let range: Value = api
        .http
        .get(format!(
            "{base}/v1/participants?from={}&to={}",
            ada_came - 60_000,
            now_ms()
        ))
        .bearer_auth(&api.key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let this = range["meetings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["meeting_id"] == id.as_str())
        .unwrap_or_else(|| panic!("{range}"));
    assert_eq!(this["participants"].as_array().unwrap().len(), 2, "{range}");

    // Exports are for hosts: a registrant's key or nothing gets nothing.
    for auth in [Some(key(0)), None] {
        let mut req = api
            .http
            .get(format!("{base}/v1/meetings/{id}/participants"));
        if let Some(k) = auth {
            req = req.bearer_auth(k);
        }
        let st = req.send().await.unwrap().status();
        assert!(
            st == StatusCode::FORBIDDEN || st == StatusCode::UNAUTHORIZED,
            "{st}"
        );
    }

    // Approved later, Cy gets in with the same link.
    let (st, _) = post(
        format!("/registrants/{}/approve", rid(2)),
        json!({}),
        Some(&host_key),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    let (st, j) = join(json!({ "name": "Cy", "registrant_key": key(2) })).await;
    assert_eq!(st, StatusCode::OK, "{j}");

    // Ended, the meeting says when its personal data goes, and then it is gone: the
    // meeting, its registrants and its attendance.
    let resp = api
        .http
        .delete(format!("{base}/v1/meetings/{id}"))
        .bearer_auth(&host_key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let ended: Value = resp.json().await.unwrap();
    let deleted_after = ended["personal_data_deleted_after_unix_ms"]
        .as_i64()
        .unwrap();
    assert!((deleted_after - now_ms() - 3000).abs() < 2000, "{ended}");
    eventually(
        Duration::from_secs(15),
        "the meeting and its personal data are deleted",
        || async {
            let statuses = futures::future::join_all(["registrants", "participants"].map(|what| {
                api.http
                    .get(format!("{base}/v1/meetings/{id}/{what}"))
                    .bearer_auth(&api.key)
                    .send()
            }))
            .await;
            statuses
                .iter()
                .all(|r| {
                    r.as_ref()
                        .is_ok_and(|r| r.status() == StatusCode::NOT_FOUND)
                })
                .then_some(())
        },
    )
    .await
    .unwrap();
    let mut etcd = etcd_client::Client::connect(c.etcd.endpoints(), None)
        .await
        .unwrap();
    let left = etcd
        .get(
            format!("/fjord/meetings/{id}"),
            Some(etcd_client::GetOptions::new().with_prefix()),
        )
        .await
        .unwrap();
    let keys: Vec<&str> = left
        .kvs()
        .iter()
        .filter_map(|kv| kv.key_str().ok())
        .collect();
    assert!(keys.is_empty(), "left in etcd: {keys:?}");
}
