//! The leader's planner: what to repair, decided from a view of the cluster and the time
//! alone (no I/O), so that every decision is testable on a view built by hand. The driver
//! (`leader/mod.rs`) carries the actions out.
use std::time::Duration;

use common::cloud_recording::Wish;
use common::ids::{MeetingId, RecordingId};
use common::keyspace::Slot;

use crate::model::{CloudRecording, Gap, MediaNode, Recording, RecordingState};
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
    /// The recording's meeting ended, or its media node was lost and the meeting did not
    /// come back: stop it on its node and collect its files, with an open gap saying why
    /// when there is one.
    FinishRecording {
        recording: Recording,
        gap: Option<String>,
    },
    /// A host ended the meeting for everyone (its room record says so): store it ended,
    /// like an operator's end, so that its recordings finish and the API shows it.
    EndMeeting { meeting: crate::model::Meeting },
    /// The meeting's media node was lost and the meeting is not on a live node yet (its
    /// participants are rejoining): store the open gap that says the recording waits.
    AwaitMedia { recording: Recording },
    /// The meeting's media node was lost and the meeting is on a live node again: collect
    /// the segment that ended with the old feed, and go on on the same recording node in
    /// a new segment fed by `media` (the record already says so: media node, segment,
    /// the gap closed).
    RefeedRecording {
        recording: Recording,
        media: MediaNode,
    },
    /// The meeting's hosts asked for a cloud recording (its room record says so, with
    /// the recording's id) that has not started: start it.
    StartCloud {
        meeting: crate::model::Meeting,
        cloud: CloudRecording,
    },
    /// The hosts paused the running recording (`paused`), or resumed the paused one.
    PauseCloud {
        recording: RecordingId,
        paused: bool,
    },
    /// The recording the hosts asked for ended without them (it could not start, or its
    /// node was lost with nowhere to go): the room record says so, and why, to everyone.
    CloudEnded {
        meeting: MeetingId,
        recording: RecordingId,
        why: String,
    },
    /// The recording has said it was starting for longer than [`START_STUCK`] (the
    /// controller starting it was lost): stop whatever its node has of it and store it
    /// failed.
    AbandonStart { recording: Recording },
}

/// How long a recording may say it is starting before it counts as abandoned.
pub const START_STUCK: Duration = Duration::from_secs(60);

/// How long a recording whose meeting lost its media node waits for the meeting to be
/// on a live node again (its participants rejoin within seconds) before it ends.
pub const MEDIA_RETURN_WAIT: Duration = Duration::from_secs(60);

/// How the open gap of a recording that waits for its meeting's media ends its reason.
const WAITING: &str = "waiting for the meeting to come back";

/// When the leader last heard from nodes it found dead (their heartbeat stream), in Unix
/// ms.
pub type LastHeard = std::collections::HashMap<common::ids::NodeId, i64>;

/// Ended meetings whose personal data (the meeting, its room record and audit, polls,
/// registrants, attendance) is past its retention (its own, set by its organisation,
/// else `retention`) at `now_unix_ms`: to delete. Not while a recording of theirs still
/// runs.
pub fn expired(view: &ClusterView, now_unix_ms: i64, retention: Duration) -> Vec<MeetingId> {
    view.meetings
        .values()
        .filter(|m| {
            let keep = m.retention.unwrap_or(retention);
            m.ended_unix_ms
                .is_some_and(|e| e + keep.as_millis() as i64 <= now_unix_ms)
        })
        .filter(|m| {
            !view
                .recordings
                .values()
                .any(|r| r.meeting == m.id && r.holds_slot())
        })
        .map(|m| m.id.clone())
        .collect()
}

/// Recordings past their retention at `now_unix_ms` (their own, their meeting's when
/// they started, else `retention`, counted from when they stopped): to delete, files
/// and record.
pub fn expired_recordings(
    view: &ClusterView,
    now_unix_ms: i64,
    retention: Duration,
) -> Vec<Recording> {
    view.recordings
        .values()
        .filter(|r| {
            r.expires_unix_ms(retention)
                .is_some_and(|at| at <= now_unix_ms)
        })
        .cloned()
        .collect()
}

/// Every repair the view calls for at `now_unix_ms`. A lost recording node is taken to
/// have stopped when the leader last heard it (`heard`), or else at most `lease_ttl`
/// before its record went (its lease expired).
pub fn plan(
    view: &ClusterView,
    now_unix_ms: i64,
    lease_ttl: Duration,
    heard: &LastHeard,
) -> Vec<Action> {
    let mut actions: Vec<Action> = view
        .meetings
        .values()
        .filter(|m| !m.is_ended() && view.rooms.get(&m.id).is_some_and(|r| r.ended))
        .map(|m| Action::EndMeeting { meeting: m.clone() })
        .collect();
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
        if view.meetings.get(&r.meeting).is_none_or(|m| m.is_ended()) {
            // One that waited for its media when the meeting ended says so: its open gap
            // is where it ended.
            let mut r = r.clone();
            for g in r.gaps.iter_mut().filter(|g| g.end_unix_ms == 0) {
                if let Some(lost) = g.reason.strip_suffix(WAITING) {
                    g.reason = format!("{lost}the meeting ended meanwhile");
                }
            }
            actions.push(Action::FinishRecording {
                recording: r,
                gap: None,
            });
        } else if !view.media.contains_key(&r.media_node) {
            let stopped = heard
                .get(&r.media_node)
                .copied()
                .unwrap_or(now_unix_ms - lease_ttl.as_millis() as i64);
            actions.extend(media_lost(view, r.clone(), now_unix_ms, stopped));
        }
    }
    // What the hosts asked of their meeting's cloud recording, for recordings no repair
    // above already acts on.
    let acted: std::collections::HashSet<RecordingId> = actions
        .iter()
        .filter_map(|a| match a {
            Action::MoveRecording { recording, .. }
            | Action::FailRecording { recording }
            | Action::FinishRecording { recording, .. }
            | Action::AwaitMedia { recording }
            | Action::RefeedRecording { recording, .. } => Some(recording.id.clone()),
            _ => None,
        })
        .collect();
    for r in running().filter(|r| {
        r.state == RecordingState::Starting
            && now_unix_ms - r.started_unix_ms > START_STUCK.as_millis() as i64
            && !acted.contains(&r.id)
    }) {
        actions.push(Action::AbandonStart {
            recording: r.clone(),
        });
    }
    for (id, room) in &view.rooms {
        let Some(c) = &room.cloud else { continue };
        let Some(meeting) = view.meetings.get(id).filter(|m| !m.is_ended()) else {
            continue;
        };
        if acted.contains(&c.recording) {
            continue;
        }
        use RecordingState as S;
        let action = match (c.wish, view.recordings.get(&c.recording)) {
            (Wish::Recording | Wish::Paused, None) => Action::StartCloud {
                meeting: meeting.clone(),
                cloud: c.clone(),
            },
            (Wish::Recording, Some(r)) if r.state == S::Paused => Action::PauseCloud {
                recording: r.id.clone(),
                paused: false,
            },
            (Wish::Paused, Some(r)) if r.state == S::Recording => Action::PauseCloud {
                recording: r.id.clone(),
                paused: true,
            },
            (Wish::Stopped, Some(r)) if matches!(r.state, S::Recording | S::Paused) => {
                Action::FinishRecording {
                    recording: r.clone(),
                    gap: None,
                }
            }
            (Wish::Recording | Wish::Paused, Some(r))
                if matches!(r.state, S::Stopped | S::Failed | S::Deleted) =>
            {
                Action::CloudEnded {
                    meeting: id.clone(),
                    recording: r.id.clone(),
                    why: r
                        .error
                        .clone()
                        .unwrap_or_else(|| "the recording ended".to_owned()),
                }
            }
            _ => continue,
        };
        actions.push(action);
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

/// What becomes of a recording (on a live recording node) whose meeting's media node was
/// lost, taken to have stopped at `stopped`: fed again from the meeting's live node (one
/// in the recording node's region first), or waiting for one with an open gap, or ended
/// when none came within [`MEDIA_RETURN_WAIT`].
fn media_lost(view: &ClusterView, mut r: Recording, now: i64, stopped: i64) -> Option<Action> {
    let lost = r.media_node.clone();
    let waiting = r
        .gaps
        .iter()
        .position(|g| g.end_unix_ms == 0 && g.reason.ends_with(WAITING));
    let region = view.recording.get(&r.node).map(|n| &n.region);
    let live: Vec<&MediaNode> = view
        .placements
        .get(&r.meeting)
        .into_iter()
        .flat_map(|slots| slots.values())
        .filter_map(|p| view.media.get(&p.node))
        .collect();
    let feed = live
        .iter()
        .find(|n| Some(&n.region) == region)
        .or(live.first());
    match (feed, waiting) {
        (Some(media), _) => {
            let start = match waiting {
                Some(i) => r.gaps.remove(i).start_unix_ms,
                None => stopped.clamp(r.started_unix_ms, now),
            };
            r.gaps.push(Gap {
                start_unix_ms: start,
                end_unix_ms: now,
                reason: format!(
                    "the meeting's media node {lost} was lost; continued from {}",
                    media.id
                ),
            });
            r.media_node = media.id.clone();
            r.segment = r.segment.max(1) + 1;
            Some(Action::RefeedRecording {
                recording: r,
                media: (*media).clone(),
            })
        }
        (None, Some(i)) => {
            let since = r.gaps[i].start_unix_ms;
            if now - since < MEDIA_RETURN_WAIT.as_millis() as i64 {
                return None;
            }
            r.gaps[i].reason = format!(
                "the meeting's media node {lost} was lost and the meeting did not come back within {} s; the recording ended",
                MEDIA_RETURN_WAIT.as_secs()
            );
            Some(Action::FinishRecording {
                recording: r,
                gap: None,
            })
        }
        (None, None) => {
            r.gaps.push(Gap {
                start_unix_ms: stopped.clamp(r.started_unix_ms, now),
                end_unix_ms: 0,
                reason: format!("the meeting's media node {lost} was lost; {WAITING}"),
            });
            Some(Action::AwaitMedia { recording: r })
        }
    }
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
            // Files of earlier segments listed so far are on the lost node, like the
            // rest of its segments: `earlier_nodes` says where.
            r.files.clear();
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

    /// What the hosts asked of the cloud recording (the room record) against what the
    /// recording is: each difference is one action, and none when they agree.
    #[test]
    fn the_hosts_wish_for_the_cloud_recording_becomes_the_action_that_carries_it_out() {
        use crate::model::{CloudRecording, Room};
        let mut v = view();
        let node = recording_node("rec-oslo-1", "oslo", 2);
        v.recording.insert(node.id.clone(), node);
        let id = MeetingId::parse("abc-defg-hij").unwrap();
        let rid = RecordingId::parse("rec-1").unwrap();
        let set = |v: &mut ClusterView, wish, state: Option<RecordingState>| {
            v.rooms.insert(
                id.clone(),
                Room {
                    cloud: Some(CloudRecording {
                        recording: rid.clone(),
                        wish,
                        since_unix_ms: 1,
                        error: None,
                    }),
                    ..Room::default()
                },
            );
            v.recordings.clear();
            if let Some(state) = state {
                let mut r = running("rec-oslo-1", "media-oslo-1");
                r.state = state;
                r.error = (state == RecordingState::Failed).then(|| "no recording node".into());
                v.recordings.insert(r.id.clone(), r);
            }
        };
        let one = |v: &ClusterView| {
            let mut a = plan(v, 10_000, Duration::from_secs(5), &LastHeard::new());
            assert!(a.len() <= 1, "{a:?}");
            a.pop()
        };
        use RecordingState as S;
        set(&mut v, Wish::Recording, None);
        assert!(
            matches!(one(&v), Some(Action::StartCloud { cloud, .. }) if cloud.recording == rid)
        );
        set(&mut v, Wish::Paused, Some(S::Recording));
        assert_eq!(
            one(&v),
            Some(Action::PauseCloud {
                recording: rid.clone(),
                paused: true
            })
        );
        set(&mut v, Wish::Recording, Some(S::Paused));
        assert_eq!(
            one(&v),
            Some(Action::PauseCloud {
                recording: rid.clone(),
                paused: false
            })
        );
        for state in [S::Recording, S::Paused] {
            set(&mut v, Wish::Stopped, Some(state));
            assert!(
                matches!(one(&v), Some(Action::FinishRecording { recording, gap: None }) if recording.id == rid)
            );
        }
        set(&mut v, Wish::Recording, Some(S::Failed));
        assert_eq!(
            one(&v),
            Some(Action::CloudEnded {
                meeting: id.clone(),
                recording: rid.clone(),
                why: "no recording node".into()
            })
        );
        // Agreement: nothing to do.
        for (wish, state) in [
            (Wish::Recording, S::Recording),
            (Wish::Paused, S::Paused),
            (Wish::Stopped, S::Stopped),
            (Wish::Stopped, S::Failed),
        ] {
            set(&mut v, wish, Some(state));
            assert_eq!(one(&v), None, "{wish:?} {state:?}");
        }
        // One that says it is starting for too long (its controller was lost) is given up.
        set(&mut v, Wish::Recording, Some(S::Starting));
        assert_eq!(one(&v), None, "starting a moment ago");
        let a = plan(
            &v,
            1_000 + START_STUCK.as_millis() as i64 + 1,
            Duration::from_secs(5),
            &LastHeard::new(),
        );
        assert!(
            matches!(a.as_slice(), [Action::AbandonStart { .. }]),
            "{a:?}"
        );
        // An ended meeting's wish is not carried out (its recordings finish with it).
        set(&mut v, Wish::Recording, None);
        v.meetings.get_mut(&id).unwrap().state = MeetingState::Ended;
        assert_eq!(one(&v), None);
    }

    #[test]
    fn a_recording_is_deleted_when_its_retention_after_it_stopped_is_over_and_never_while_it_runs()
    {
        let mut v = view();
        let keep = Duration::from_secs(10);
        let mut r = running("rec-oslo-1", "media-oslo-1");
        v.recordings.insert(r.id.clone(), r.clone());
        assert!(
            expired_recordings(&v, i64::MAX / 2, keep).is_empty(),
            "it runs"
        );
        r.state = RecordingState::Stopped;
        r.stopped_unix_ms = Some(50_000);
        v.recordings.insert(r.id.clone(), r.clone());
        assert!(expired_recordings(&v, 59_999, keep).is_empty());
        assert_eq!(expired_recordings(&v, 60_000, keep), vec![r.clone()]);
        // Its own retention (its meeting's when it started) rules where it has one.
        r.retention = Some(Duration::from_secs(3600));
        v.recordings.insert(r.id.clone(), r.clone());
        assert!(expired_recordings(&v, 60_000, keep).is_empty());
        assert_eq!(expired_recordings(&v, 3_650_000, keep).len(), 1);
        // One that failed before it stopped counts from its start.
        r.state = RecordingState::Failed;
        r.stopped_unix_ms = None;
        r.retention = None;
        v.recordings.insert(r.id.clone(), r.clone());
        assert_eq!(expired_recordings(&v, 1_000 + 10_000, keep).len(), 1);
    }

    #[test]
    fn an_ended_meeting_is_deleted_when_its_retention_is_over_unless_it_still_records() {
        let mut v = view();
        let id = MeetingId::parse("abc-defg-hij").unwrap();
        let keep = Duration::from_secs(10);
        assert!(
            expired(&v, 1_000_000, keep).is_empty(),
            "an active meeting stays"
        );
        let m = v.meetings.get_mut(&id).unwrap();
        m.state = MeetingState::Ended;
        m.ended_unix_ms = Some(100_000);
        assert!(
            expired(&v, 109_999, keep).is_empty(),
            "within its retention"
        );
        assert_eq!(expired(&v, 110_000, keep), vec![id.clone()]);
        let r = running("rec-oslo-1", "media-oslo-1");
        v.recordings.insert(r.id.clone(), r);
        assert!(
            expired(&v, 110_000, keep).is_empty(),
            "a recording still runs"
        );
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
    fn a_recording_of_an_ended_meeting_is_finished_and_others_are_left() {
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

    #[test]
    fn a_meeting_its_host_ended_for_everyone_is_ended_once() {
        let mut v = view();
        let id = v.meetings.keys().next().unwrap().clone();
        let mut room = crate::model::Room::default();
        v.rooms.insert(id.clone(), room.clone());
        let none = plan(&v, 60_000, Duration::from_secs(5), &LastHeard::new());
        assert_eq!(none, vec![], "a room record alone ends nothing");
        room.ended = true;
        v.rooms.insert(id.clone(), room);
        let actions = plan(&v, 60_000, Duration::from_secs(5), &LastHeard::new());
        let [Action::EndMeeting { meeting }] = actions.as_slice() else {
            panic!("one end: {actions:?}");
        };
        assert_eq!(meeting.id, id);
        v.meetings
            .values_mut()
            .for_each(|m| m.state = MeetingState::Ended);
        assert_eq!(
            plan(&v, 60_000, Duration::from_secs(5), &LastHeard::new()),
            vec![],
            "an ended meeting is not ended again"
        );
    }

    /// The view after `plan`'s action on the recording was stored.
    fn stored(v: &mut ClusterView, a: &Action) {
        let r = match a {
            Action::AwaitMedia { recording }
            | Action::RefeedRecording { recording, .. }
            | Action::FinishRecording { recording, .. } => recording.clone(),
            other => panic!("not a recording's action: {other:?}"),
        };
        v.recordings.insert(r.id.clone(), r);
    }

    #[test]
    fn a_recording_whose_media_node_is_lost_waits_for_the_meeting_and_goes_on_fed_by_its_new_node()
    {
        let mut v = view();
        let node = recording_node("rec-oslo-1", "oslo", 4);
        v.recording.insert(node.id.clone(), node);
        let r = running("rec-oslo-1", "media-oslo-1");
        v.recordings.insert(r.id.clone(), r.clone());
        let ttl = Duration::from_secs(5);
        let lost = NodeId::parse("media-oslo-1").unwrap();
        let heard = LastHeard::from([(lost.clone(), 59_500)]);
        v.media.clear();

        // Nobody has rejoined yet: the recording waits, saying so.
        let actions = plan(&v, 60_000, ttl, &heard);
        let [a @ Action::AwaitMedia { recording }] = actions.as_slice() else {
            panic!("it waits: {actions:?}");
        };
        let gap = recording.gaps.last().unwrap();
        assert_eq!((gap.start_unix_ms, gap.end_unix_ms), (59_500, 0), "open");
        assert!(
            gap.reason.contains("media-oslo-1 was lost"),
            "{}",
            gap.reason
        );
        stored(&mut v, a);
        assert_eq!(plan(&v, 61_000, ttl, &heard), vec![], "still waiting");

        // Had the meeting ended meanwhile, the recording would end in that gap, saying so.
        let mut ended = v.clone();
        ended
            .meetings
            .values_mut()
            .for_each(|m| m.state = MeetingState::Ended);
        let actions = plan(&ended, 61_000, ttl, &heard);
        let [
            Action::FinishRecording {
                recording,
                gap: None,
            },
        ] = actions.as_slice()
        else {
            panic!("ended: {actions:?}");
        };
        let gap = recording.gaps.last().unwrap();
        assert_eq!(gap.end_unix_ms, 0, "left open");
        assert!(
            gap.reason
                .ends_with("media-oslo-1 was lost; the meeting ended meanwhile"),
            "{}",
            gap.reason
        );

        // The participants rejoined: the meeting is on media-oslo-2 (and on a node in
        // another region, which the recording does not take while one in its own is).
        let mut place = |id: &str, region: &str| {
            let n = media_node(id, region);
            let slot = Slot::first(common::ids::Region::parse(region).unwrap());
            let p = crate::model::StoredPlacement {
                node: n.id.clone(),
                epoch: 2,
                placed_unix_ms: 61_000,
                mod_revision: 9,
            };
            v.placements
                .entry(r.meeting.clone())
                .or_default()
                .insert(slot, p);
            v.media.insert(n.id.clone(), n);
        };
        place("media-sthlm-1", "stockholm");
        place("media-oslo-2", "oslo");
        let actions = plan(&v, 62_000, ttl, &heard);
        let [Action::RefeedRecording { recording, media }] = actions.as_slice() else {
            panic!("fed again: {actions:?}");
        };
        assert_eq!(media.id.as_str(), "media-oslo-2");
        assert_eq!(recording.media_node.as_str(), "media-oslo-2");
        assert_eq!(
            recording.node.as_str(),
            "rec-oslo-1",
            "on the same recording node"
        );
        assert_eq!(recording.segment, 2);
        let [gap] = recording.gaps.as_slice() else {
            panic!("one gap: {:?}", recording.gaps);
        };
        assert_eq!((gap.start_unix_ms, gap.end_unix_ms), (59_500, 62_000));
        assert!(
            gap.reason.contains("continued from media-oslo-2"),
            "{}",
            gap.reason
        );
    }

    #[test]
    fn a_recording_whose_meeting_does_not_come_back_ends_saying_why() {
        let mut v = view();
        let node = recording_node("rec-oslo-1", "oslo", 4);
        v.recording.insert(node.id.clone(), node);
        v.media.clear();
        let r = running("rec-oslo-1", "media-oslo-1");
        v.recordings.insert(r.id.clone(), r);
        let ttl = Duration::from_secs(5);
        let actions = plan(&v, 60_000, ttl, &LastHeard::new());
        let [a] = actions.as_slice() else {
            panic!("{actions:?}")
        };
        stored(&mut v, a);
        let wait = MEDIA_RETURN_WAIT.as_millis() as i64;
        // The gap started a lease TTL back (nobody heard the node go).
        assert_eq!(plan(&v, 55_000 + wait - 1, ttl, &LastHeard::new()), vec![]);
        let actions = plan(&v, 55_000 + wait, ttl, &LastHeard::new());
        let [
            Action::FinishRecording {
                recording,
                gap: None,
            },
        ] = actions.as_slice()
        else {
            panic!("ended: {actions:?}");
        };
        let gap = recording.gaps.last().unwrap();
        assert_eq!(
            (gap.start_unix_ms, gap.end_unix_ms),
            (55_000, 0),
            "left open"
        );
        assert!(gap.reason.contains("did not come back"), "{}", gap.reason);
    }
}
