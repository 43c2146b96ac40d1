//! The gRPC edge's conversions: domain values to the public API's messages
//! (`controller.proto`), which are the API's own, never the stored records.
use proto::v1 as pb;

use crate::meetings::MeetingInfo;
use crate::model::{MeetingState, NodeState};
use crate::nodes::NodeInfo;

pub(super) fn meeting(m: MeetingInfo) -> pb::Meeting {
    let r = m.meeting;
    pb::Meeting {
        id: r.id.to_string(),
        title: r.title,
        has_password: r.password_hash.is_some(),
        residency: r.residency.map(|r| r.to_string()).unwrap_or_default(),
        classification: r.classification,
        status: match r.state {
            MeetingState::Active => pb::MeetingState::Active,
            MeetingState::Ended => pb::MeetingState::Ended,
        } as i32,
        created_unix_ms: r.created_unix_ms,
        ended_unix_ms: r.ended_unix_ms.unwrap_or(0),
        e2ee: r.e2ee,
        kind: r.kind.as_str().to_owned(),
        placements: m
            .placements
            .into_iter()
            .map(|(r, n)| pb::MeetingPlacement {
                region: r.to_string(),
                node_id: n.to_string(),
            })
            .collect(),
    }
}

pub(super) fn node(n: NodeInfo) -> pb::Node {
    pb::Node {
        id: n.id.to_string(),
        kind: n.kind.as_str().to_owned(),
        region: n.region.to_string(),
        state: match n.state {
            NodeState::Active => pb::NodeStatus::Active,
            NodeState::Draining => pb::NodeStatus::Draining,
            NodeState::Unknown => pb::NodeStatus::Unspecified,
        } as i32,
        load: Some(pb::NodeLoadReport {
            participants: n.load.participants,
            meetings: n.load.meetings,
            tracks: n.load.tracks,
            bitrate_in_kbps: n.load.bitrate_in_kbps,
            bitrate_out_kbps: n.load.bitrate_out_kbps,
            cpu_cores: n.load.cpu_cores,
            recordings: n.load.recordings,
            updated_unix_ms: n.load.updated_unix_ms,
        }),
        capacity: Some(pb::NodeCapacity {
            participants: n.capacity.participants,
            bitrate_kbps: n.capacity.bitrate_kbps,
            cpu_cores: n.capacity.cpu_cores,
        }),
        slots: n.slots,
    }
}
