//! The gRPC edge's conversions: domain values to the public API's messages
//! (`controller.proto`), which are the API's own, never the stored records.
use proto::v1 as pb;

use crate::meetings::MeetingInfo;
use crate::model::{MeetingState, NodeState};
use crate::nodes::NodeInfo;
use crate::schedule::{RecurrenceInput, ScheduleInput};

/// A requested schedule, in the service's shape (checked there).
pub(super) fn schedule_input(s: pb::Schedule) -> ScheduleInput {
    ScheduleInput {
        start: s.start,
        time_zone: Some(s.time_zone).filter(|z| !z.is_empty()),
        duration_minutes: s.duration_minutes,
        recurrence: (!s.frequency.is_empty()).then(|| RecurrenceInput {
            frequency: s.frequency,
            interval: Some(s.interval).filter(|i| *i > 0),
            count: Some(s.count).filter(|c| *c > 0),
            until: Some(s.until).filter(|u| !u.is_empty()),
        }),
        join_before_minutes: s.join_before_minutes,
    }
}

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
        next_start_unix_ms: r
            .schedule
            .as_ref()
            .and_then(|s| s.next_start(chrono::Utc::now()))
            .map_or(0, |t| t.timestamp_millis()),
        schedule: r.schedule.map(|s| {
            let s = s.input();
            let rec = s.recurrence.unwrap_or_default();
            pb::Schedule {
                start: s.start,
                time_zone: s.time_zone.unwrap_or_default(),
                duration_minutes: s.duration_minutes,
                frequency: rec.frequency,
                interval: rec.interval.unwrap_or(0),
                count: rec.count.unwrap_or(0),
                until: rec.until.unwrap_or_default(),
                join_before_minutes: s.join_before_minutes,
            }
        }),
        description: r.description,
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
