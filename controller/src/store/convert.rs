//! The store's edge: the protobuf records kept in etcd (`proto/fjord/v1/state.proto`)
//! to and from the domain types of [`crate::model`]. A record that does not make a valid
//! domain value (a bad id, an unknown state) is an error here, never a default.
#![allow(clippy::disallowed_types)]

use common::ids::{MeetingId, NodeId, RecordingId, Region};
use common::keyspace::Key;
use prost::Message;
use proto::v1 as pb;

use super::Change;
use crate::model::{
    Account, Attendance, Capacity, CloudRecording, Collab, Gap, HostAction, MediaNode, Meeting,
    MeetingKind, MeetingState, NodeLoad, NodeState, OrgSettings, Owner, Poll, PollAnswer, Question,
    Recording, RecordingNode, RecordingState, Registrant, RegistrantState, Registration, Room,
    StoredPlacement,
};
use crate::schedule::{RecurrenceInput, Schedule, ScheduleInput};

fn node_id(s: &str) -> Result<NodeId, String> {
    NodeId::parse(s).map_err(|e| format!("node id {s:?}: {e}"))
}

fn region(s: &str) -> Result<Region, String> {
    Region::parse(s).map_err(|e| format!("region {s:?}: {e}"))
}

fn non_empty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

fn positive(t: i64) -> Option<i64> {
    (t > 0).then_some(t)
}

pub(super) fn meeting_to_record(m: &Meeting) -> pb::MeetingRecord {
    pb::MeetingRecord {
        meeting_id: m.id.to_string(),
        title: m.title.clone(),
        password_hash: m.password_hash.clone().unwrap_or_default(),
        residency: m
            .residency
            .as_ref()
            .map(Region::to_string)
            .unwrap_or_default(),
        classification: m.classification.clone(),
        host_key_hash: m.host_key_hash.clone(),
        status: match m.state {
            MeetingState::Active => pb::MeetingStatus::Active,
            MeetingState::Ended => pb::MeetingStatus::Ended,
        } as i32,
        created_unix_ms: m.created_unix_ms,
        ended_unix_ms: m.ended_unix_ms.unwrap_or(0),
        waiting_room: m.waiting_room,
        locked: m.locked,
        e2ee: m.e2ee,
        kind: match m.kind {
            MeetingKind::Meeting => pb::MeetingKind::Meeting,
            MeetingKind::Webinar => pb::MeetingKind::Webinar,
        } as i32,
        panelist_key_hash: m.panelist_key_hash.clone().unwrap_or_default(),
        description: m.description.clone(),
        recording_forbidden: m.recording_forbidden,
        recording_needs_classification: m.recording_needs_classification,
        retention_secs: m.retention.map_or(0, |d| d.as_secs()),
        audience: match m.audience {
            crate::model::Audience::Anyone => String::new(),
            a => a.as_str().to_owned(),
        },
        owner: m.owner.as_ref().map(|o| pb::MeetingOwnerRecord {
            issuer: o.issuer.clone(),
            subject: o.subject.clone(),
            email: o.email.clone(),
            name: o.name.clone(),
            org: o.org.clone(),
        }),
        registration: m
            .registration
            .as_ref()
            .map(|r| pb::RegistrationSettingsRecord {
                manual_approval: r.manual_approval,
                questions: r.questions.clone(),
            }),
        schedule: m.schedule.as_ref().map(|s| {
            let s = s.input();
            let r = s.recurrence.unwrap_or_default();
            pb::MeetingScheduleRecord {
                start: s.start,
                time_zone: s.time_zone.unwrap_or_default(),
                duration_minutes: s.duration_minutes,
                frequency: r.frequency,
                interval: r.interval.unwrap_or(0),
                count: r.count.unwrap_or(0),
                until: r.until.unwrap_or_default(),
                join_before_minutes: s.join_before_minutes.unwrap_or(0),
            }
        }),
    }
}

pub(super) fn account_to_record(a: &Account) -> pb::AccountRecord {
    pb::AccountRecord {
        email: a.email.clone(),
        name: a.name.clone(),
        admin: a.admin,
        password_hash: a.password_hash.clone(),
        created_unix_ms: a.created_unix_ms,
        password_changed_unix_ms: a.password_changed_unix_ms,
    }
}

pub(super) fn account_from_record(r: pb::AccountRecord) -> Result<Account, String> {
    if r.email.is_empty() || r.email != r.email.to_lowercase() {
        return Err(format!(
            "account e-mail {:?} is not a lower-case address",
            r.email
        ));
    }
    Ok(Account {
        email: r.email,
        name: r.name,
        admin: r.admin,
        password_hash: r.password_hash,
        created_unix_ms: r.created_unix_ms,
        password_changed_unix_ms: r.password_changed_unix_ms,
    })
}

pub(super) fn org_settings_to_record(o: &OrgSettings) -> pb::OrgSettingsRecord {
    pb::OrgSettingsRecord {
        waiting_room: o.waiting_room,
        recording_forbidden: o.recording_forbidden,
        recording_needs_classification: o.recording_needs_classification,
        e2ee: o.e2ee,
        allowed_regions: o.allowed_regions.iter().map(Region::to_string).collect(),
        retention_secs: o.retention.map_or(0, |d| d.as_secs()),
        updated_unix_ms: o.updated_unix_ms,
        updated_by: o.updated_by.clone(),
    }
}

pub(super) fn org_settings_from_record(r: pb::OrgSettingsRecord) -> Result<OrgSettings, String> {
    Ok(OrgSettings {
        waiting_room: r.waiting_room,
        recording_forbidden: r.recording_forbidden,
        recording_needs_classification: r.recording_needs_classification,
        e2ee: r.e2ee,
        allowed_regions: r
            .allowed_regions
            .iter()
            .map(|s| region(s))
            .collect::<Result<_, _>>()?,
        retention: (r.retention_secs > 0).then(|| std::time::Duration::from_secs(r.retention_secs)),
        updated_unix_ms: r.updated_unix_ms,
        updated_by: r.updated_by,
    })
}

pub(super) fn registrant_to_record(r: &Registrant) -> pb::RegistrantRecord {
    pb::RegistrantRecord {
        registrant_id: r.id.clone(),
        name: r.name.clone(),
        email: r.email.clone(),
        answers: r.answers.clone(),
        state: match r.state {
            RegistrantState::Pending => pb::RegistrantState::Pending,
            RegistrantState::Approved => pb::RegistrantState::Approved,
            RegistrantState::Rejected => pb::RegistrantState::Rejected,
        } as i32,
        registered_unix_ms: r.registered_unix_ms,
        decided_unix_ms: r.decided_unix_ms.unwrap_or(0),
        key_hash: r.key_hash.clone(),
    }
}

pub(super) fn registrant_from_record(
    meeting: &MeetingId,
    r: pb::RegistrantRecord,
) -> Result<Registrant, String> {
    let state = match pb::RegistrantState::try_from(r.state) {
        Ok(pb::RegistrantState::Pending) => RegistrantState::Pending,
        Ok(pb::RegistrantState::Approved) => RegistrantState::Approved,
        Ok(pb::RegistrantState::Rejected) => RegistrantState::Rejected,
        Err(_) => return Err(format!("registrant state {}", r.state)),
    };
    Ok(Registrant {
        meeting: meeting.clone(),
        id: r.registrant_id,
        name: r.name,
        email: r.email,
        answers: r.answers,
        state,
        registered_unix_ms: r.registered_unix_ms,
        decided_unix_ms: positive(r.decided_unix_ms),
        key_hash: r.key_hash,
    })
}

pub(super) fn attendance_to_record(a: &Attendance) -> pb::AttendanceRecord {
    pb::AttendanceRecord {
        participant_id: a.participant_id.clone(),
        name: a.name.clone(),
        registrant_id: a.registrant_id.clone().unwrap_or_default(),
        role: a.role.clone(),
        region: a.region.clone(),
        node_id: a.node_id.clone(),
        joined_unix_ms: a.joined_unix_ms,
        left_unix_ms: a.left_unix_ms.unwrap_or(0),
    }
}

pub(super) fn attendance_from_record(r: pb::AttendanceRecord) -> Attendance {
    Attendance {
        participant_id: r.participant_id,
        name: r.name,
        registrant_id: non_empty(r.registrant_id),
        role: r.role,
        region: r.region,
        node_id: r.node_id,
        joined_unix_ms: r.joined_unix_ms,
        left_unix_ms: positive(r.left_unix_ms),
    }
}

fn schedule_from_record(r: pb::MeetingScheduleRecord) -> Result<Schedule, String> {
    let recurrence = (!r.frequency.is_empty()).then(|| RecurrenceInput {
        frequency: r.frequency,
        interval: Some(r.interval).filter(|i| *i > 0),
        count: Some(r.count).filter(|c| *c > 0),
        until: non_empty(r.until),
    });
    Schedule::parse(&ScheduleInput {
        start: r.start,
        time_zone: non_empty(r.time_zone),
        duration_minutes: r.duration_minutes,
        recurrence,
        join_before_minutes: Some(r.join_before_minutes),
    })
}

pub(super) fn meeting_from_record(r: pb::MeetingRecord) -> Result<Meeting, String> {
    let state = match pb::MeetingStatus::try_from(r.status) {
        Ok(pb::MeetingStatus::Active) => MeetingState::Active,
        Ok(pb::MeetingStatus::Ended) => MeetingState::Ended,
        _ => return Err(format!("meeting status {}", r.status)),
    };
    Ok(Meeting {
        id: MeetingId::parse(&r.meeting_id).map_err(|e| format!("meeting id: {e}"))?,
        title: r.title,
        password_hash: non_empty(r.password_hash),
        residency: non_empty(r.residency).map(|s| region(&s)).transpose()?,
        classification: r.classification,
        host_key_hash: r.host_key_hash,
        state,
        created_unix_ms: r.created_unix_ms,
        ended_unix_ms: positive(r.ended_unix_ms),
        waiting_room: r.waiting_room,
        locked: r.locked,
        e2ee: r.e2ee,
        kind: match pb::MeetingKind::try_from(r.kind) {
            Ok(pb::MeetingKind::Meeting) => MeetingKind::Meeting,
            Ok(pb::MeetingKind::Webinar) => MeetingKind::Webinar,
            Err(_) => return Err(format!("meeting kind {}", r.kind)),
        },
        panelist_key_hash: non_empty(r.panelist_key_hash),
        description: r.description,
        recording_forbidden: r.recording_forbidden,
        recording_needs_classification: r.recording_needs_classification,
        retention: (r.retention_secs > 0).then(|| std::time::Duration::from_secs(r.retention_secs)),
        audience: crate::model::Audience::parse(&r.audience)
            .ok_or_else(|| format!("meeting audience {:?}", r.audience))?,
        owner: r.owner.map(|o| Owner {
            issuer: o.issuer,
            subject: o.subject,
            email: o.email,
            name: o.name,
            org: o.org,
        }),
        registration: r.registration.map(|g| Registration {
            manual_approval: g.manual_approval,
            questions: g.questions,
        }),
        schedule: r
            .schedule
            .map(schedule_from_record)
            .transpose()
            .map_err(|e| format!("meeting schedule: {e}"))?,
    })
}

fn node_state(s: i32) -> NodeState {
    match pb::NodeState::try_from(s) {
        Ok(pb::NodeState::Active) => NodeState::Active,
        Ok(pb::NodeState::Draining) => NodeState::Draining,
        _ => NodeState::Unknown,
    }
}

fn node_state_to_proto(s: NodeState) -> i32 {
    let state = match s {
        NodeState::Active => pb::NodeState::Active,
        NodeState::Draining => pb::NodeState::Draining,
        NodeState::Unknown => pb::NodeState::Unspecified,
    };
    state as i32
}

pub(super) fn media_node_to_record(n: &MediaNode) -> pb::MediaNodeRecord {
    pb::MediaNodeRecord {
        node_id: n.id.to_string(),
        region: n.region.to_string(),
        zone: n.zone.clone(),
        signal_url: n.signal_url.clone(),
        grpc_addr: n.grpc_addr.clone(),
        relay_addr: n.relay_addr.clone().unwrap_or_default(),
        capacity: Some(pb::Capacity {
            participants: n.capacity.participants,
            bitrate_kbps: n.capacity.bitrate_kbps,
            cpu_cores: n.capacity.cpu_cores,
        }),
        version: n.version.clone(),
        state: node_state_to_proto(n.state),
        lease_id: n.lease_id,
    }
}

pub(super) fn media_node_from_record(r: pb::MediaNodeRecord) -> Result<MediaNode, String> {
    let cap = r.capacity.unwrap_or_default();
    Ok(MediaNode {
        id: node_id(&r.node_id)?,
        region: region(&r.region)?,
        zone: r.zone,
        signal_url: r.signal_url,
        grpc_addr: r.grpc_addr,
        relay_addr: non_empty(r.relay_addr),
        capacity: Capacity {
            participants: cap.participants,
            bitrate_kbps: cap.bitrate_kbps,
            cpu_cores: cap.cpu_cores,
        },
        version: r.version,
        state: node_state(r.state),
        lease_id: r.lease_id,
    })
}

pub(super) fn recording_node_to_record(n: &RecordingNode) -> pb::RecordingNodeRecord {
    pb::RecordingNodeRecord {
        node_id: n.id.to_string(),
        region: n.region.to_string(),
        grpc_addr: n.grpc_addr.clone(),
        storage_classes: n.storage_classes.clone(),
        slots: n.slots,
        version: n.version.clone(),
        state: node_state_to_proto(n.state),
        lease_id: n.lease_id,
        download_url: n.download_url.clone().unwrap_or_default(),
    }
}

pub(super) fn recording_node_from_record(
    r: pb::RecordingNodeRecord,
) -> Result<RecordingNode, String> {
    Ok(RecordingNode {
        id: node_id(&r.node_id)?,
        region: region(&r.region)?,
        grpc_addr: r.grpc_addr,
        storage_classes: r.storage_classes,
        slots: r.slots,
        version: r.version,
        state: node_state(r.state),
        lease_id: r.lease_id,
        download_url: non_empty(r.download_url),
    })
}

pub(super) fn load_to_record(l: &NodeLoad) -> pb::NodeLoad {
    pb::NodeLoad {
        participants: l.participants,
        meetings: l.meetings,
        tracks: l.tracks,
        bitrate_in_kbps: l.bitrate_in_kbps,
        bitrate_out_kbps: l.bitrate_out_kbps,
        cpu_cores: l.cpu_cores,
        recordings: l.recordings,
        updated_unix_ms: l.updated_unix_ms,
    }
}

pub(super) fn load_from_record(r: pb::NodeLoad) -> NodeLoad {
    NodeLoad {
        participants: r.participants,
        meetings: r.meetings,
        tracks: r.tracks,
        bitrate_in_kbps: r.bitrate_in_kbps,
        bitrate_out_kbps: r.bitrate_out_kbps,
        cpu_cores: r.cpu_cores,
        recordings: r.recordings,
        updated_unix_ms: r.updated_unix_ms,
    }
}

pub(super) fn placement_to_record(p: &StoredPlacement) -> pb::PlacementRecord {
    pb::PlacementRecord {
        node_id: p.node.to_string(),
        epoch: p.epoch,
        placed_unix_ms: p.placed_unix_ms,
    }
}

pub(super) fn placement_from_record(
    r: pb::PlacementRecord,
    mod_revision: i64,
) -> Result<StoredPlacement, String> {
    Ok(StoredPlacement {
        node: node_id(&r.node_id)?,
        epoch: r.epoch,
        placed_unix_ms: r.placed_unix_ms,
        mod_revision,
    })
}

fn recording_state(s: i32) -> Result<RecordingState, String> {
    Ok(match pb::RecordingState::try_from(s) {
        Ok(pb::RecordingState::Starting) => RecordingState::Starting,
        Ok(pb::RecordingState::Recording) => RecordingState::Recording,
        Ok(pb::RecordingState::Stopped) => RecordingState::Stopped,
        Ok(pb::RecordingState::Failed) => RecordingState::Failed,
        Ok(pb::RecordingState::Deleted) => RecordingState::Deleted,
        Ok(pb::RecordingState::Paused) => RecordingState::Paused,
        _ => return Err(format!("recording state {s}")),
    })
}

/// The gaps as the recording node's start request carries them.
pub fn gaps_to_proto(gaps: &[Gap]) -> Vec<pb::RecordingGap> {
    gaps.iter()
        .map(|g| pb::RecordingGap {
            start_unix_ms: g.start_unix_ms,
            end_unix_ms: g.end_unix_ms,
            reason: g.reason.clone(),
        })
        .collect()
}

pub(super) fn recording_to_record(r: &Recording) -> pb::RecordingRecord {
    pb::RecordingRecord {
        recording_id: r.id.to_string(),
        meeting_id: r.meeting.to_string(),
        node_id: r.node.to_string(),
        state: match r.state {
            RecordingState::Starting => pb::RecordingState::Starting,
            RecordingState::Recording => pb::RecordingState::Recording,
            RecordingState::Stopped => pb::RecordingState::Stopped,
            RecordingState::Failed => pb::RecordingState::Failed,
            RecordingState::Deleted => pb::RecordingState::Deleted,
            RecordingState::Paused => pb::RecordingState::Paused,
        } as i32,
        files: r.files.clone(),
        gaps: gaps_to_proto(&r.gaps),
        started_unix_ms: r.started_unix_ms,
        stopped_unix_ms: r.stopped_unix_ms.unwrap_or(0),
        classification: r.classification.clone(),
        media_node_id: r.media_node.to_string(),
        deleted_unix_ms: r.deleted_unix_ms.unwrap_or(0),
        error: r.error.clone().unwrap_or_default(),
        segment: r.segment,
        earlier_nodes: r.earlier_nodes.iter().map(NodeId::to_string).collect(),
        retention_secs: r.retention.map_or(0, |d| d.as_secs()),
        bytes: r.bytes,
        duration_ms: r.duration_ms,
    }
}

pub(super) fn recording_from_record(r: pb::RecordingRecord) -> Result<Recording, String> {
    Ok(Recording {
        id: RecordingId::parse(&r.recording_id).map_err(|e| format!("recording id: {e}"))?,
        meeting: MeetingId::parse(&r.meeting_id).map_err(|e| format!("meeting id: {e}"))?,
        node: node_id(&r.node_id)?,
        state: recording_state(r.state)?,
        files: r.files,
        gaps: r
            .gaps
            .into_iter()
            .map(|g| Gap {
                start_unix_ms: g.start_unix_ms,
                end_unix_ms: g.end_unix_ms,
                reason: g.reason,
            })
            .collect(),
        started_unix_ms: r.started_unix_ms,
        stopped_unix_ms: positive(r.stopped_unix_ms),
        deleted_unix_ms: positive(r.deleted_unix_ms),
        classification: r.classification,
        media_node: node_id(&r.media_node_id)?,
        error: non_empty(r.error),
        segment: r.segment,
        earlier_nodes: r
            .earlier_nodes
            .iter()
            .map(|n| node_id(n))
            .collect::<Result<_, _>>()?,
        retention: (r.retention_secs > 0).then(|| std::time::Duration::from_secs(r.retention_secs)),
        bytes: r.bytes,
        duration_ms: r.duration_ms,
    })
}

fn collab_from_record(r: pb::MeetingCollabRecord) -> Collab {
    let some = |s: String| (!s.is_empty()).then_some(s);
    let at = |ms: i64| (ms > 0).then_some(ms);
    Collab {
        polls: r
            .polls
            .into_iter()
            .map(|p| Poll {
                id: p.id,
                kind: match p.kind() {
                    pb::PollKind::Single => "single",
                    pb::PollKind::Multiple => "multiple",
                    pb::PollKind::Text => "text",
                    pb::PollKind::Unspecified => "unknown",
                },
                state: match p.state() {
                    pb::PollState::Draft => "draft",
                    pb::PollState::Open => "open",
                    pb::PollState::Ended => "ended",
                    pb::PollState::Unspecified => "unknown",
                },
                question: p.question,
                options: p.options,
                anonymous: p.anonymous,
                shared: p.shared,
                created_by_name: p.created_by_name,
                created_unix_ms: p.created_unix_ms,
                launched_unix_ms: at(p.launched_unix_ms),
                ended_unix_ms: at(p.ended_unix_ms),
                answered: p.voters.len() as u64,
                tally: p.tally,
                // An anonymous poll's record holds no answers; should one ever, they
                // are not shown.
                texts: if p.anonymous {
                    p.texts
                } else {
                    p.answers
                        .iter()
                        .filter(|a| !a.text.is_empty())
                        .map(|a| a.text.clone())
                        .collect()
                },
                answers: if p.anonymous {
                    vec![]
                } else {
                    p.answers
                        .into_iter()
                        .map(|a| PollAnswer {
                            participant_id: a.participant_id,
                            name: a.name,
                            choices: a.choices,
                            text: a.text,
                            unix_ms: a.unix_ms,
                        })
                        .collect()
                },
            })
            .collect(),
        questions: r
            .questions
            .into_iter()
            .map(|q| Question {
                id: q.id,
                text: q.text,
                author: some(q.author_id).map(|id| (id, q.author_name)),
                asked_unix_ms: q.asked_unix_ms,
                votes: q.voters.len() as u64,
                answer: some(q.answer),
                answered_live: q.answered_live,
                answered_by_name: some(q.answered_by_name),
                dismissed: q.dismissed,
            })
            .collect(),
    }
}

fn room_from_record(r: pb::MeetingRoomRecord) -> Room {
    Room {
        locked: r.locked,
        ended: r.ended,
        denied: r.denied,
        removed: r.removed,
        actions: r
            .actions
            .into_iter()
            .map(|a| HostAction {
                seq: a.seq,
                unix_ms: a.unix_ms,
                by: a.by,
                by_name: a.by_name,
                by_role: a.by_role,
                action: a.action,
                target: a.target,
                detail: a.detail,
            })
            .collect(),
        cloud: r.cloud_recording.and_then(cloud_from_record),
    }
}

/// The room's cloud recording; None when its record is not one (a newer writer's state
/// or a bad id: nothing this controller could carry out).
pub(super) fn cloud_from_record(c: pb::CloudRecordingRecord) -> Option<CloudRecording> {
    Some(CloudRecording {
        recording: RecordingId::parse(&c.recording_id).ok()?,
        wish: common::cloud_recording::Wish::parse(&c.state)?,
        since_unix_ms: c.since_unix_ms,
        error: non_empty(c.error),
    })
}

/// The action log keeps this many of the newest actions (as the media nodes do).
const MAX_ACTIONS: usize = 1000;

/// Appends `a` to the room record's action log, numbered next.
pub(super) fn log_action(rec: &mut pb::MeetingRoomRecord, a: HostAction) {
    let seq = rec.next_seq.max(1);
    rec.next_seq = seq + 1;
    rec.actions.push(pb::HostActionRecord {
        seq,
        unix_ms: a.unix_ms,
        by: a.by,
        by_name: a.by_name,
        by_role: a.by_role,
        action: a.action,
        target: a.target,
        detail: a.detail,
    });
    if rec.actions.len() > MAX_ACTIONS {
        let extra = rec.actions.len() - MAX_ACTIONS;
        rec.actions.drain(..extra);
    }
}

pub(super) fn cloud_to_record(c: &CloudRecording) -> pb::CloudRecordingRecord {
    pb::CloudRecordingRecord {
        recording_id: c.recording.to_string(),
        state: c.wish.as_str().to_owned(),
        since_unix_ms: c.since_unix_ms,
        error: c.error.clone().unwrap_or_default(),
    }
}

fn decode<M: Message + Default>(value: &[u8]) -> Result<M, String> {
    M::decode(value).map_err(|e| e.to_string())
}

/// The change a write of `value` at `key` makes (`None` for a delete). `Ok(None)`: a key
/// that is not one of our records (the election's, another tool's).
pub(super) fn change(
    key: Key,
    value: Option<&[u8]>,
    mod_revision: i64,
) -> Result<Option<Change>, String> {
    Ok(Some(match (key, value) {
        (Key::MediaNode(id), v) => Change::MediaNode(
            id,
            v.map(|v| media_node_from_record(decode(v)?)).transpose()?,
        ),
        (Key::RecordingNode(id), v) => Change::RecordingNode(
            id,
            v.map(|v| recording_node_from_record(decode(v)?))
                .transpose()?,
        ),
        (Key::Load(id), v) => {
            Change::Load(id, v.map(|v| decode(v).map(load_from_record)).transpose()?)
        }
        (Key::Meeting(id), v) => {
            Change::Meeting(id, v.map(|v| meeting_from_record(decode(v)?)).transpose()?)
        }
        (Key::Placement(m, slot), v) => Change::Placement(
            m,
            slot,
            v.map(|v| placement_from_record(decode(v)?, mod_revision))
                .transpose()?,
        ),
        (Key::Room(id), v) => {
            Change::Room(id, v.map(|v| decode(v).map(room_from_record)).transpose()?)
        }
        (Key::Collab(id), v) => Change::Collab(
            id,
            v.map(|v| decode(v).map(collab_from_record)).transpose()?,
        ),
        (Key::Recording(id), v) => Change::Recording(
            id,
            v.map(|v| recording_from_record(decode(v)?)).transpose()?,
        ),
        (Key::Other, _) => return Ok(None),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recording_survives_the_round_trip_and_a_bad_record_is_an_error() {
        let r = Recording {
            id: RecordingId::parse("rec-1").unwrap(),
            meeting: MeetingId::parse("abc-defg-hij").unwrap(),
            node: NodeId::parse("rec-oslo-2").unwrap(),
            state: RecordingState::Stopped,
            files: vec!["composite.mkv".into()],
            gaps: vec![Gap {
                start_unix_ms: 5,
                end_unix_ms: 9,
                reason: "node lost".into(),
            }],
            started_unix_ms: 1,
            stopped_unix_ms: Some(20),
            deleted_unix_ms: None,
            classification: "internal".into(),
            media_node: NodeId::parse("media-oslo-1").unwrap(),
            error: None,
            segment: 2,
            earlier_nodes: vec![NodeId::parse("rec-oslo-1").unwrap()],
            retention: Some(std::time::Duration::from_secs(86_400)),
            bytes: 123_456,
            duration_ms: 61_000,
        };
        assert_eq!(recording_from_record(recording_to_record(&r)).unwrap(), r);
        let mut bad = recording_to_record(&r);
        bad.state = 99;
        assert!(recording_from_record(bad).is_err());
        let mut bad = recording_to_record(&r);
        bad.media_node_id = "Not An Id".into();
        assert!(recording_from_record(bad).is_err());
    }

    #[test]
    fn garbage_at_a_key_of_ours_is_an_error_and_other_keys_are_no_change() {
        let m = MeetingId::parse("abc-defg-hij").unwrap();
        assert!(change(Key::Meeting(m.clone()), Some(b"\xff\xff\xff"), 1).is_err());
        assert_eq!(change(Key::Other, Some(b"x"), 1), Ok(None));
        assert_eq!(
            change(Key::Meeting(m.clone()), None, 1),
            Ok(Some(Change::Meeting(m, None)))
        );
    }
}
