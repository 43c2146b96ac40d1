//! The control gRPC service the controller calls (over mutual TLS).
use std::sync::Arc;

use common::ids::MeetingId;
use proto::v1::media_node_control_server::MediaNodeControl;
use proto::v1::{
    CloseMeetingRequest, CloseMeetingResponse, DrainRequest, DrainResponse, MeetingQualityRequest,
    MeetingQualityResponse, ParticipantQuality, PrepareMeetingRequest, PrepareMeetingResponse,
    WatchRequest,
};
use tonic::{Request, Response, Status};

use crate::Node;

pub struct Control {
    pub node: Arc<Node>,
}

fn meeting(id: &str) -> Result<MeetingId, Status> {
    MeetingId::parse(id).map_err(|e| Status::invalid_argument(e.to_string()))
}

#[tonic::async_trait]
impl MediaNodeControl for Control {
    async fn prepare_meeting(
        &self,
        req: Request<PrepareMeetingRequest>,
    ) -> Result<Response<PrepareMeetingResponse>, Status> {
        let r = req.into_inner();
        if self.node.drain.is_draining() {
            return Err(Status::failed_precondition(
                "node is draining and takes no new meetings",
            ));
        }
        self.node
            .registration
            .check()
            .map_err(Status::unavailable)?;
        let m = meeting(&r.meeting_id)?;
        tracing::info!(meeting_id = %m, epoch = r.epoch, "meeting prepared");
        // The controller's word on the meeting's pin spares the relay links a read of
        // the meeting (an older controller says nothing: they read it).
        let residency = r.residency.map(|pin| (!pin.is_empty()).then_some(pin));
        // The settings the controller read spare the node a read of the meeting.
        let settings = r.settings.map(|s| crate::store::MeetingSettings {
            title: s.title,
            waiting_room: s.waiting_room,
            webinar: s.webinar,
            residency: residency.clone().flatten(),
            cloud_recording_refusal: common::cloud_recording::refusal(
                s.e2ee,
                s.recording_forbidden,
                s.recording_needs_classification,
            ),
        });
        self.node.prepare(m.clone());
        self.node.hosts.follow_told(&m, settings);
        crate::mesh::Mesh::follow(&self.node.mesh, &m, residency);
        self.node.collab.follow(&m);
        Ok(Response::new(PrepareMeetingResponse {}))
    }

    async fn close_meeting(
        &self,
        req: Request<CloseMeetingRequest>,
    ) -> Result<Response<CloseMeetingResponse>, Status> {
        let r = req.into_inner();
        let m = meeting(&r.meeting_id)?;
        tracing::info!(meeting_id = %m, reason = r.reason, "meeting closed");
        self.node.close(
            &m,
            &crate::room::Close::new(
                signaling::CloseCode::ClosedHere,
                format!("the meeting was closed here: {}", r.reason),
            ),
        );
        Ok(Response::new(CloseMeetingResponse {}))
    }

    async fn meeting_quality(
        &self,
        req: Request<MeetingQualityRequest>,
    ) -> Result<Response<MeetingQualityResponse>, Status> {
        let m = meeting(&req.into_inner().meeting_id)?;
        let participants = self
            .node
            .sfu
            .quality(&m)
            .into_iter()
            .map(|q| ParticipantQuality {
                participant_id: q.participant.to_string(),
                rtt_ms: q.rtt_ms,
                loss: q.loss,
                jitter_ms: q.jitter_ms,
            })
            .collect();
        Ok(Response::new(MeetingQualityResponse { participants }))
    }

    type WatchStream = common::node::Heartbeats;

    async fn watch(
        &self,
        req: Request<WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        common::node::watch(
            self.node.id.to_string(),
            req,
            self.node.drain.shutdown(),
            self.node.registration.fenced(),
        )
    }

    async fn drain(&self, _req: Request<DrainRequest>) -> Result<Response<DrainResponse>, Status> {
        self.node.start_drain();
        Ok(Response::new(DrainResponse {
            participants: self.node.participants(),
            meetings: self.node.meeting_count(),
            recordings: 0,
        }))
    }
}
