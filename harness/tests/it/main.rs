//! Integration tests: a real etcd and real Fjord processes per test, on loopback.
//! Build the binaries first: `cargo build --workspace --bins` (scripts/test.sh does).

mod accounts;
mod api;
mod binaries;
mod browser;
mod calendar;
mod cascade;
mod chart;
mod collab;
mod dashboards;
mod drain;
mod drill;
mod failover;
mod fuzz;
mod hosts;
mod i18n;
mod logs;
mod media;
mod meeting_page;
mod mtls;
mod outage;
mod portal;
mod portal_forms;
mod race;
mod recording;
mod registration;
mod residency;
mod roster;
mod sip;
mod slots;
mod tokens;
mod turn;
mod usage;
mod webinar;
mod wss;

use std::time::Duration;

use harness::{Cluster, ClusterSpec, NodeSpec};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// A runtime for a test that must start synchronously (it re-runs itself inside a
/// network namespace first).
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap()
}

/// Lease TTL used by the tests: short, so failure tests are quick.
pub const TTL: u64 = 3;

pub fn spec() -> ClusterSpec {
    ClusterSpec {
        lease_ttl_secs: TTL,
        recording: vec![],
        // Tests join many peers from 127.0.0.1; `api::joins_over_the_rate_*` sets limits.
        join_limits: harness::no_join_limits(),
        ..ClusterSpec::local()
    }
}

/// [`spec`] with 30 s node leases: a test that sees a dead node noticed within a few
/// seconds shows the leader's heartbeat watch did it, not the lease.
pub fn long_lease_spec() -> ClusterSpec {
    ClusterSpec {
        lease_ttl_secs: 30,
        ..spec()
    }
}

pub fn node(id: &str, region: &str) -> NodeSpec {
    NodeSpec {
        id: id.into(),
        region: region.into(),
        capacity: 200,
    }
}

/// [`spec`] with two media nodes, `media-oslo-1` in `oslo` and `media-bergen-1` in
/// `bergen`, each region the other's fallback.
pub fn oslo_and_bergen() -> ClusterSpec {
    ClusterSpec {
        media: vec![
            node("media-oslo-1", "oslo"),
            node("media-bergen-1", "bergen"),
        ],
        regions: vec![
            ("oslo".into(), vec!["bergen".into()]),
            ("bergen".into(), vec!["oslo".into()]),
        ],
        ..spec()
    }
}

/// How a webrtc-rs bot joins `meeting` (from `region`, if given), publishing `clip` or
/// only listening.
pub fn bot_config(
    base: &str,
    meeting: &str,
    name: &str,
    region: Option<&str>,
    clip: Option<bot::ClipSpec>,
) -> bot::BotConfig {
    let publish = clip.map(|c| std::sync::Arc::new(bot::media::encode(&c).unwrap()));
    bot::BotConfig {
        controller: base.into(),
        meeting: meeting.into(),
        name: name.into(),
        password: None,
        host_key: None,
        panelist_key: None,
        registrant_key: None,
        region: region.map(str::to_owned),
        publish,
        signal_ca: None,
        view: None,
    }
}

/// A webrtc-rs bot joined to `meeting` (from `region`, if given), publishing `clip` or
/// only listening.
pub async fn join_bot(
    base: &str,
    meeting: &str,
    name: &str,
    region: Option<&str>,
    clip: Option<bot::ClipSpec>,
) -> bot::Bot {
    let cfg = bot_config(base, meeting, name, region, clip);
    bot::Bot::join(cfg, Duration::from_secs(20)).await.unwrap()
}

pub struct Api {
    pub http: reqwest::Client,
    pub key: String,
}

impl Api {
    pub fn new(c: &Cluster) -> Self {
        Self {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
            key: c.operator_key.clone(),
        }
    }

    /// Creates a meeting; without a waiting room unless `body` asks for one (the bots
    /// and pages of most tests have no host to let them in).
    pub async fn create(&self, base: &str, mut body: Value) -> String {
        if body.get("waiting_room").is_none() {
            body["waiting_room"] = false.into();
        }
        let (st, v) = self
            .send(
                self.http
                    .post(format!("{base}/v1/meetings"))
                    .bearer_auth(&self.key)
                    .json(&body),
            )
            .await;
        assert_eq!(st, StatusCode::CREATED, "create meeting: {v}");
        v["id"].as_str().unwrap().to_owned()
    }

    pub async fn join(&self, base: &str, meeting: &str, body: Value) -> (StatusCode, Value) {
        self.send(
            self.http
                .post(format!("{base}/v1/meetings/{meeting}/join"))
                .json(&body),
        )
        .await
    }

    pub async fn join_from(&self, base: &str, meeting: &str, region: &str) -> Value {
        let (st, v) = self
            .join(base, meeting, json!({ "name": "Ada", "region": region }))
            .await;
        assert_eq!(st, StatusCode::OK, "join {meeting} from {region}: {v}");
        v
    }

    /// An operator call without a body.
    pub async fn operator(&self, method: reqwest::Method, url: String) -> (StatusCode, Value) {
        self.send(self.http.request(method, url).bearer_auth(&self.key))
            .await
    }

    pub async fn send(&self, req: reqwest::RequestBuilder) -> (StatusCode, Value) {
        let resp = req.send().await.expect("request");
        let st = resp.status();
        let text = resp.text().await.unwrap_or_default();
        (
            st,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn nodes(&self, base: &str) -> Vec<Value> {
        let (st, v) = self
            .operator(reqwest::Method::GET, format!("{base}/v1/nodes"))
            .await;
        assert_eq!(st, StatusCode::OK, "{v}");
        v["nodes"].as_array().unwrap().clone()
    }
}

/// The meeting's placements straight from etcd: slot (`oslo`, or `oslo/1` for a node it
/// spilled over to) -> node id.
pub async fn placements(c: &Cluster, meeting: &str) -> std::collections::BTreeMap<String, String> {
    c.placements(meeting).await.unwrap()
}

/// A signaling WebSocket.
pub type Session =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens the signaling WebSocket a join answer points at, and reads the `welcome`.
pub async fn open_session(joined: &Value) -> (Session, bot::Welcome) {
    use futures::StreamExt;
    let url = format!(
        "{}?token={}",
        joined["signal_url"].as_str().unwrap(),
        joined["token"].as_str().unwrap()
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(&url)
        .await
        .expect("signaling session admitted");
    let welcome = ws.next().await.expect("a welcome").expect("a message");
    let welcome = welcome.to_text().unwrap();
    let msg: signaling::ServerMsg = serde_json::from_str(welcome)
        .unwrap_or_else(|e| panic!("not a ServerMsg ({e}): {welcome}"));
    let welcome = bot::client::welcome_of(msg).unwrap_or_else(|e| panic!("{e:#}"));
    (ws, welcome)
}

/// The next message on a raw signaling session, as the node's message it must be.
pub async fn next_msg(ws: &mut Session) -> signaling::ServerMsg {
    use futures::StreamExt;
    loop {
        let m = tokio::time::timeout(Duration::from_secs(15), ws.next())
            .await
            .expect("a message within 15 s")
            .expect("the session is open")
            .expect("a message");
        if let Ok(t) = m.to_text()
            && !t.is_empty()
        {
            return serde_json::from_str(t)
                .unwrap_or_else(|e| panic!("not a ServerMsg ({e}): {t}"));
        }
    }
}

/// The Prometheus text a binary serves at `base`/metrics.
pub async fn metrics_text(base: &str) -> String {
    reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Waits (up to the lease TTL + 2 s) until no placement of `meetings` names `node`.
pub async fn wait_placements_gone(c: &Cluster, meetings: &[String], node: &str, what: &str) {
    harness::eventually(Duration::from_secs(TTL + 2), what, || async {
        for m in meetings {
            if placements(c, m).await.values().any(|n| n == node) {
                return None;
            }
        }
        Some(())
    })
    .await
    .unwrap();
}
