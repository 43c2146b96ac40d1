//! Test fixtures: domain values, and waiting for a condition. They need only `model`, so
//! the tests of every module can use them; a service on the in-memory store is
//! `Service::for_test` (`service.rs`).
use std::time::Duration;

use common::ids::{MeetingId, NodeId, RecordingId, Region};

use crate::model::{
    Capacity, MediaNode, Meeting, MeetingKind, MeetingState, NodeState, Recording, RecordingNode,
    RecordingState,
};

pub(crate) fn region(name: &str) -> Region {
    Region::parse(name).unwrap()
}

pub(crate) fn media_node(id: &str, region_name: &str) -> MediaNode {
    MediaNode {
        id: NodeId::parse(id).unwrap(),
        region: region(region_name),
        zone: String::new(),
        signal_url: format!("ws://127.0.0.1:9/{id}"),
        grpc_addr: "127.0.0.1:9".into(),
        relay_addr: Some("127.0.0.1:9".into()),
        capacity: Capacity {
            participants: 100,
            ..Default::default()
        },
        version: String::new(),
        state: NodeState::Active,
        lease_id: 0,
    }
}

pub(crate) fn recording_node(id: &str, region_name: &str, slots: u32) -> RecordingNode {
    RecordingNode {
        id: NodeId::parse(id).unwrap(),
        region: region(region_name),
        grpc_addr: "127.0.0.1:9".into(),
        storage_classes: vec!["internal".into()],
        slots,
        version: String::new(),
        state: NodeState::Active,
        lease_id: 0,
        download_url: None,
    }
}

pub(crate) fn meeting(id: &str) -> Meeting {
    Meeting {
        audience: crate::model::Audience::Anyone,
        id: MeetingId::parse(id).unwrap(),
        title: "standup".into(),
        password_hash: None,
        residency: None,
        classification: "internal".into(),
        host_key_hash: String::new(),
        state: MeetingState::Active,
        created_unix_ms: 1,
        ended_unix_ms: None,
        waiting_room: false,
        locked: false,
        e2ee: false,
        kind: MeetingKind::Meeting,
        panelist_key_hash: None,
        description: String::new(),
        schedule: None,
        registration: None,
        owner: None,
        recording_forbidden: false,
        recording_needs_classification: false,
        retention: None,
    }
}

/// A recording `id` of meeting abc-defg-hij on recording node `node`, from media node
/// `media`, running in its first segment since t = 1 s.
pub(crate) fn recording(id: &str, node: &str, media: &str) -> Recording {
    Recording {
        id: RecordingId::parse(id).unwrap(),
        meeting: MeetingId::parse("abc-defg-hij").unwrap(),
        node: NodeId::parse(node).unwrap(),
        state: RecordingState::Recording,
        files: vec![],
        gaps: vec![],
        started_unix_ms: 1_000,
        stopped_unix_ms: None,
        deleted_unix_ms: None,
        classification: "internal".into(),
        media_node: NodeId::parse(media).unwrap(),
        error: None,
        segment: 1,
        earlier_nodes: vec![],
        retention: None,
        bytes: 0,
        duration_ms: 0,
    }
}

/// Waits (polling every millisecond, at most 2 s) until `f` holds.
pub(crate) async fn until(what: &str, f: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while !f() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}
