//! The SIP endpoint (UDP, TCP; transactions, dialogs and INVITE sessions are ezk's) and
//! each call's life: an INVITE to `<meeting-id>[.<password>]@…` is checked (the name,
//! the offer), joined to the meeting through the controller (with the caller's display
//! name), answered, and bridged until either side ends it: the caller's BYE makes the
//! participant leave; the meeting ending it (a host removing the participant, the
//! meeting's end) sends the caller a BYE. OPTIONS (room systems' keep-alive) is answered.
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytesstr::BytesStr;
use ezk_sdp_types::SessionDescription;
use ezk_sip_core::{Endpoint, IncomingRequest, Layer, MayTake};
use ezk_sip_types::header::typed::Contact;
use ezk_sip_types::uri::NameAddr;
use ezk_sip_types::uri::{SipUri, SipUriUserPart};
use ezk_sip_types::{Method, StatusCode};
use ezk_sip_ua::dialog::DialogLayer;
use ezk_sip_ua::invite::InviteLayer;
use ezk_sip_ua::{CallEvent, InboundCall, MediaBackend};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};

use crate::config::Config;
use crate::metrics::Metrics;
use crate::{bridge, dial, sdp};

/// Runs the gateway until the process ends.
pub async fn run(cfg: Config) -> anyhow::Result<()> {
    let registry = common::ops::registry(&cfg.name, &cfg.region);
    let mut b = Endpoint::builder();
    b.add_allow(Method::OPTIONS);
    b.user_agent("Fjord SIP gateway");
    b.add_layer(DialogLayer::default());
    b.add_layer(InviteLayer::default());
    let contact: SipUri = format!("sip:fjord@{}", cfg.listen_udp)
        .parse()
        .map_err(|_| anyhow::anyhow!("listen_udp {} makes no SIP URI", cfg.listen_udp))?;
    b.add_layer(Gateway {
        state: Arc::new(State {
            cfg: cfg.clone(),
            contact,
            calls: AtomicUsize::new(0),
            metrics: Metrics::new(&registry),
            invites: std::sync::Mutex::new(common::rate::Limiter::new(cfg.invites_per_address)),
        }),
    });
    b.bind_udp(cfg.listen_udp).await?;
    if let Some(tcp) = cfg.listen_tcp {
        b.listen_tcp(tcp).await?;
    }
    let _endpoint = b.build();
    if let Some(addr) = cfg.metrics_listen {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let ops = common::ops::router(registry, std::sync::Arc::new(|| Ok(())));
        tokio::spawn(async move { axum::serve(listener, ops).await });
    }
    tracing::info!(udp = %cfg.listen_udp, tcp = ?cfg.listen_tcp, controller = %cfg.controller, "SIP gateway ready");
    std::future::pending::<()>().await;
    Ok(())
}

struct State {
    cfg: Config,
    contact: SipUri,
    calls: AtomicUsize,
    metrics: Metrics,
    /// INVITEs by source address.
    invites: std::sync::Mutex<common::rate::Limiter<std::net::IpAddr>>,
}

struct Gateway {
    state: Arc<State>,
}

#[async_trait::async_trait]
impl Layer for Gateway {
    fn name(&self) -> &'static str {
        "fjord-gateway"
    }

    async fn receive(&self, endpoint: &Endpoint, request: MayTake<'_, IncomingRequest>) {
        match request.line.method {
            Method::INVITE => {
                let mut invite = request.take();
                let from = invite.tp_info.source.ip();
                let limited = self
                    .state
                    .invites
                    .lock()
                    .expect("invite limits")
                    .check(from, Instant::now());
                if let Err(wait) = limited {
                    tracing::info!(%from, "INVITE flood: 503");
                    self.state.metrics.calls.with_label_values(&["503"]).inc();
                    let mut response = endpoint.create_response(
                        &invite,
                        StatusCode::SERVICE_UNAVAILABLE,
                        Some(BytesStr::from_static("too many calls from your address")),
                    );
                    response.msg.headers.insert(
                        ezk_sip_types::Name::RETRY_AFTER,
                        (wait.as_secs() + 1).to_string(),
                    );
                    let tsx = endpoint.create_server_inv_tsx(&mut invite);
                    // Its retransmissions until the ACK are the transaction's own.
                    tokio::spawn(async move { tsx.respond_failure(response).await });
                    return;
                }
                let (endpoint, state) = (endpoint.clone(), self.state.clone());
                tokio::spawn(async move { call(endpoint, state, invite).await });
            }
            Method::OPTIONS => {
                let mut options = request.take();
                let response = endpoint.create_response(&options, StatusCode::OK, None);
                let tsx = endpoint.create_server_tsx(&mut options);
                if let Err(e) = tsx.respond(response).await {
                    tracing::debug!(error = %e, "OPTIONS answer not sent");
                }
            }
            _ => {}
        }
    }
}

/// Our answer, prepared before the call is accepted (the offer was read then).
struct Prepared(SessionDescription);

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct MediaError(&'static str);

impl MediaBackend for Prepared {
    type Error = MediaError;
    type Event = ();

    fn has_media(&self) -> bool {
        true
    }

    async fn create_sdp_offer(&mut self) -> Result<SessionDescription, MediaError> {
        Err(MediaError("this gateway answers offers; it makes none"))
    }

    async fn receive_sdp_answer(&mut self, _: SessionDescription) -> Result<(), MediaError> {
        Err(MediaError("this gateway answers offers; it makes none"))
    }

    /// A re-INVITE (a session refresh, hold): the same answer; a change of the media is
    /// not taken up.
    async fn receive_sdp_offer(
        &mut self,
        _: SessionDescription,
    ) -> Result<SessionDescription, MediaError> {
        Ok(self.0.clone())
    }

    async fn run(&mut self) -> Result<(), MediaError> {
        std::future::pending().await
    }
}

/// One less call when dropped.
struct Slot(Arc<State>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.calls.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The display name a caller gives in From, else its user, else what it is.
fn caller_name(invite: &IncomingRequest) -> String {
    let from = &invite.base_headers.from.uri;
    let name = match (&from.name, &from.uri.user_part) {
        (Some(n), _) if !n.trim().is_empty() => n.trim().trim_matches('"').to_owned(),
        (_, SipUriUserPart::User(u)) => u.to_string(),
        _ => "Room system".to_owned(),
    };
    let name: String = name.chars().filter(|c| !c.is_control()).take(56).collect();
    if name.trim().is_empty() {
        "Room system".into()
    } else {
        name
    }
}

/// The SIP answer to the controller's refusal of the join.
fn refusal(e: &anyhow::Error) -> (StatusCode, String) {
    let Some(r) = e.downcast_ref::<bot::Refused>() else {
        return (StatusCode::TEMPORARILY_UNAVAILABLE, format!("{e:#}"));
    };
    let code = match r.status.as_u16() {
        404 => StatusCode::NOT_FOUND,
        401 | 403 => StatusCode::FORBIDDEN,
        409 => StatusCode::GONE,
        429 => StatusCode::BUSY_HERE,
        503 => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::SERVER_INTERNAL_ERROR,
    };
    (code, r.message.clone())
}

/// Answers `incoming` with the failure `code`, saying why (and logs it).
async fn refuse<M>(
    incoming: InboundCall<M>,
    metrics: &Metrics,
    call_id: &str,
    code: StatusCode,
    why: String,
) {
    tracing::info!(call_id, code = code.into_u16(), reason = %why, "call refused");
    metrics
        .calls
        .with_label_values(&[&code.into_u16().to_string()])
        .inc();
    let _ = incoming.decline(code, Some(reason(&why))).await;
}

/// A reason phrase from free text (one line, printable, not too long).
fn reason(text: &str) -> BytesStr {
    let t: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(120)
        .collect();
    BytesStr::from(t)
}

async fn call(endpoint: Endpoint, state: Arc<State>, invite: IncomingRequest) {
    let started = Instant::now();
    let call_id = invite.base_headers.call_id.0.to_string();
    let name = caller_name(&invite);
    let user = match &invite.line.uri.user_part {
        SipUriUserPart::User(u) => u.to_string(),
        _ => String::new(),
    };
    let offer = std::str::from_utf8(&invite.body)
        .ok()
        .and_then(|b| SessionDescription::parse(&BytesStr::from(b)).ok());
    let mut incoming = match InboundCall::from_invite(
        endpoint.clone(),
        invite,
        Contact::new(NameAddr::uri(state.contact.clone())),
    ) {
        Ok(c) => c,
        Err(e) => {
            let (invite, why) = *e;
            tracing::info!(call_id = %call_id, error = %why, "INVITE refused");
            state.metrics.calls.with_label_values(&["400"]).inc();
            let mut invite = invite;
            let response = endpoint.create_response(
                &invite,
                StatusCode::BAD_REQUEST,
                Some(reason(&why.to_string())),
            );
            let tsx = endpoint.create_server_inv_tsx(&mut invite);
            let _ = tsx.respond_failure(response).await;
            return;
        }
    };
    // Every check before anything is joined.
    let checked = (|| {
        let dial = dial::parse(&user).map_err(|e| (StatusCode::NOT_FOUND, e.0))?;
        let offer = offer.ok_or((
            StatusCode::NOT_ACCEPTABLE_HERE,
            "the INVITE carries no SDP offer (this gateway answers offers)".to_owned(),
        ))?;
        let choice = sdp::choose(&offer).map_err(|e| (StatusCode::NOT_ACCEPTABLE_HERE, e.0))?;
        Ok::<_, (StatusCode, String)>((dial, choice))
    })();
    let (dial, choice) = match checked {
        Ok(c) => c,
        Err((code, why)) => {
            refuse(incoming, &state.metrics, &call_id, code, why).await;
            return;
        }
    };
    if state.calls.fetch_add(1, Ordering::Relaxed) >= state.cfg.max_calls {
        state.calls.fetch_sub(1, Ordering::Relaxed);
        refuse(
            incoming,
            &state.metrics,
            &call_id,
            StatusCode::BUSY_HERE,
            "the gateway is full".into(),
        )
        .await;
        return;
    }
    let _slot = Slot(state.clone());
    let _ = incoming.respond_provisional(StatusCode::TRYING).await;

    let socket = match UdpSocket::bind((state.cfg.media_ip, 0)).await {
        Ok(s) => Arc::new(s),
        Err(e) => {
            let why = format!("no RTP port: {e}");
            refuse(
                incoming,
                &state.metrics,
                &call_id,
                StatusCode::SERVER_INTERNAL_ERROR,
                why,
            )
            .await;
            return;
        }
    };
    let local = socket.local_addr().expect("a bound socket has an address");
    let (audio_tx, audio_rx) = mpsc::channel(64);
    let (tap_tx, tap_rx) = mpsc::channel(256);
    let cfg = bot::BotConfig {
        controller: state.cfg.controller.clone(),
        meeting: dial.meeting.to_string(),
        name: name.clone(),
        password: dial.password.clone(),
        host_key: None,
        panelist_key: None,
        registrant_key: None,
        region: None,
        publish: None,
        signal_ca: None,
        view: None,
    };
    let join = bot::Bot::join_live(
        cfg,
        bot::Live {
            audio: audio_rx,
            tap: tap_tx,
        },
        Duration::from_secs(state.cfg.join_timeout_secs),
    );
    let participant = tokio::select! {
        j = join => j,
        _ = incoming.cancelled() => {
            tracing::info!(call_id = %call_id, "the caller hung up while joining");
            state.metrics.calls.with_label_values(&["487"]).inc();
            return;
        }
    };
    let participant = match participant {
        Ok(p) => p,
        Err(e) => {
            let (code, why) = refusal(&e);
            refuse(incoming, &state.metrics, &call_id, code, why).await;
            return;
        }
    };
    let media = match bridge::Media::new(choice.clone(), audio_tx) {
        Ok(m) => m,
        Err(e) => {
            participant.leave().await;
            let why = format!("no transcoder for {:?}: {e:#}", choice.codec);
            refuse(
                incoming,
                &state.metrics,
                &call_id,
                StatusCode::SERVER_INTERNAL_ERROR,
                why,
            )
            .await;
            return;
        }
    };
    let answer = sdp::answer(&choice, local, rand::random::<u32>().into());
    let Ok(answer) = SessionDescription::parse(&BytesStr::from(answer)) else {
        tracing::error!(call_id = %call_id, "our own SDP answer does not parse");
        participant.leave().await;
        return;
    };
    let mut call = match incoming.with_media(Prepared(answer)).accept().await {
        Ok(c) => c,
        Err(e) => {
            tracing::info!(call_id = %call_id, error = %e, "the call was not set up");
            participant.leave().await;
            return;
        }
    };
    tracing::info!(
        call_id = %call_id,
        meeting = %dial.meeting,
        participant = %participant.participant_id,
        node = %participant.node_id,
        codec = ?choice.codec,
        setup_ms = started.elapsed().as_millis() as u64,
        "call joined the meeting"
    );
    let m = &state.metrics;
    m.calls.with_label_values(&["200"]).inc();
    m.setup_seconds.observe(started.elapsed().as_secs_f64());
    let codec = format!("{:?}", choice.codec).to_lowercase();
    let active = m.active.with_label_values(&[&codec]);
    active.inc();
    let (stop_tx, stop_rx) = watch::channel(false);
    let media = tokio::spawn(bridge::run(socket, media, tap_rx, stop_rx));
    let mut ended = participant.ended_watch();
    let by_caller = loop {
        tokio::select! {
            ev = call.run() => match ev {
                Ok(CallEvent::Internal(ev)) => {
                    if let Err(e) = call.handle_internal_event(ev).await {
                        tracing::info!(call_id = %call_id, error = %e, "call failed");
                        break true;
                    }
                }
                Ok(CallEvent::Media(())) => {}
                Ok(CallEvent::Terminated) => break true,
                Err(e) => {
                    tracing::info!(call_id = %call_id, error = %e, "call failed");
                    break true;
                }
            },
            () = async { let _ = ended.wait_for(Option::is_some).await; } => break false,
        }
    };
    let _ = stop_tx.send(true);
    let why = ended.borrow().clone();
    if by_caller {
        participant.leave().await;
    } else {
        tracing::info!(call_id = %call_id, why = ?why, "the meeting ended the call: BYE");
        if let Err(e) = call.terminate().await {
            tracing::info!(call_id = %call_id, error = %e, "BYE not sent");
        }
    }
    let counts = media.await.unwrap_or_default();
    active.dec();
    m.rtp_packets
        .with_label_values(&["from_caller"])
        .inc_by(counts.from_caller);
    m.rtp_packets
        .with_label_values(&["to_caller"])
        .inc_by(counts.to_caller);
    m.rtp_lost.inc_by(counts.lost);
    if counts.from_caller > 1 {
        m.jitter_seconds.observe(counts.jitter_secs);
    }
    tracing::info!(
        call_id = %call_id,
        by_caller,
        seconds = started.elapsed().as_secs(),
        from_caller = counts.from_caller,
        to_caller = counts.to_caller,
        not_rtp = counts.not_rtp,
        lost = counts.lost,
        jitter_ms = counts.jitter_secs * 1000.0,
        "call ended"
    );
}
