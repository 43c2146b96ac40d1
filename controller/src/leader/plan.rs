//! The leader's planner: what to repair, decided from a view of the cluster and the time
//! alone (no I/O), so that every decision is testable on a view built by hand. The driver
//! (`leader/mod.rs`) carries the actions out.
use std::time::Duration;

use common::ids::MeetingId;
use common::keyspace::Slot;

use crate::model::{Gap, MediaNode, Recording, RecordingState};
use crate::placement::place_recording;
use crate::view::ClusterView;

#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// The placement's node is gone, or its meeting ended: remove it (if unchanged since
    /// `mod_revision`), so that the next join lands on a live node.
    RemovePlacement {
        meeting: MeetingId,
        slot: Slot,
        mod_revision: i64,
        why: &'static str,
    },
    /// The recording's node is gone: go on in a new segment on another node (the record
    /// already says so: node, segment, gap, earlier nodes).
    MoveRecording {
        recording: Recording,
        media: MediaNode,
    },
    /// The recording's node is gone and it cannot go on: store it failed, saying why.
    FailRecording { recording: Recording },
    /// The recording's meeting ended or its media node is gone: stop it on its node and
    /// collect its files, with an open gap saying why when there is one.
    FinishRecording {
        recording: Recording,
        gap: Option<String>,
    },
}

/// When the leader last heard from nodes it found dead (their heartbeat stream), in Unix
/// ms.
pub type LastHeard = std::collections::HashMap<common::ids::NodeId, i64>;

/// Every repair the view calls for at `now_unix_ms`. A lost recording node is taken to
/// have stopped when the leader last heard it (`heard`), or else at most `lease_ttl`
/// before its record went (its lease expired).
pub fn plan(
    view: &ClusterView,
    now_unix_ms: i64,
    lease_ttl: Duration,
    heard: &LastHeard,
) -> Vec<Action> {
    let mut actions = Vec::new();
    let running = || view.recordings.values().filter(|r| r.holds_slot());
    for r in running().filter(|r| !view.recording.contains_key(&r.node)) {
        // Its meeting not in the view yet: decide on a later pass.
        let Some(meeting) = view.meetings.get(&r.meeting) else {
            continue;
        };
        let stopped = heard
            .get(&r.node)
            .copied()
            .unwrap_or(now_unix_ms - lease_ttl.as_millis() as i64);
        actions.push(move_lost(
            view,
            r.clone(),
            meeting.residency.as_ref(),
            now_unix_ms,
            stopped,
        ));
    }
    for r in running().filter(|r| view.recording.contains_key(&r.node)) {
        let ended = view.meetings.get(&r.meeting).is_none_or(|m| m.is_ended());
        let gap = if ended {
            None
        } else if !view.media.contains_key(&r.media_node) {
            Some(format!(
                "the meeting's media node {} was lost; the recording ended",
                r.media_node
            ))
        } else {
            continue;
        };
        actions.push(Action::FinishRecording {
            recording: r.clone(),
            gap,
        });
    }
    for (m, slots) in &view.placements {
        let ended = view.meetings.get(m).is_none_or(|r| r.is_ended());
        for (slot, p) in slots {
            let why = if !view.media.contains_key(&p.node) {
                "node gone"
            } else if ended {
                "meeting ended"
            } else {
                continue;
            };
            actions.push(Action::RemovePlacement {
                meeting: m.clone(),
                slot: slot.clone(),
                mod_revision: p.mod_revision,
                why,
            });
        }
    }
    actions
}

/// What becomes of a recording whose node was lost.
fn move_lost(
    view: &ClusterView,
    mut r: Recording,
    residency: Option<&common::ids::Region>,
    now: i64,
    stopped: i64,
) -> Action {
    let lost = r.node.clone();
    let gap_start = stopped.clamp(r.started_unix_ms, now);
    let gap = |reason: String| Gap {
        start_unix_ms: gap_start,
        end_unix_ms: now,
        reason,
    };
    let fail = |mut r: Recording, why: String| {
        r.state = RecordingState::Failed;
        r.error = Some(why);
        r.stopped_unix_ms = Some(now);
        r.gaps.push(gap(format!("recording node {lost} was lost")));
        Action::FailRecording { recording: r }
    };
    let Some(media) = view.media.get(&r.media_node) else {
        let why = format!("recording node {lost} was lost, and so is the meeting's media node");
        return fail(r, why);
    };
    match place_recording(view, &media.region, residency, &r.classification) {
        Err(why) => fail(r, format!("recording node {lost} was lost and {why}")),
        Ok(node) => {
            r.gaps.push(gap(format!(
                "recording node {lost} was lost; continued on {node}"
            )));
            r.earlier_nodes.push(lost.clone());
            r.segment = r.segment.max(1) + 1;
            r.node = node;
            Action::MoveRecording {
                recording: r,
                media: media.clone(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use common::ids::NodeId;

    use super::*;
    use crate::model::MeetingState;
    use crate::testing::{media_node, meeting, recording, recording_node};

    fn running(node: &str, media: &str) -> Recording {
        recording("rec-1", node, media)
    }

    fn view() -> ClusterView {
        let mut v = ClusterView::default();
        let m = meeting("abc-defg-hij");
        v.meetings.insert(m.id.clone(), m);
        let media = media_node("media-oslo-1", "oslo");
        v.media.insert(media.id.clone(), media);
        v
    }

    #[test]
    fn a_lost_recording_moves_to_a_free_node_of_its_region_in_the_next_segment() {
        let mut v = view();
        let spare = recording_node("rec-oslo-2", "oslo", 1);
        v.recording.insert(spare.id.clone(), spare);
        let r = running("rec-oslo-1", "media-oslo-1");
        v.recordings.insert(r.id.clone(), r);
        let actions = plan(&v, 60_000, Duration::from_secs(5), &LastHeard::new());
        let [Action::MoveRecording { recording, media }] = actions.as_slice() else {
            panic!("one move: {actions:?}");
        };
        assert_eq!(recording.node.as_str(), "rec-oslo-2");
        assert_eq!(recording.segment, 2);
        assert_eq!(
            recording.earlier_nodes,
            vec![NodeId::parse("rec-oslo-1").unwrap()]
        );
        assert_eq!(media.id.as_str(), "media-oslo-1");
        let gap = &recording.gaps[0];
        assert_eq!(
            (gap.start_unix_ms, gap.end_unix_ms),
            (55_000, 60_000),
            "one lease TTL back"
        );
        assert!(
            gap.reason.contains("continued on rec-oslo-2"),
            "{}",
            gap.reason
        );
    }

    #[test]
    fn a_lost_recording_nodes_gap_starts_when_the_leader_last_heard_it() {
        let mut v = view();
        let spare = recording_node("rec-oslo-2", "oslo", 1);
        v.recording.insert(spare.id.clone(), spare);
        let r = running("rec-oslo-1", "media-oslo-1");
        v.recordings.insert(r.id.clone(), r);
        let heard = LastHeard::from([(NodeId::parse("rec-oslo-1").unwrap(), 59_400)]);
        let actions = plan(&v, 60_000, Duration::from_secs(5), &heard);
        let [Action::MoveRecording { recording, .. }] = actions.as_slice() else {
            panic!("one move: {actions:?}");
        };
        let gap = &recording.gaps[0];
        assert_eq!((gap.start_unix_ms, gap.end_unix_ms), (59_400, 60_000));
    }

    #[test]
    fn a_recording_of_an_ended_meeting_or_a_lost_media_node_is_finished_and_others_are_left() {
        let mut v = view();
        let node = recording_node("rec-oslo-1", "oslo", 4);
        v.recording.insert(node.id.clone(), node);
        let r = running("rec-oslo-1", "media-oslo-1");
        v.recordings.insert(r.id.clone(), r.clone());
        assert_eq!(
            plan(&v, 60_000, Duration::from_secs(5), &LastHeard::new()),
            vec![],
            "all well"
        );

        v.media.clear();
        let actions = plan(&v, 60_000, Duration::from_secs(5), &LastHeard::new());
        let [Action::FinishRecording { gap: Some(why), .. }] = actions.as_slice() else {
            panic!("finished with a gap: {actions:?}");
        };
        assert!(why.contains("media node media-oslo-1 was lost"), "{why}");

        v.meetings
            .values_mut()
            .for_each(|m| m.state = MeetingState::Ended);
        let actions = plan(&v, 60_000, Duration::from_secs(5), &LastHeard::new());
        assert_eq!(
            actions,
            vec![Action::FinishRecording {
                recording: r,
                gap: None
            }],
            "an ended meeting's recording ends without a gap"
        );
    }
}
