//! A client of Janus's HTTP API and its VideoRoom plugin, enough for the lean load
//! generator to publish and subscribe through Janus as it does through Fjord: one
//! session, a handle per PeerConnection, and one long poll that hands each handle its
//! events.
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// How long a request waits for the event that answers it.
const EVENT_TIMEOUT: Duration = Duration::from_secs(15);

type Routes = Arc<Mutex<HashMap<u64, mpsc::UnboundedSender<Value>>>>;

/// A Janus session: its handles' events arrive through one long poll. Destroyed (on
/// the server too) by [`Session::destroy`].
pub struct Session {
    http: reqwest::Client,
    /// `<api>/<session id>`.
    url: String,
    routes: Routes,
    stop: CancellationToken,
}

/// A handle attached to the VideoRoom plugin: one PeerConnection.
pub struct Handle {
    http: reqwest::Client,
    /// `<session url>/<handle id>`.
    url: String,
    events: mpsc::UnboundedReceiver<Value>,
}

/// A transaction id.
fn tx() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// POSTs `body` to `url` and returns the reply, or the error Janus gave.
async fn post(http: &reqwest::Client, url: &str, mut body: Value) -> anyhow::Result<Value> {
    body["transaction"] = tx().into();
    let reply: Value = http
        .post(url)
        .json(&body)
        .send()
        .await
        .with_context(|| format!("POST {url}"))?
        .error_for_status()?
        .json()
        .await?;
    if reply["janus"] == "error" {
        bail!("janus: {}", reply["error"]);
    }
    Ok(reply)
}

impl Session {
    /// Creates a session on the Janus whose API is at `api` (`http://…/janus`).
    pub async fn create(api: &str) -> anyhow::Result<Session> {
        let http = reqwest::Client::new();
        let reply = post(&http, api, json!({ "janus": "create" })).await?;
        let id = reply["data"]["id"]
            .as_u64()
            .context("no session id in Janus's reply")?;
        let session = Session {
            url: format!("{api}/{id}"),
            http,
            routes: Arc::default(),
            stop: CancellationToken::new(),
        };
        tokio::spawn(poll(
            session.http.clone(),
            session.url.clone(),
            session.routes.clone(),
            session.stop.clone(),
        ));
        Ok(session)
    }

    /// Attaches a VideoRoom handle.
    pub async fn attach(&self) -> anyhow::Result<Handle> {
        let reply = post(
            &self.http,
            &self.url,
            json!({ "janus": "attach", "plugin": "janus.plugin.videoroom" }),
        )
        .await?;
        let id = reply["data"]["id"]
            .as_u64()
            .context("no handle id in Janus's reply")?;
        let (tx, events) = mpsc::unbounded_channel();
        self.routes.lock().expect("routes").insert(id, tx);
        Ok(Handle {
            http: self.http.clone(),
            url: format!("{}/{id}", self.url),
            events,
        })
    }

    /// Ends the session on the server (its handles and PeerConnections with it).
    pub async fn destroy(self) {
        self.stop.cancel();
        let _ = post(&self.http, &self.url, json!({ "janus": "destroy" })).await;
    }
}

/// The long poll: every event goes to the handle it names. A GET on the session also
/// keeps it alive.
async fn poll(http: reqwest::Client, url: String, routes: Routes, stop: CancellationToken) {
    let get = format!("{url}?maxev=16");
    while !stop.is_cancelled() {
        let reply = tokio::select! {
            _ = stop.cancelled() => return,
            r = http.get(&get).send() => r,
        };
        let events: Value = match reply {
            Ok(r) => match r.json().await {
                Ok(v) => v,
                Err(e) => {
                    tracing::debug!(error = %e, "janus long poll");
                    continue;
                }
            },
            Err(e) => {
                tracing::debug!(error = %e, "janus long poll");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let events = match events {
            Value::Array(a) => a,
            one => vec![one],
        };
        let routes = routes.lock().expect("routes");
        for e in events {
            if let Some(to) = e["sender"].as_u64().and_then(|s| routes.get(&s)) {
                let _ = to.send(e);
            }
        }
    }
}

impl Handle {
    /// Waits for Janus's `webrtcup` on this handle: its PeerConnection is up on Janus's
    /// side too. A publisher's feed cannot be subscribed to before ("No such feed"):
    /// our side's ICE may finish first.
    pub async fn webrtc_up(&mut self) -> anyhow::Result<()> {
        let until = tokio::time::Instant::now() + EVENT_TIMEOUT;
        loop {
            let e = tokio::time::timeout_at(until, self.events.recv())
                .await
                .with_context(|| format!("no webrtcup from Janus within {EVENT_TIMEOUT:?}"))?
                .context("Janus session gone")?;
            match e["janus"].as_str() {
                Some("webrtcup") => return Ok(()),
                Some("hangup") => bail!("janus hung up the PeerConnection: {}", e["reason"]),
                _ => {}
            }
        }
    }

    /// Sends a VideoRoom request (with an SDP, if any) and waits for the plugin's event
    /// that `answers` it (other events, such as news of other publishers, pass by);
    /// fails with the plugin's error if it refused.
    pub async fn request(
        &mut self,
        body: Value,
        jsep: Option<Value>,
        answers: impl Fn(&Value) -> bool,
    ) -> anyhow::Result<Value> {
        let mut msg = json!({ "janus": "message", "body": body });
        if let Some(jsep) = jsep {
            msg["jsep"] = jsep;
        }
        let request = body["request"].clone();
        post(&self.http, &self.url, msg).await?;
        let until = tokio::time::Instant::now() + EVENT_TIMEOUT;
        loop {
            let e = tokio::time::timeout_at(until, self.events.recv())
                .await
                .with_context(|| {
                    format!("no answer from Janus to {request} within {EVENT_TIMEOUT:?}")
                })?
                .context("Janus session gone")?;
            if e["janus"] != "event" {
                // webrtcup, media, slowlink…: not an answer.
                continue;
            }
            let data = &e["plugindata"]["data"];
            if data["error"].is_string() {
                bail!("janus videoroom refused {request}: {}", data["error"]);
            }
            if answers(data) {
                return Ok(e);
            }
        }
    }
}
