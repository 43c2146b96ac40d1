//! Leader election and the leader's reconciler. Every replica campaigns through the store;
//! the winner, while its lease holds, repairs what the planner (`plan.rs`) finds:
//! placements whose node died or whose meeting ended (so the next join lands on a live
//! node), recordings whose recording node died (moved to another node, or failed saying
//! why) and recordings whose meeting or media node is gone (finished). A replica that
//! cannot renew its lease steps down at once.
mod census;
mod liveness;
pub mod plan;

use std::sync::Arc;
use std::time::Duration;

use common::cloud_recording::{self, Wish};
use tokio_util::sync::CancellationToken;

use self::census::Census;
use self::liveness::{Dead, Liveness};
use self::plan::Action;
use crate::model::{NodeKind, RecordingState};
use crate::recordings::system_audit;
use crate::service::Service;
use crate::store::Lease;

/// The two leases the leader deals with.
#[derive(Clone, Copy, Debug)]
pub struct Leases {
    /// Its own, in the election.
    pub election: Duration,
    /// The nodes': how long a node nobody watches survives without renewing.
    pub nodes: Duration,
}

pub async fn run(service: Arc<Service>, id: String, leases: Leases, shutdown: CancellationToken) {
    while !shutdown.is_cancelled() {
        match service
            .store
            .campaign(&id, leases.election, &shutdown)
            .await
        {
            Ok(None) => break,
            Ok(Some(term)) => lead(&service, &id, term, leases.nodes, &shutdown).await,
            Err(e) => tracing::warn!(error = %e, "leader election interrupted"),
        }
        service.metrics.is_leader.set(0);
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}

/// How long the leader lets changes to the view gather before it reconciles them.
const SETTLE: Duration = Duration::from_millis(50);

/// One term: reconcile every second and on every change, until the term is lost or we
/// shut down (then resign, so another replica takes over at once).
async fn lead(
    service: &Arc<Service>,
    id: &str,
    term: crate::store::Term,
    lease_ttl: Duration,
    shutdown: &CancellationToken,
) {
    tracing::info!(controller = id, "became leader");
    service.metrics.is_leader.set(1);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    // Files deleted recordings left on recording nodes that were away: a read of etcd
    // now and then, not on every pass.
    let mut erasures = tokio::time::interval(ERASURES_EVERY);
    let mut census = Census::default();
    let mut liveness = Liveness::new();
    // When the leader revoked dead nodes' leases lately, and when it last heard them.
    let mut buried = std::collections::VecDeque::new();
    let mut heard = plan::LastHeard::new();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = term.lost() => {
                tracing::warn!(controller = id, "lost the leader's lease");
                break;
            }
            _ = tick.tick() => reconcile(service, lease_ttl, &heard).await,
            _ = erasures.tick() => {
                if let Err(e) = service.carry_out_erasures().await {
                    service.metrics.etcd_errors.inc();
                    tracing::warn!(error = %e, "could not read the erasures left for recording nodes");
                }
            }
            _ = service.view.changed() => {
                // Changes come in bursts — a join storm commits a placement per first
                // join, every node reports its load — and a pass scans every meeting:
                // one pass, a moment after the first change, covers the burst.
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = term.lost() => {
                        tracing::warn!(controller = id, "lost the leader's lease");
                        break;
                    }
                    _ = tokio::time::sleep(SETTLE) => {}
                }
                reconcile(service, lease_ttl, &heard).await
            }
            Some(dead) = liveness.dead.recv() => bury(service, dead, &mut buried, &mut heard).await,
        }
        census.count(service);
        if service.view.is_synced() {
            liveness.sync(service);
        }
    }
    service.metrics.is_leader.set(0);
    // Only the leader counts nodes: a former leader's figures would go stale.
    service.metrics.cluster_nodes.reset();
    tracing::info!(controller = id, "no longer leader");
    term.resign().await;
}

/// A node that stopped answering its heartbeat stream: revokes its lease (if it is still
/// registered with it), which takes its registration and then its placements away.
/// Unless half the nodes stopped answering within a short time: then it is more likely
/// this controller that is cut off from them, and the nodes are left to their leases.
async fn bury(
    service: &Service,
    dead: Dead,
    buried: &mut std::collections::VecDeque<std::time::Instant>,
    heard: &mut plan::LastHeard,
) {
    const WINDOW: Duration = Duration::from_secs(10);
    let (registered, nodes) = service.view.read(|v| {
        let lease = match dead.kind {
            NodeKind::Media => v.media.get(&dead.node).map(|n| n.lease_id),
            NodeKind::Recording => v.recording.get(&dead.node).map(|n| n.lease_id),
        };
        (lease, v.media.len() + v.recording.len())
    });
    if registered != Some(dead.lease) {
        return;
    }
    let now = std::time::Instant::now();
    while buried
        .front()
        .is_some_and(|t| now.duration_since(*t) > WINDOW)
    {
        buried.pop_front();
    }
    // This one and those of the window: more than one, and half the nodes or more.
    let lately = buried.len() + 1;
    if lately > 1 && lately * 2 > nodes {
        tracing::warn!(
            node = %dead.node,
            why = dead.why,
            "half the nodes stopped answering at once: this controller may be the one cut off; leaving them to their leases"
        );
        return;
    }
    buried.push_back(now);
    // Kept for the planner (a recording's gap starts there) for a few minutes.
    let forget = common::unix_ms() - 300_000;
    heard.retain(|_, at| *at > forget);
    heard.insert(dead.node.clone(), dead.last_heard_unix_ms);
    tracing::warn!(node = %dead.node, kind = dead.kind.as_str(), why = dead.why, "node stopped answering; revoking its lease");
    if let Err(e) = service.store.revoke_lease(Lease(dead.lease)).await {
        service.metrics.etcd_errors.inc();
        tracing::warn!(node = %dead.node, error = %e, "could not revoke a dead node's lease; it runs out by itself");
    }
}

/// How often the leader looks for files of deleted recordings to remove from recording
/// nodes that are back.
const ERASURES_EVERY: Duration = Duration::from_secs(5);

/// One pass of the leader's reconciler: plan on the view, then carry the plan out.
pub async fn reconcile(service: &Service, lease_ttl: Duration, heard: &plan::LastHeard) {
    if !service.view.is_synced() {
        return;
    }
    let actions = service
        .view
        .read(|v| plan::plan(v, common::unix_ms(), lease_ttl, heard));
    for action in actions {
        if let Err(e) = apply(service, action).await {
            service.metrics.etcd_errors.inc();
            tracing::warn!(error = %e, "reconciler could not carry out a repair");
        }
    }
    // Personal data past its retention goes, meeting by meeting.
    let expired = service
        .view
        .read(|v| plan::expired(v, common::unix_ms(), service.retention));
    for id in expired {
        match service.store.delete_meeting(&id).await {
            Ok(()) => {
                tracing::info!(meeting = %id, "deleted the meeting and its personal data: its retention is over")
            }
            Err(e) => {
                service.metrics.etcd_errors.inc();
                tracing::warn!(meeting = %id, error = %e, "could not delete a meeting past its retention");
            }
        }
    }
    // So do recordings, files and record: the audit of their meeting (if it is kept)
    // says so.
    let now = common::unix_ms();
    let expired = service
        .view
        .read(|v| plan::expired_recordings(v, now, service.retention));
    for r in expired {
        let entry = system_audit("recording_deleted", &r.id, "its retention is over", now);
        if let Err(e) = service.erase_recording(&r, entry).await {
            tracing::warn!(recording = %r.id, error = %e, "could not delete a recording past its retention; trying again");
        }
    }
    let (meetings, nodes) = service.view.read(|v| {
        (
            v.meetings.values().filter(|m| !m.is_ended()).count(),
            v.media.len(),
        )
    });
    service.metrics.meetings_active.set(meetings as i64);
    service.metrics.media_nodes.set(nodes as i64);
}

async fn apply(service: &Service, action: Action) -> Result<(), crate::error::ApiError> {
    let m = &service.metrics;
    match action {
        Action::RemovePlacement {
            meeting,
            slot,
            mod_revision,
            why,
        } => {
            if service
                .store
                .remove_placement(&meeting, &slot, mod_revision)
                .await?
            {
                m.reconciled_placements.inc();
                tracing::info!(%meeting, %slot, why, "removed placement");
            }
        }
        Action::EndMeeting { meeting } => {
            let id = meeting.id.clone();
            service
                .end(meeting, "the host ended the meeting for everyone")
                .await?;
            tracing::info!(meeting = %id, "its host ended the meeting for everyone");
        }
        Action::FailRecording { recording } => {
            service.save(&recording).await?;
            m.recordings_failed.inc();
            tracing::warn!(recording = %recording.id, error = recording.error.as_deref().unwrap_or(""), "recording failed");
        }
        Action::MoveRecording {
            mut recording,
            media,
        } => {
            let to = recording.node.clone();
            let from = recording.earlier_nodes.last().cloned();
            service.save(&recording).await?;
            let started = match service.recording_node_addr(&to) {
                Some(addr) => service
                    .nodes
                    .start_recording(&addr, &recording, &media)
                    .await
                    .map_err(|e| e.to_string()),
                None => Err("the chosen node went away".to_owned()),
            };
            if let Err(e) = started {
                // Marked failed rather than left as is: its node is alive, so the next
                // pass would not move it again.
                recording.state = RecordingState::Failed;
                recording.error = Some(format!("moving to {to} failed: {e}"));
                service.save(&recording).await?;
                m.recordings_failed.inc();
                tracing::warn!(recording = %recording.id, %to, error = %e, "could not move a lost recording");
                return Ok(());
            }
            m.recordings_moved.inc();
            tracing::info!(recording = %recording.id, from = ?from, %to, segment = recording.segment, "recording moved after its node was lost");
        }
        Action::AwaitMedia { recording } => {
            service.save(&recording).await?;
            tracing::info!(recording = %recording.id, media = %recording.media_node, "the recording's media node was lost; it waits for the meeting to come back");
        }
        Action::RefeedRecording {
            mut recording,
            media,
        } => {
            let Some(addr) = service.recording_node_addr(&recording.node) else {
                // Gone meanwhile: the next pass moves the recording.
                return Ok(());
            };
            // The segment fed by the lost node ended with its feed (or ends now): its
            // files stay where they are, listed with the recording.
            let ended = recording.segment - 1;
            match service
                .nodes
                .stop_recording(&addr, recording.id.as_str())
                .await
            {
                Ok(manifest) => {
                    recording.take_manifest(&manifest);
                    recording
                        .files
                        .push(common::download::segment_manifest_name(ended));
                }
                Err(e) => {
                    tracing::warn!(recording = %recording.id, segment = ended, error = %e, "could not collect the segment fed by the lost media node; its files are not listed")
                }
            }
            service.save(&recording).await?;
            if let Err(e) = service
                .nodes
                .start_recording(&addr, &recording, &media)
                .await
            {
                recording.state = RecordingState::Failed;
                recording.error = Some(format!(
                    "going on fed by media node {} failed: {e}",
                    media.id
                ));
                service.save(&recording).await?;
                m.recordings_failed.inc();
                tracing::warn!(recording = %recording.id, media = %media.id, error = %e, "could not feed a recording from the meeting's new media node");
                return Ok(());
            }
            tracing::info!(recording = %recording.id, media = %media.id, segment = recording.segment, "recording goes on fed by the meeting's new media node");
        }
        Action::StartCloud { meeting, cloud } => {
            // Started meanwhile (the view lags behind our own writes): nothing to do.
            if service
                .store
                .get_recording(&cloud.recording)
                .await?
                .is_some()
            {
                return Ok(());
            }
            match service
                .begin_recording(&meeting, cloud.recording.clone())
                .await
            {
                // A wish to pause it is carried out on the next pass.
                Ok(_) => {}
                Err(e) => {
                    m.recordings_failed.inc();
                    tracing::warn!(recording = %cloud.recording, meeting = %meeting.id, error = %e, "could not start the cloud recording the hosts asked for");
                }
            }
        }
        Action::PauseCloud { recording, paused } => {
            pause_cloud(service, &recording, paused).await?;
        }
        Action::CloudEnded {
            meeting,
            recording,
            why,
        } => {
            let now = common::unix_ms();
            service
                .store
                .update_cloud_recording(&meeting, &mut |was| {
                    let was = was.filter(|c| c.recording == recording && c.on())?;
                    let cloud = crate::model::CloudRecording {
                        wish: Wish::Stopped,
                        since_unix_ms: now,
                        error: Some(why.clone()),
                        ..was
                    };
                    let action = system_audit("recording_failed", &recording, &why, now);
                    Some((Some(cloud), action))
                })
                .await?;
            tracing::warn!(%recording, %meeting, why, "the cloud recording the hosts asked for ended without them; the meeting is told");
        }
        Action::AbandonStart { mut recording } => {
            if let Some(addr) = service.recording_node_addr(&recording.node) {
                // Whatever the node has of it, if anything.
                let _ = service
                    .nodes
                    .stop_recording(&addr, recording.id.as_str())
                    .await;
            }
            recording.state = RecordingState::Failed;
            recording.stopped_unix_ms = Some(common::unix_ms());
            recording.error = Some(format!(
                "it did not start within {} s (the controller starting it was lost)",
                plan::START_STUCK.as_secs()
            ));
            service.save(&recording).await?;
            m.recordings_failed.inc();
            tracing::warn!(recording = %recording.id, "a recording stuck starting was abandoned");
        }
        Action::FinishRecording { mut recording, gap } => {
            match service.finish_recording(&mut recording, gap).await {
                Ok(()) => {
                    tracing::info!(recording = %recording.id, "recording ended with its meeting, or its media node was lost and the meeting did not come back")
                }
                Err(e) => {
                    tracing::warn!(recording = %recording.id, error = %e, "could not end a recording")
                }
            }
        }
    }
    Ok(())
}

/// Pauses recording `id` on its node (a gap opens) or resumes it (the gap closes), as
/// its record is now in the store (a pass that acted already leaves nothing to do).
async fn pause_cloud(
    service: &Service,
    id: &common::ids::RecordingId,
    paused: bool,
) -> Result<(), crate::error::ApiError> {
    let Some(mut r) = service.store.get_recording(id).await? else {
        return Ok(());
    };
    let from = if paused {
        RecordingState::Recording
    } else {
        RecordingState::Paused
    };
    if r.state != from {
        return Ok(());
    }
    let Some(addr) = service.recording_node_addr(&r.node) else {
        // Its node is gone: the repair of lost recordings moves it first.
        return Ok(());
    };
    if let Err(e) = service
        .nodes
        .pause_recording(&addr, id.as_str(), paused, cloud_recording::PAUSED_GAP)
        .await
    {
        tracing::warn!(recording = %id, paused, error = %e, "could not pause or resume a recording; trying again on the next pass");
        return Ok(());
    }
    let now = common::unix_ms();
    if paused {
        r.state = RecordingState::Paused;
        r.gaps.push(crate::model::Gap {
            start_unix_ms: now,
            end_unix_ms: 0,
            reason: cloud_recording::PAUSED_GAP.into(),
        });
    } else {
        r.state = RecordingState::Recording;
        for g in r
            .gaps
            .iter_mut()
            .filter(|g| g.end_unix_ms == 0 && g.reason == cloud_recording::PAUSED_GAP)
        {
            g.end_unix_ms = now;
        }
    }
    service.save(&r).await?;
    tracing::info!(recording = %id, paused, "cloud recording paused or resumed as its hosts asked");
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use common::keyspace::Slot;

    use super::*;
    use crate::model::{MediaNode, Meeting, MeetingState};
    use crate::store::{ClusterStore, MemoryStore, PlacementCommit};
    use crate::testing::{media_node, meeting, recording, recording_node, region, until};

    #[tokio::test]
    async fn the_leader_removes_placements_of_dead_nodes_and_of_ended_meetings_only() {
        let store = MemoryStore::new();
        let dying = store.grant_lease(Duration::from_secs(5)).await.unwrap();
        let living = store.grant_lease(Duration::from_secs(5)).await.unwrap();
        let a = media_node("media-oslo-1", "oslo");
        let b = media_node("media-sthlm-1", "stockholm");
        store.put_media_node(&a, dying).await.unwrap();
        store.put_media_node(&b, living).await.unwrap();
        let dead = meeting("aaa-aaaa-aaa");
        let live = meeting("bbb-bbbb-bbb");
        let mut ended = meeting("ccc-cccc-ccc");
        for m in [&dead, &live, &ended] {
            store.create_meeting(m).await.unwrap();
        }
        let commit = async |m: &Meeting, r: &str, n: &MediaNode| {
            let slot = Slot::first(region(r));
            let c = store.commit_placement(&m.id, &slot, &n.id, None).await;
            assert!(matches!(c, Ok(PlacementCommit::Committed(_))), "{c:?}");
        };
        commit(&dead, "oslo", &a).await;
        commit(&live, "stockholm", &b).await;
        // A join that raced the meeting's end placed it after the end removed placements.
        ended.state = MeetingState::Ended;
        store.end_meeting(&ended).await.unwrap();
        commit(&ended, "stockholm", &b).await;
        let (s, _stop) = Service::for_test(&store).await;
        store.expire_lease(dying);
        until("the view sees the node die", || {
            s.view.read(|v| v.media.len()) == 1
        })
        .await;

        let mut removed: Vec<_> = s
            .view
            .read(|v| {
                plan::plan(
                    v,
                    common::unix_ms(),
                    Duration::from_secs(5),
                    &plan::LastHeard::new(),
                )
            })
            .into_iter()
            .filter_map(|a| match a {
                Action::RemovePlacement { meeting, why, .. } => Some((meeting, why)),
                _ => None,
            })
            .collect();
        removed.sort();
        assert_eq!(
            removed,
            vec![
                (dead.id.clone(), "node gone"),
                (ended.id.clone(), "meeting ended")
            ]
        );
        let started = std::time::Instant::now();
        reconcile(&s, Duration::from_secs(5), &plan::LastHeard::new()).await;
        assert!(store.placements(&dead.id).await.unwrap().is_empty());
        assert!(store.placements(&ended.id).await.unwrap().is_empty());
        assert_eq!(
            store.placements(&live.id).await.unwrap().len(),
            1,
            "a live placement stays"
        );
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[tokio::test]
    async fn a_recording_whose_node_is_lost_with_nowhere_to_go_is_stored_failed_saying_why() {
        let store = MemoryStore::new();
        let rec_lease = store.grant_lease(Duration::from_secs(5)).await.unwrap();
        let media_lease = store.grant_lease(Duration::from_secs(5)).await.unwrap();
        let media = media_node("media-oslo-1", "oslo");
        store.put_media_node(&media, media_lease).await.unwrap();
        store
            .put_recording_node(&recording_node("rec-oslo-1", "oslo", 2), rec_lease)
            .await
            .unwrap();
        let m = meeting("abc-defg-hij");
        store.create_meeting(&m).await.unwrap();
        let r = recording("rec-1", "rec-oslo-1", media.id.as_str());
        assert_eq!(r.meeting, m.id);
        store.put_recording(&r).await.unwrap();
        let (s, _stop) = Service::for_test(&store).await;
        store.expire_lease(rec_lease);
        until("the recording node is gone", || {
            s.view.read(|v| v.recording.is_empty())
        })
        .await;
        reconcile(&s, Duration::from_secs(5), &plan::LastHeard::new()).await;
        let stored = store.get_recording(&r.id).await.unwrap().unwrap();
        assert_eq!(stored.state, RecordingState::Failed);
        let why = stored.error.unwrap();
        assert!(
            why.contains("rec-oslo-1 was lost") && why.contains("no recording node"),
            "{why}"
        );
        assert_eq!(stored.gaps.len(), 1, "the gap is recorded");
        assert!(stored.gaps[0].end_unix_ms >= stored.gaps[0].start_unix_ms);
    }
}
