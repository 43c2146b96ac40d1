//! Talking to the controller and the media node: the controller's calls (create a
//! meeting, join), the signaling WebSocket (over TLS for `wss://`) and its messages (the
//! `signaling` crate's [`ClientMsg`] and [`ServerMsg`]), and answering the node's offers
//! and applying its answers.
use std::sync::Arc;

use anyhow::{Context, bail};
use futures::StreamExt;
use rtc::peer_connection::sdp::RTCSessionDescription;
use serde_json::{Value, json};
use signaling::{ClientMsg, ServerMsg, Waiting, Welcome};
use tokio_tungstenite::tungstenite::Message;
use webrtc::peer_connection::PeerConnection;

use super::BotConfig;

/// A call the controller refused: its status and its `{error, message}` (a gateway maps
/// them to its own protocol's answers).
#[derive(Debug, Clone)]
pub struct Refused {
    pub what: String,
    pub status: reqwest::StatusCode,
    pub code: String,
    pub message: String,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} refused ({}): {}",
            self.what, self.status, self.message
        )
    }
}

impl std::error::Error for Refused {}

/// Error for a refused call: the controller's `{error, message}`.
async fn refused(what: &str, resp: reqwest::Response) -> anyhow::Error {
    let status = resp.status();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    anyhow::Error::new(Refused {
        what: what.to_owned(),
        status,
        code: body["error"].as_str().unwrap_or_default().to_owned(),
        message: body["message"].as_str().unwrap_or("no message").to_owned(),
    })
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
    Reply(ClientMsg),
    /// An answer, applied.
    Applied,
    /// Not an offer or answer.
    Other,
}

/// Answers the node's offers and applies its answers.
pub(super) async fn negotiate(
    pc: &dyn PeerConnection,
    msg: &ServerMsg,
) -> anyhow::Result<Negotiation> {
    match msg {
        ServerMsg::Answer { sdp } => {
            pc.set_remote_description(RTCSessionDescription::answer(sdp.clone())?)
                .await?;
            Ok(Negotiation::Applied)
        }
        ServerMsg::Offer { sdp } => {
            pc.set_remote_description(RTCSessionDescription::offer(sdp.clone())?)
                .await?;
            let answer = pc.create_answer(None).await?;
            pc.set_local_description(answer.clone()).await?;
            Ok(Negotiation::Reply(ClientMsg::Answer { sdp: answer.sdp }))
        }
        _ => Ok(Negotiation::Other),
    }
}

/// The node's `welcome`, read from its first message after the waiting room.
pub fn welcome_of(msg: ServerMsg) -> anyhow::Result<Welcome> {
    match msg {
        ServerMsg::Welcome(w) => Ok(w),
        other => bail!("expected welcome, got {other:?}"),
    }
}

/// The signaling WebSocket.
pub(crate) type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A signaling session as [`open_signaling`] leaves it: welcomed, nothing else read.
pub(crate) struct Opened {
    /// The controller's join answer (its HTTP API's JSON: token, signaling URL, ids).
    pub(crate) joined: Value,
    pub(crate) welcome: Welcome,
    /// When we waited in the waiting room first.
    pub(crate) waited: Option<Waiting>,
    pub(crate) ws: Ws,
}

/// Joins `meeting` through the controller and opens the signaling WebSocket the answer
/// names; returns the join response, the node's `welcome` (and `waiting`, if we waited)
/// and the socket.
pub(crate) async fn open_signaling(
    cfg: &BotConfig,
    lost_node: Option<&str>,
) -> anyhow::Result<Opened> {
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
    let joined: Value = resp.json().await.context("join response")?;
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
    let mut first = next_msg(&mut ws).await?;
    // In a meeting with a waiting room, the node says so and the welcome comes once a
    // host lets us in (or `closed`, if one turns us away).
    let mut waited = None;
    if let ServerMsg::Waiting(w) = first {
        waited = Some(w);
        first = next_msg(&mut ws).await?;
    }
    Ok(Opened {
        joined,
        welcome: welcome_of(first)?,
        waited,
        ws,
    })
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

/// The next message of a signaling WebSocket. A text the node sends that is not a
/// [`ServerMsg`] is an error that quotes it.
pub async fn next_msg<S>(rx: &mut S) -> anyhow::Result<ServerMsg>
where
    S: futures::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    read_msg(&next_text(rx).await?)
}

/// `text` (a signaling text frame) as a [`ServerMsg`], or an error that quotes it.
pub(crate) fn read_msg(text: &str) -> anyhow::Result<ServerMsg> {
    serde_json::from_str(text)
        .with_context(|| format!("the node sent a message that is not a ServerMsg: {text}"))
}

/// The next text frame of a signaling WebSocket; an error once it closed or failed.
pub(crate) async fn next_text<S>(rx: &mut S) -> anyhow::Result<String>
where
    S: futures::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        match rx.next().await {
            Some(Ok(Message::Text(t))) => return Ok(t.as_str().to_owned()),
            Some(Ok(Message::Close(_))) | None => bail!("signaling closed"),
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(e.into()),
        }
    }
}

/// `msg` as its text frame.
pub(crate) fn frame(msg: &ClientMsg) -> Message {
    Message::Text(
        serde_json::to_string(msg)
            .expect("a ClientMsg always serialises")
            .into(),
    )
}
