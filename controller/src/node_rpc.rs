//! gRPC clients towards media and recording nodes, over mutual TLS from the cluster CA.
//! One lazily connected channel per node address, reused across calls. Calls take domain
//! values; the node RPCs' messages are built here.
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use common::ids::{MeetingId, Region};
use proto::v1::media_node_control_client::MediaNodeControlClient;
use proto::v1::recording_node_control_client::RecordingNodeControlClient;
use proto::v1::{
    CloseMeetingRequest, DeleteRecordingRequest, DrainRequest, DrainResponse, Heartbeat,
    PauseRecordingRequest, PrepareMeetingRequest, PreparedMeetingSettings, StartRecordingRequest,
    StopRecordingRequest, WatchRequest,
};

use crate::model::{MediaNode, Meeting, MeetingKind, NodeKind, Recording, RecordingState};
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

pub struct NodeClients {
    tls: Option<ClientTlsConfig>,
    timeout: Duration,
    channels: Mutex<HashMap<(String, Duration), Channel>>,
}

/// Stopping a recording finishes and measures its files: it may take a while.
const FINISH_TIMEOUT: Duration = Duration::from_secs(150);

#[derive(Debug, thiserror::Error)]
#[error("node at {addr} did not answer: {message}")]
pub struct NodeCallError {
    pub addr: String,
    pub message: String,
}

/// What a node still had when it began draining.
#[derive(Clone, Copy, Debug)]
pub struct Drained {
    pub participants: u32,
    pub meetings: u32,
}

impl From<DrainResponse> for Drained {
    fn from(r: DrainResponse) -> Self {
        Self {
            participants: r.participants,
            meetings: r.meetings,
        }
    }
}

impl NodeClients {
    pub fn new(tls: Option<ClientTlsConfig>, timeout: Duration) -> Self {
        Self {
            tls,
            timeout,
            channels: Mutex::new(HashMap::new()),
        }
    }

    fn channel(&self, addr: &str) -> Result<Channel, NodeCallError> {
        self.channel_with(addr, self.timeout)
    }

    /// A channel to `addr` whose calls may take up to `timeout`.
    fn channel_with(&self, addr: &str, timeout: Duration) -> Result<Channel, NodeCallError> {
        let err = |message: String| NodeCallError {
            addr: addr.to_owned(),
            message,
        };
        let mut map = self.channels.lock().expect("node channel map");
        if let Some(c) = map.get(&(addr.to_owned(), timeout)) {
            return Ok(c.clone());
        }
        let ch = self
            .endpoint(addr, self.timeout, Some(timeout))
            .map_err(err)?
            .connect_lazy();
        map.insert((addr.to_owned(), timeout), ch.clone());
        Ok(ch)
    }

    /// The endpoint of `addr`, with our TLS settings, and a deadline for each call if
    /// `timeout` (not for a stream that is meant to last).
    fn endpoint(
        &self,
        addr: &str,
        connect: Duration,
        timeout: Option<Duration>,
    ) -> Result<Endpoint, String> {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let mut ep = Endpoint::from_shared(format!("{scheme}://{addr}"))
            .map_err(|e| e.to_string())?
            .connect_timeout(connect);
        if let Some(t) = timeout {
            ep = ep.timeout(t);
        }
        if let Some(tls) = &self.tls {
            ep = ep.tls_config(tls.clone()).map_err(|e| e.to_string())?;
        }
        Ok(ep)
    }

    fn status(addr: &str, s: tonic::Status) -> NodeCallError {
        NodeCallError {
            addr: addr.to_owned(),
            message: format!("{}: {}", s.code(), s.message()),
        }
    }

    /// Opens a node's heartbeat stream (`Watch`, a beat every `every`) and waits up to
    /// `within` for its first heartbeat.
    pub async fn watch(
        &self,
        kind: NodeKind,
        addr: &str,
        every: Duration,
        within: Duration,
    ) -> Result<tonic::Streaming<Heartbeat>, NodeCallError> {
        let req = WatchRequest {
            interval_ms: every.as_millis() as u32,
        };
        let err = |message: String| NodeCallError {
            addr: addr.to_owned(),
            message,
        };
        // A connection of its own, made now: a dead node refuses it at once (a shared
        // lazy channel would first wait out its reconnect backoff).
        let endpoint = self.endpoint(addr, within, None).map_err(err)?;
        let open = async {
            let channel = endpoint
                .connect()
                .await
                .map_err(|e| err(format!("connecting: {e}")))?;
            let mut stream = match kind {
                NodeKind::Media => MediaNodeControlClient::new(channel).watch(req).await,
                NodeKind::Recording => RecordingNodeControlClient::new(channel).watch(req).await,
            }
            .map_err(|s| Self::status(addr, s))?
            .into_inner();
            match stream.message().await {
                Ok(Some(_)) => Ok(stream),
                Ok(None) => Err(NodeCallError {
                    addr: addr.to_owned(),
                    message: "the heartbeat stream ended at once".into(),
                }),
                Err(s) => Err(Self::status(addr, s)),
            }
        };
        tokio::time::timeout(within, open)
            .await
            .unwrap_or_else(|_| {
                Err(NodeCallError {
                    addr: addr.to_owned(),
                    message: format!("no heartbeat within {within:?}"),
                })
            })
    }

    /// Tells a media node it hosts `meeting` for `region` (placement `epoch`), with what
    /// it shows of the meeting (its settings and the region it is pinned to, if it is),
    /// so that it need not read the meeting.
    pub async fn prepare_meeting(
        &self,
        addr: &str,
        region: &Region,
        epoch: u64,
        meeting: &Meeting,
    ) -> Result<(), NodeCallError> {
        let req = PrepareMeetingRequest {
            meeting_id: meeting.id.to_string(),
            region: region.to_string(),
            epoch,
            residency: Some(
                meeting
                    .residency
                    .as_ref()
                    .map_or("", |r| r.as_str())
                    .to_owned(),
            ),
            settings: Some(PreparedMeetingSettings {
                title: meeting.title.clone(),
                waiting_room: meeting.waiting_room,
                webinar: meeting.kind == MeetingKind::Webinar,
                e2ee: meeting.e2ee,
                recording_forbidden: meeting.recording_forbidden,
                recording_needs_classification: meeting.recording_needs_classification,
            }),
        };
        let mut c = MediaNodeControlClient::new(self.channel(addr)?);
        c.prepare_meeting(req)
            .await
            .map(|_| ())
            .map_err(|s| Self::status(addr, s))
    }

    pub async fn close_meeting(
        &self,
        addr: &str,
        meeting: &str,
        reason: &str,
    ) -> Result<(), NodeCallError> {
        let mut c = MediaNodeControlClient::new(self.channel(addr)?);
        let req = CloseMeetingRequest {
            meeting_id: meeting.to_owned(),
            reason: reason.to_owned(),
        };
        c.close_meeting(req)
            .await
            .map(|_| ())
            .map_err(|s| Self::status(addr, s))
    }

    /// Each of `meeting`'s participants on the media node at `addr`: (participant,
    /// RTT ms, loss fraction, jitter ms).
    pub async fn meeting_quality(
        &self,
        addr: &str,
        meeting: &MeetingId,
    ) -> Result<Vec<crate::model::Quality>, NodeCallError> {
        let mut c = MediaNodeControlClient::new(self.channel(addr)?);
        let resp = c
            .meeting_quality(proto::v1::MeetingQualityRequest {
                meeting_id: meeting.to_string(),
            })
            .await
            .map_err(|s| Self::status(addr, s))?;
        Ok(resp
            .into_inner()
            .participants
            .into_iter()
            .map(|p| crate::model::Quality {
                participant_id: p.participant_id,
                rtt_ms: p.rtt_ms,
                loss: p.loss,
                jitter_ms: p.jitter_ms,
            })
            .collect())
    }

    pub async fn drain_media(&self, addr: &str) -> Result<Drained, NodeCallError> {
        let mut c = MediaNodeControlClient::new(self.channel(addr)?);
        c.drain(DrainRequest {
            deadline_seconds: 0,
        })
        .await
        .map(|r| r.into_inner().into())
        .map_err(|s| Self::status(addr, s))
    }

    pub async fn drain_recording(&self, addr: &str) -> Result<Drained, NodeCallError> {
        let mut c = RecordingNodeControlClient::new(self.channel(addr)?);
        c.drain(DrainRequest {
            deadline_seconds: 0,
        })
        .await
        .map(|r| r.into_inner().into())
        .map_err(|s| Self::status(addr, s))
    }

    /// Starts (or continues, in its next segment) recording `r` from `media`.
    pub async fn start_recording(
        &self,
        addr: &str,
        r: &Recording,
        media: &MediaNode,
    ) -> Result<(), NodeCallError> {
        let req = StartRecordingRequest {
            recording_id: r.id.to_string(),
            meeting_id: r.meeting.to_string(),
            classification: r.classification.clone(),
            media_relay_addr: media.relay_addr.clone().unwrap_or_default(),
            media_node_id: media.id.to_string(),
            segment: r.segment,
            recording_started_unix_ms: r.started_unix_ms,
            gaps: crate::store::gaps_to_proto(&r.gaps),
            earlier_nodes: r.earlier_nodes.iter().map(ToString::to_string).collect(),
            paused: r.state == RecordingState::Paused,
        };
        let mut c = RecordingNodeControlClient::new(self.channel(addr)?);
        c.start_recording(req)
            .await
            .map(|_| ())
            .map_err(|s| Self::status(addr, s))
    }

    /// Stops a recording; answers the manifest the node wrote. Finishing files takes a
    /// while, so this call waits longer than the others.
    pub async fn stop_recording(&self, addr: &str, id: &str) -> Result<String, NodeCallError> {
        let mut c = RecordingNodeControlClient::new(self.channel_with(addr, FINISH_TIMEOUT)?);
        c.stop_recording(StopRecordingRequest {
            recording_id: id.to_owned(),
        })
        .await
        .map(|r| r.into_inner().manifest_json)
        .map_err(|s| Self::status(addr, s))
    }

    /// Pauses a recording (its node takes none of its media, and a gap saying `reason`
    /// opens), or resumes it.
    pub async fn pause_recording(
        &self,
        addr: &str,
        id: &str,
        paused: bool,
        reason: &str,
    ) -> Result<(), NodeCallError> {
        let mut c = RecordingNodeControlClient::new(self.channel(addr)?);
        c.pause_recording(PauseRecordingRequest {
            recording_id: id.to_owned(),
            paused,
            reason: reason.to_owned(),
        })
        .await
        .map(|_| ())
        .map_err(|s| Self::status(addr, s))
    }

    pub async fn delete_recording(
        &self,
        addr: &str,
        id: &str,
        classification: &str,
    ) -> Result<(), NodeCallError> {
        let mut c = RecordingNodeControlClient::new(self.channel(addr)?);
        c.delete_recording(DeleteRecordingRequest {
            recording_id: id.to_owned(),
            classification: classification.to_owned(),
        })
        .await
        .map(|_| ())
        .map_err(|s| Self::status(addr, s))
    }
}
