//! Talking to the controller and the media node: the controller's calls (create a
//! meeting, join), the signaling WebSocket (over TLS for `wss://`) and its JSON messages,
//! and answering the node's offers and applying its answers.
use std::sync::Arc;

use anyhow::{Context, bail};
use futures::StreamExt;
use rtc::peer_connection::sdp::RTCSessionDescription;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use webrtc::peer_connection::PeerConnection;

use super::BotConfig;

/// Error for a refused call: the controller's `{error, message}`.
async fn refused(what: &str, resp: reqwest::Response) -> anyhow::Error {
    let status = resp.status();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    anyhow::anyhow!(
        "{what} refused ({status}): {}",
        body["message"].as_str().unwrap_or("no message")
    )
}

/// Creates a meeting (an operator call: `POST /v1/meetings` with `body`); returns its id.
/// Without a waiting room unless `body` asks for one: bots have no host to admit them.
pub async fn create_meeting(
    http: &reqwest::Client,
    controller: &str,
    operator_key: &str,
    body: &Value,
) -> anyhow::Result<String> {
    let created = create_meeting_answer(http, controller, operator_key, body).await?;
    created["id"]
        .as_str()
        .map(str::to_owned)
        .context("create response without id")
}

/// [`create_meeting`], returning the controller's whole answer (with the host key).
pub async fn create_meeting_answer(
    http: &reqwest::Client,
    controller: &str,
    operator_key: &str,
    body: &Value,
) -> anyhow::Result<Value> {
    let mut body = body.clone();
    if body.get("waiting_room").is_none() {
        body["waiting_room"] = false.into();
    }
    let resp = http
        .post(format!("{}/v1/meetings", controller.trim_end_matches('/')))
        .bearer_auth(operator_key)
        .json(&body)
        .send()
        .await
        .context("reach the controller")?;
    if !resp.status().is_success() {
        return Err(refused("creating the meeting", resp).await);
    }
    resp.json().await.context("create response")
}

/// What [`negotiate`] made of a message from the node.
pub(super) enum Negotiation {
    /// Send this back.
    Reply(Value),
    /// An answer, applied.
    Applied,
    /// Not an offer or answer.
    Other,
}

/// Answers the node's offers and applies its answers.
pub(super) async fn negotiate(pc: &dyn PeerConnection, msg: &Value) -> anyhow::Result<Negotiation> {
    let sdp = || msg["sdp"].as_str().unwrap_or_default().to_owned();
    match msg["type"].as_str() {
        Some("answer") => {
            pc.set_remote_description(RTCSessionDescription::answer(sdp())?)
                .await?;
            Ok(Negotiation::Applied)
        }
        Some("offer") => {
            pc.set_remote_description(RTCSessionDescription::offer(sdp())?)
                .await?;
            let answer = pc.create_answer(None).await?;
            pc.set_local_description(answer.clone()).await?;
            Ok(Negotiation::Reply(
                json!({ "type": "answer", "sdp": answer.sdp }),
            ))
        }
        _ => Ok(Negotiation::Other),
    }
}

/// Joins `meeting` through the controller and opens the signaling WebSocket the answer
/// names; returns the join response, with the node's `welcome` under `"welcome"`, and
/// the socket.
pub(crate) async fn open_signaling(
    cfg: &BotConfig,
    lost_node: Option<&str>,
) -> anyhow::Result<(
    Value,
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
)> {
    let http = reqwest::Client::new();
    let resp = http
        .post(format!(
            "{}/v1/meetings/{}/join",
            cfg.controller.trim_end_matches('/'),
            cfg.meeting,
        ))
        .json(&json!({
            "name": cfg.name,
            "password": cfg.password,
            "host_key": cfg.host_key,
            "panelist_key": cfg.panelist_key,
            "registrant_key": cfg.registrant_key,
            "region": cfg.region,
            "lost_node": lost_node,
        }))
        .send()
        .await
        .context("reach the controller")?;
    if !resp.status().is_success() {
        return Err(refused("join", resp).await);
    }
    let mut joined: Value = resp.json().await.context("join response")?;
    let field = |k: &str| -> anyhow::Result<String> {
        joined[k]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("join response without {k}"))
    };
    let url = format!("{}?token={}", field("signal_url")?, field("token")?);
    let connector = if url.starts_with("wss://") {
        Some(tls_connector(cfg.signal_ca.as_deref().map(Vec::as_slice))?)
    } else {
        None
    };
    let (mut ws, _) =
        tokio_tungstenite::connect_async_tls_with_config(&url, None, false, connector)
            .await
            .context("open the signaling WebSocket")?;
    let mut welcome = next_json(&mut ws).await?;
    // In a meeting with a waiting room, the node says so and the welcome comes once a
    // host lets us in (or `closed`, if one turns us away).
    if welcome["type"] == "waiting" {
        joined["waited"] = welcome;
        welcome = next_json(&mut ws).await?;
    }
    if welcome["type"] != "welcome" {
        bail!("expected welcome, got {welcome}");
    }
    joined["welcome"] = welcome;
    Ok((joined, ws))
}

/// TLS for `wss://` signaling: the system's roots (Debian's ca-certificates) and
/// `extra_ca`, for a cluster whose certificates a private CA signs.
fn tls_connector(extra_ca: Option<&[u8]>) -> anyhow::Result<tokio_tungstenite::Connector> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    // A system store that cannot be read leaves only `extra_ca`; a missing root then
    // shows as the handshake's "unknown issuer".
    let system = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(system.certs);
    if let Some(pem) = extra_ca {
        for c in CertificateDer::pem_slice_iter(pem) {
            roots
                .add(c.context("the signaling CA file")?)
                .context("the signaling CA certificate")?;
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .context("TLS versions")?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(tokio_tungstenite::Connector::Rustls(Arc::new(config)))
}

/// The next text message of a signaling WebSocket, as JSON.
pub async fn next_json<S>(rx: &mut S) -> anyhow::Result<Value>
where
    S: futures::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        match rx.next().await {
            Some(Ok(Message::Text(t))) => return Ok(serde_json::from_str(&t)?),
            Some(Ok(Message::Close(_))) | None => bail!("signaling closed"),
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(e.into()),
        }
    }
}
