//! How a lean peer joins: a Fjord meeting through the controller and the media node's
//! signaling, or Janus's VideoRoom as a publisher or a subscriber; each ends with a
//! [`Runner`] connected and running.
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use serde_json::{Value, json};
use signaling::{ClientMsg, ServerMsg};
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::media::{Direction, MediaKind, Mid, Simulcast, SimulcastLayer};
use str0m::{Candidate, Rtc};
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

use super::publish::{Media, Publish};
use super::runner::{Runner, send};
use super::{Counters, Peer, Server};
use crate::janus;

/// A peer's socket on `ip` and its `Rtc`, in RTP mode, with Opus and VP8 only.
async fn lean_rtc(ip: IpAddr) -> anyhow::Result<(UdpSocket, SocketAddr, Rtc)> {
    let socket = UdpSocket::bind((ip, 0)).await?;
    let local = socket.local_addr()?;
    let mut rtc = Rtc::builder()
        .set_rtp_mode(true)
        .clear_codecs()
        .enable_opus(true, false)
        .enable_vp8(true)
        .build(Instant::now());
    rtc.add_local_candidate(Candidate::host(local, "udp")?);
    Ok((socket, local, rtc))
}

/// An offer, its pending change and the m-lines it adds to send on.
type Offer = (SdpOffer, SdpPendingOffer, Vec<(MediaKind, Mid)>);

/// A publisher's offer: a send-only audio m-line, and a send-only video m-line (in
/// simulcast layers when `media` has them) if it has a camera.
fn publish_offer(rtc: &mut Rtc, media: &Media) -> anyhow::Result<Offer> {
    let mut change = rtc.sdp_api();
    let mut sending = Vec::new();
    let mid = change.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
    sending.push((MediaKind::Audio, mid));
    if media.camera {
        let simulcast = (!media.layers.is_empty()).then(|| {
            let mut s = Simulcast::new();
            for (rid, _) in &media.layers {
                s.add_send_layer(SimulcastLayer::new(rid));
            }
            s
        });
        let mid = change.add_media(MediaKind::Video, Direction::SendOnly, None, None, simulcast);
        sending.push((MediaKind::Video, mid));
    }
    let (offer, pending) = change.apply().context("an offer")?;
    Ok((offer, pending, sending))
}

/// How a lean peer joins a Fjord meeting.
#[derive(Clone, Default)]
pub(super) struct JoinAs {
    pub(super) name: String,
    /// What it sends (None: nothing; it offers to receive audio).
    pub(super) media: Option<Media>,
    /// What it shows, said before its offer (None: the node's default view).
    pub(super) view: Option<signaling::View>,
    pub(super) panelist_key: Option<String>,
    pub(super) counters: Arc<Counters>,
}

/// Joins a Fjord meeting through the controller, opens signaling with the media node,
/// negotiates and waits for ICE; then leaves the peer running in a task of its own.
pub(super) async fn join_fjord(
    server: &Server,
    how: JoinAs,
    stop: CancellationToken,
) -> anyhow::Result<(Peer, tokio::task::JoinHandle<()>)> {
    let JoinAs {
        name,
        media,
        view,
        panelist_key,
        counters,
    } = how;
    let name = name.as_str();
    let Server::Fjord {
        controller,
        meeting,
        region,
    } = server
    else {
        bail!("not a Fjord meeting");
    };
    let started = Instant::now();
    let cfg = crate::BotConfig {
        controller: controller.clone(),
        meeting: meeting.clone(),
        name: name.to_owned(),
        password: None,
        host_key: None,
        panelist_key,
        registrant_key: None,
        region: region.clone(),
        publish: None,
        signal_ca: None,
        view: None,
    };
    let mut ws = crate::client::open_signaling(&cfg, None).await?.ws;
    let (socket, local, mut rtc) = lean_rtc(Ipv4Addr::LOCALHOST.into()).await?;
    let (offer, pending, sending) = if let Some(media) = &media {
        publish_offer(&mut rtc, media)?
    } else {
        // Something to negotiate, so that the connection comes up before anyone else's
        // tracks are offered.
        let mut change = rtc.sdp_api();
        change.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None);
        let (offer, pending) = change.apply().context("an offer")?;
        (offer, pending, Vec::new())
    };
    if let Some(view) = view {
        send(&mut ws, &ClientMsg::View(view)).await?;
    }
    send(
        &mut ws,
        &ClientMsg::Offer {
            sdp: offer.to_sdp_string(),
        },
    )
    .await?;
    // What comes before the answer (the room, the board, others joining) does not
    // concern a lean peer.
    let answer = loop {
        let msg = crate::client::next_msg(&mut ws).await?;
        counters
            .signals
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        match msg {
            ServerMsg::Answer { sdp } => break sdp,
            ServerMsg::Error {
                in_reply_to,
                message,
            } => {
                bail!("the node refused our {in_reply_to}: {message}")
            }
            _ => {}
        }
    };
    let answer = SdpAnswer::from_sdp_string(&answer).context("the node's answer")?;
    rtc.sdp_api()
        .accept_answer(pending, answer)
        .context("accepting the answer")?;
    Runner::new(
        started,
        (socket, local, rtc),
        Some(ws),
        counters,
        media.map(|m| Publish::new(m, sending)),
    )
    .connect(stop)
    .await
}

/// Where the peers of a Janus load join, and from which address.
pub(super) struct JanusRoom {
    pub(super) session: janus::Session,
    pub(super) room: u64,
    pub(super) peers_at: IpAddr,
}

/// Joins Janus's VideoRoom as a publisher (join, then publish with an offer) and waits
/// for ICE; returns the peer, its task and its feed id.
pub(super) async fn janus_publish(
    janus: &JanusRoom,
    name: &str,
    media: Media,
    stop: CancellationToken,
) -> anyhow::Result<((Peer, tokio::task::JoinHandle<()>), u64)> {
    let started = Instant::now();
    let mut handle = janus.session.attach().await?;
    let joined = handle
        .request(
            json!({ "request": "join", "ptype": "publisher", "room": janus.room, "display": name }),
            None,
            |d| d["videoroom"] == "joined",
        )
        .await?;
    let feed = joined["plugindata"]["data"]["id"]
        .as_u64()
        .context("no publisher id in Janus's joined event")?;
    let (socket, local, mut rtc) = lean_rtc(janus.peers_at).await?;
    let (offer, pending, sending) = publish_offer(&mut rtc, &media)?;
    let configured = handle
        .request(
            json!({ "request": "publish" }),
            Some(json!({ "type": "offer", "sdp": offer.to_sdp_string() })),
            |d| d["configured"] == "ok",
        )
        .await?;
    let answer = SdpAnswer::from_sdp_string(
        configured["jsep"]["sdp"]
            .as_str()
            .context("no SDP answer in Janus's configured event")?,
    )
    .context("Janus's answer")?;
    rtc.sdp_api()
        .accept_answer(pending, answer)
        .context("accepting Janus's answer")?;
    let joined = Runner::new(
        started,
        (socket, local, rtc),
        None,
        Arc::default(),
        Some(Publish::new(media, sending)),
    )
    .connect(stop)
    .await?;
    // Subscribers may ask for the feed once Janus has it up, not when our ICE is.
    handle.webrtc_up().await?;
    Ok((joined, feed))
}

/// Subscribes to `feeds` in Janus's VideoRoom on one PeerConnection (Janus offers, we
/// answer), counting into `counters`, and waits for ICE.
pub(super) async fn janus_subscribe(
    janus: &JanusRoom,
    feeds: &[u64],
    counters: Arc<Counters>,
    stop: CancellationToken,
) -> anyhow::Result<(Peer, tokio::task::JoinHandle<()>)> {
    let started = Instant::now();
    let mut handle = janus.session.attach().await?;
    let streams: Vec<Value> = feeds.iter().map(|f| json!({ "feed": f })).collect();
    let attached = handle
        .request(
            json!({ "request": "join", "ptype": "subscriber", "room": janus.room, "streams": streams }),
            None,
            |d| d["videoroom"] == "attached",
        )
        .await?;
    let offer = SdpOffer::from_sdp_string(
        attached["jsep"]["sdp"]
            .as_str()
            .context("no SDP offer in Janus's attached event")?,
    )
    .context("Janus's offer")?;
    let (socket, local, mut rtc) = lean_rtc(janus.peers_at).await?;
    let answer = rtc
        .sdp_api()
        .accept_offer(offer)
        .context("accepting Janus's offer")?;
    handle
        .request(
            json!({ "request": "start" }),
            Some(json!({ "type": "answer", "sdp": answer.to_sdp_string() })),
            |d| d["started"] == "ok",
        )
        .await?;
    Runner::new(started, (socket, local, rtc), None, counters, None)
        .connect(stop)
        .await
}
