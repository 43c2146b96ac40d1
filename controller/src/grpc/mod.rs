//! The gRPC edge of the public API: requests to service calls, `ApiError` to `Status`.
//! The messages are built from domain values in `convert.rs`.
mod convert;

use std::sync::Arc;

use proto::v1 as pb;
use proto::v1::controller_server::Controller;
use tonic::{Request, Response, Status};

use self::convert::{meeting, node};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::join::JoinInput;
use crate::meetings::NewMeeting;
use crate::registration::RegistrationInput;
use crate::service::Service;

pub struct GrpcApi {
    pub service: Arc<Service>,
}

impl From<ApiError> for Status {
    fn from(e: ApiError) -> Status {
        let msg = e.to_string();
        match e {
            ApiError::BadRequest(_) => Status::invalid_argument(msg),
            ApiError::Unauthorized(_) | ApiError::SignInRequired(_) => Status::unauthenticated(msg),
            ApiError::Forbidden(_) | ApiError::RefusedByHost { .. } => {
                Status::permission_denied(msg)
            }
            ApiError::NotFound(_) => Status::not_found(msg),
            ApiError::Conflict(_) | ApiError::MeetingConflict { .. } => {
                Status::failed_precondition(msg)
            }
            ApiError::Unavailable(_) => Status::unavailable(msg),
            ApiError::Internal(_) => Status::internal(msg),
            ApiError::TooManyRequests { .. } => Status::resource_exhausted(msg),
        }
    }
}

fn caller<T>(req: &Request<T>) -> Caller {
    let bearer = req
        .metadata()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(|v| crate::auth::parse_bearer(v).unwrap_or(v).trim().to_owned());
    Caller {
        bearer,
        addr: req.remote_addr().map(|a| a.ip()),
        region_header: None,
        // Sign-in is the browser's and the JSON API's; gRPC callers use keys.
        user: None,
    }
}

#[tonic::async_trait]
impl Controller for GrpcApi {
    async fn create_meeting(
        &self,
        req: Request<pb::CreateMeetingRequest>,
    ) -> Result<Response<pb::CreateMeetingResponse>, Status> {
        let c = caller(&req);
        let r = req.into_inner();
        let input = NewMeeting {
            title: r.title,
            password: r.password,
            residency: r.residency,
            classification: r.classification,
            waiting_room: r.waiting_room,
            // proto3 has no presence for this bool: false is "not asked".
            e2ee: r.e2ee.then_some(true),
            kind: r.kind,
            description: r.description,
            schedule: r.schedule.map(convert::schedule_input),
            registration: r.registration.map(|g| RegistrationInput {
                approval: g.approval,
                questions: g.questions,
            }),
            audience: r.audience,
        };
        let created = self.service.create_meeting(&c, input).await?;
        Ok(Response::new(pb::CreateMeetingResponse {
            meeting: Some(meeting(created.info)),
            host_key: created.host_key,
            panelist_key: created.panelist_key.unwrap_or_default(),
        }))
    }

    async fn get_meeting(
        &self,
        req: Request<pb::GetMeetingRequest>,
    ) -> Result<Response<pb::Meeting>, Status> {
        let c = caller(&req);
        Ok(Response::new(meeting(
            self.service.get_meeting(&c, &req.into_inner().id).await?,
        )))
    }

    async fn list_meetings(
        &self,
        req: Request<pb::ListMeetingsRequest>,
    ) -> Result<Response<pb::ListMeetingsResponse>, Status> {
        let c = caller(&req);
        let list = self
            .service
            .list_meetings(&c, Some(&req.into_inner().state))
            .await?;
        Ok(Response::new(pb::ListMeetingsResponse {
            meetings: list.into_iter().map(meeting).collect(),
        }))
    }

    async fn end_meeting(
        &self,
        req: Request<pb::EndMeetingRequest>,
    ) -> Result<Response<pb::Meeting>, Status> {
        let c = caller(&req);
        Ok(Response::new(meeting(
            self.service.end_meeting(&c, &req.into_inner().id).await?,
        )))
    }

    async fn join(
        &self,
        req: Request<pb::JoinRequest>,
    ) -> Result<Response<pb::JoinResponse>, Status> {
        let c = caller(&req);
        let r = req.into_inner();
        let input = JoinInput {
            meeting: r.meeting_id,
            name: r.name,
            password: r.password,
            region: r.region,
            host_key: r.host_key,
            panelist_key: r.panelist_key,
            registrant_key: r.registrant_key,
            lost_node: r.lost_node,
        };
        let j = self.service.join(&c, input).await?;
        Ok(Response::new(pb::JoinResponse {
            signal_url: j.signal_url,
            token: j.token,
            region: j.region.to_string(),
            node_id: j.node.to_string(),
            participant_id: j.participant.to_string(),
            role: j.role.as_str().to_owned(),
            ice_servers: j
                .ice_servers
                .into_iter()
                .map(|i| pb::IceServer {
                    urls: i.urls,
                    username: i.username,
                    credential: i.credential,
                })
                .collect(),
        }))
    }

    async fn list_nodes(
        &self,
        req: Request<pb::ListNodesRequest>,
    ) -> Result<Response<pb::ListNodesResponse>, Status> {
        let c = caller(&req);
        Ok(Response::new(pb::ListNodesResponse {
            nodes: self.service.list_nodes(&c)?.into_iter().map(node).collect(),
        }))
    }

    async fn drain_node(
        &self,
        req: Request<pb::DrainNodeRequest>,
    ) -> Result<Response<pb::Node>, Status> {
        let c = caller(&req);
        Ok(Response::new(node(
            self.service.drain_node(&c, &req.into_inner().id).await?,
        )))
    }
}
