//! Joining a meeting: the client's region, placement on a media node (decided on the view
//! corrected for joins its load reports cannot show yet, committed with compare-and-swap,
//! then prepared on the node), and the signed join token.
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::ids::{MeetingId, NodeId, ParticipantId, Region};
use common::keyspace::Slot;
use common::token::Role;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::lengths::MAX_PASSWORD_CHARS;
use crate::model::{Audience, Meeting, NodeKind, NodeState, StoredPlacement};
use crate::placement::{self, Load, NodeSnapshot, Placement};
use crate::schedule::Window;
use crate::service::Service;
use crate::store::PlacementCommit;

/// How long a placed join takes to show in the node's load report at the earliest (the
/// client fetches its token and opens the node's WebSocket): joins placed this long
/// before a report are taken to be in it.
const JOIN_TRANSIT_MS: i64 = 300;

#[derive(Clone, Debug)]
pub struct JoinInput {
    pub meeting: String,
    pub name: String,
    pub password: Option<String>,
    pub region: Option<String>,
    pub host_key: Option<String>,
    /// A webinar's panelist key.
    pub panelist_key: Option<String>,
    /// A registrant's personal join key (meetings that require registration).
    pub registrant_key: Option<String>,
    /// The media node a reconnecting client lost: checked before anyone is placed there
    /// again.
    pub lost_node: Option<String>,
}

#[derive(Clone, Debug)]
pub struct Joined {
    pub signal_url: String,
    pub token: String,
    pub region: Region,
    pub node: NodeId,
    pub participant: ParticipantId,
    pub role: Role,
    pub expires_in_secs: u64,
    /// TURN servers with credentials for this participant (none without `[turn]`).
    pub ice_servers: Vec<crate::turn::IceServer>,
}

/// Where a join goes: the node and the region it serves the join from.
#[derive(Debug)]
pub(crate) struct Placed {
    pub node: NodeId,
    pub region: Region,
    /// The placement this join committed, when it made a new one (the node must be
    /// prepared); `None` when it joined an existing one.
    pub committed: Option<(Slot, StoredPlacement)>,
}

impl Service {
    /// The client's region: an explicit region (if allowed), the CIDR map, the regional
    /// ingress header, then the default region.
    fn client_region(&self, caller: &Caller, explicit: Option<&str>) -> Result<Region, ApiError> {
        if let Some(r) = explicit {
            if !self.allow_region_override && !self.is_operator(caller) {
                return Err(ApiError::Forbidden(
                    "choosing a region needs an operator key".into(),
                ));
            }
            return self.known_region("region", r);
        }
        if let Some(ip) = caller.addr
            && let Some((_, r)) = self.regions.cidrs.iter().find(|(net, _)| net.contains(&ip))
        {
            return Ok(r.clone());
        }
        if let Some(h) = &caller.region_header
            && let Ok(r) = self.known_region("region header", h)
        {
            return Ok(r);
        }
        Ok(self.regions.default.clone())
    }

    /// Decides with [`placement::place`] on a snapshot corrected for recent joins, and
    /// counts this join against the chosen node at once, under the same lock, so that a
    /// burst of concurrent joins spreads over nodes instead of herding onto one.
    fn decide(&self, req: &placement::Request<'_>) -> Placement {
        let now = Instant::now();
        let mut recent = self.recent_joins.lock().expect("recent joins");
        let nodes: Vec<NodeSnapshot> = self.view.read(|v| {
            v.media
                .iter()
                .map(|(id, n)| {
                    let load = v.load.get(id).copied().unwrap_or_default();
                    let q = match recent.get_mut(id) {
                        Some(q) => q,
                        None => recent.entry(id.clone()).or_default(),
                    };
                    while q
                        .front()
                        .is_some_and(|(t, _)| now.duration_since(*t) > self.join_correction)
                    {
                        q.pop_front();
                    }
                    // Joins the last load report cannot show yet: those placed after it
                    // was measured, less the moment a join takes to reach the node.
                    let reported = load.updated_unix_ms - JOIN_TRANSIT_MS;
                    // Oldest first: those after the report are the queue's tail (a
                    // binary search, not a walk of a join storm's 5 s of joins).
                    let unreported = q.len() - q.partition_point(|(_, ms)| *ms <= reported);
                    NodeSnapshot {
                        id: id.clone(),
                        region: n.region.clone(),
                        draining: n.state != NodeState::Active,
                        capacity: n.capacity,
                        load: Load {
                            participants: load.participants,
                            bitrate_kbps: load.bitrate_in_kbps.max(load.bitrate_out_kbps),
                            cpu_cores: load.cpu_cores,
                        },
                        recent_joins: unreported as u32,
                    }
                })
                .collect()
        });
        let decision = placement::place(&nodes, &self.regions.topology, req);
        if let Placement::New { node, .. } | Placement::Existing { node, .. } = &decision {
            recent
                .entry(node.clone())
                .or_default()
                .push_back((now, common::unix_ms()));
        }
        decision
    }

    /// Every log line of a join carries its meeting and participant ids (the span), the
    /// ids the media node's lines about the session carry too; never the name, password
    /// or host key.
    pub async fn join(&self, caller: &Caller, req: JoinInput) -> Result<Joined, ApiError> {
        use tracing::Instrument;
        let started = Instant::now();
        let participant = ParticipantId::random();
        let meeting = Self::parse_meeting_id(&req.meeting);
        let span = match &meeting {
            Ok(m) => tracing::info_span!("join", meeting_id = %m, participant_id = %participant),
            Err(_) => tracing::info_span!("join", participant_id = %participant),
        };
        let res = async {
            let res = match meeting {
                Ok(m) => self.join_inner(caller, m, req, participant).await,
                Err(e) => Err(e),
            };
            match &res {
                Ok(j) => tracing::info!(node = %j.node, region = %j.region, role = j.role.as_str(), "joined"),
                Err(e) => tracing::info!(error = %e, "join refused"),
            }
            res
        }
        .instrument(span)
        .await;
        self.metrics
            .join_seconds
            .observe(started.elapsed().as_secs_f64());
        self.metrics
            .joins
            .with_label_values(&[match &res {
                Ok(_) => "ok",
                Err(ApiError::TooManyRequests { .. }) => "limited",
                Err(_) => "error",
            }])
            .inc();
        res
    }

    async fn join_inner(
        &self,
        caller: &Caller,
        meeting: MeetingId,
        req: JoinInput,
        participant: ParticipantId,
    ) -> Result<Joined, ApiError> {
        self.join_limits
            .check(caller.addr, &meeting, Instant::now())?;
        let name = signaling::limits::display_name(&req.name).map_err(ApiError::BadRequest)?;
        if req
            .password
            .as_ref()
            .is_some_and(|p| p.chars().count() > MAX_PASSWORD_CHARS)
        {
            return Err(ApiError::Forbidden("wrong meeting password".into()));
        }
        let client_region = self.client_region(caller, req.region.as_deref())?;
        self.require_synced()?;
        let m = self.meeting(&meeting).await?;
        if m.is_ended() {
            return Err(ApiError::Conflict(format!("meeting {meeting} has ended")));
        }
        let name = self.audience_name(caller, &m, name)?;
        // An operator (its key as the bearer) joins as a host, like the host key does.
        let role = if self.is_operator(caller) {
            Role::Host
        } else {
            self.check_secrets(&m, req.password, req.host_key, req.panelist_key)
                .await?
        };
        // A meeting that requires registration lets in its approved registrants (under
        // their registered name); its panel (host and panelist keys) does not register.
        let (name, registrant) = match (&m.registration, role) {
            (Some(_), Role::Attendee) => {
                let r = self
                    .registered_joiner(&meeting, req.registrant_key.as_deref())
                    .await?;
                // A signed-in user's own name stands.
                let name = if m.audience == Audience::Anyone {
                    r.name
                } else {
                    name
                };
                (name, Some(r.id))
            }
            _ => (name, None),
        };
        // A scheduled meeting lets its participants in from a while before it starts;
        // its hosts (and operators) come and go as they like.
        if role != Role::Host
            && let Some(schedule) = &m.schedule
        {
            match schedule.window(chrono::Utc::now()) {
                Window::Open => {}
                Window::TooEarly { opens } => {
                    return Err(ApiError::MeetingConflict {
                        code: "too_early",
                        message: format!(
                            "this meeting is not open yet: you can join from {} ({} minutes before it starts)",
                            schedule.local(opens),
                            schedule.join_before_minutes
                        ),
                    });
                }
                Window::Over { ended } => {
                    return Err(ApiError::MeetingConflict {
                        code: "series_over",
                        message: format!(
                            "this meeting's last occurrence ended at {}",
                            schedule.local(ended)
                        ),
                    });
                }
            }
        }
        let (locked, ended) = self.view.read(|v| {
            v.rooms
                .get(&meeting)
                .map_or((false, false), |r| (r.locked, r.ended))
        });
        if ended {
            return Err(ApiError::Conflict(format!(
                "meeting {meeting} has ended: its host ended it for everyone"
            )));
        }
        // A host (with the host key) still gets into a meeting they locked.
        if locked && role != Role::Host {
            return Err(ApiError::RefusedByHost {
                code: "meeting_locked",
                message: "this meeting is locked by its host: nobody new can join".into(),
            });
        }
        if let Some(lost) = &req.lost_node {
            self.check_lost_node(&meeting, lost).await;
        }

        let placed = self
            .place_and_commit(&meeting, &client_region, m.residency.as_ref())
            .await?;
        if let Some((slot, p)) = &placed.committed {
            tracing::info!(node = %p.node, epoch = p.epoch, "placed the meeting in {}", placed.region);
            self.prepare(&m, slot, p).await?;
        }
        let (node, region) = (placed.node, placed.region);
        let signal_base = self
            .view
            .read(|v| v.media.get(&node).map(|n| n.signal_url.clone()))
            .ok_or_else(|| {
                ApiError::Unavailable(format!(
                    "media node {node} disappeared during the join; try again"
                ))
            })?;
        // `decide` counted this join against the node already.
        let now = common::unix_ms() as u64 / 1000;
        let mut claims = self.signer.claims(
            now,
            participant.clone(),
            meeting.clone(),
            name,
            role,
            node.clone(),
            region.clone(),
        );
        claims.reg = registrant;
        let ice_servers = self
            .turn
            .as_ref()
            .map(|t| t.ice_servers(&region, &participant, now))
            .unwrap_or_default();
        Ok(Joined {
            ice_servers,
            signal_url: format!("{}/{}", signal_base.trim_end_matches('/'), meeting),
            token: self.signer.sign(&claims),
            region,
            node,
            participant,
            role,
            expires_in_secs: self.signer.ttl().as_secs(),
        })
    }

    /// Who may join `m`, and under which name: anyone under the name they give; in a
    /// meeting for signed-in users (or its organisation's) only those, under their
    /// sign-in's name (operators' automation too, under the name it gives).
    fn audience_name(
        &self,
        caller: &Caller,
        m: &Meeting,
        given: String,
    ) -> Result<String, ApiError> {
        if m.audience == Audience::Anyone {
            return Ok(given);
        }
        let Some(user) = &caller.user else {
            if self.is_operator(caller) {
                return Ok(given);
            }
            return Err(ApiError::SignInRequired(
                "this meeting is for signed-in users: sign in first".into(),
            ));
        };
        if m.audience == Audience::Organisation {
            let org = m.owner.as_ref().map_or("", |o| o.org());
            if !org.eq_ignore_ascii_case(user.org()) {
                return Err(ApiError::Forbidden(format!(
                    "this meeting is for members of {org}: you are signed in as {} of {}",
                    crate::lengths::truncate(&user.email, 60),
                    crate::lengths::truncate(user.org(), 60)
                )));
            }
        }
        // The provider's name, made fit for a roster (length, control characters).
        let real: String = user.name.chars().filter(|c| !c.is_control()).collect();
        let real = signaling::limits::bounded_name(real.trim().to_owned());
        signaling::limits::display_name(&real)
            .or_else(|_| signaling::limits::display_name(&user.email))
            .map_err(|e| ApiError::BadRequest(format!("your signed-in name: {e}")))
    }

    /// A reconnecting client says it lost media node `lost`: if that node hosts the
    /// meeting and does not answer its heartbeat stream within 300 ms, the join waits, up
    /// to a second, for the view to drop the node (the leader's watch revokes a dead
    /// node's lease within a fraction of that), so that it lands on a live one. A hint
    /// that names another node, or garbage, changes nothing.
    async fn check_lost_node(&self, meeting: &MeetingId, lost: &str) {
        const PROBE: Duration = Duration::from_millis(300);
        let Ok(id) = NodeId::parse(lost) else {
            return;
        };
        let Some(addr) = self.view.read(|v| {
            let hosts = v
                .placements
                .get(meeting)
                .is_some_and(|p| p.values().any(|p| p.node == id));
            v.media
                .get(&id)
                .filter(|_| hosts)
                .map(|n| n.grpc_addr.clone())
        }) else {
            return;
        };
        let probe = self
            .nodes
            .watch(NodeKind::Media, &addr, Duration::from_millis(250), PROBE)
            .await;
        let Err(e) = probe else {
            return;
        };
        // Only the leader revokes a node's lease, after its own two checks: one client's
        // word and one short probe on a loaded machine are not enough to take a node's
        // meetings away. The join waits a moment for the leader's verdict instead.
        tracing::info!(node = %id, error = %e, "a client lost this media node and it does not answer; waiting for the leader");
        let until = Instant::now() + Duration::from_secs(1);
        while self.view.read(|v| v.media.contains_key(&id)) && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Decides the node with [`placement::place`] and commits it with a transaction;
    /// when another controller won the race, follows its choice. The caller prepares the
    /// node when this committed a new placement.
    pub(crate) async fn place_and_commit(
        &self,
        meeting: &MeetingId,
        client_region: &Region,
        residency: Option<&Region>,
    ) -> Result<Placed, ApiError> {
        let mut known: BTreeMap<Slot, StoredPlacement> = self
            .view
            .read(|v| v.placements.get(meeting).cloned().unwrap_or_default());
        let placed = |outcome: &str| self.metrics.placements.with_label_values(&[outcome]).inc();
        for _ in 0..5 {
            let existing: BTreeMap<Slot, NodeId> = known
                .iter()
                .map(|(s, p)| (s.clone(), p.node.clone()))
                .collect();
            let req = placement::Request {
                client_region,
                residency,
                existing: &existing,
            };
            let (node, slot, outcome) = match self.decide(&req) {
                Placement::Existing {
                    node,
                    region,
                    outcome,
                    ..
                } => {
                    placed(outcome.as_str());
                    return Ok(Placed {
                        node,
                        region,
                        committed: None,
                    });
                }
                Placement::New {
                    node,
                    region,
                    n,
                    outcome,
                } => (node, Slot { region, n }, outcome),
                Placement::Refused(why) => {
                    placed("refused");
                    return Err(ApiError::Unavailable(format!(
                        "cannot place the join: {why}"
                    )));
                }
            };
            let commit = self
                .store
                .commit_placement(meeting, &slot, &node, known.get(&slot))
                .await
                .inspect_err(|_| self.metrics.etcd_errors.inc())?;
            match commit {
                PlacementCommit::Committed(p) => {
                    placed(outcome.as_str());
                    return Ok(Placed {
                        node,
                        region: slot.region.clone(),
                        committed: Some((slot, p)),
                    });
                }
                PlacementCommit::Lost(Some(p)) => {
                    known.insert(slot, p);
                }
                PlacementCommit::Lost(None) => {
                    known.remove(&slot);
                }
            }
        }
        Err(ApiError::Unavailable(
            "placement kept changing under contention; try again".into(),
        ))
    }

    /// Tells the node it hosts the meeting's slot (with what it shows of the meeting);
    /// if it will not, withdraws the placement.
    async fn prepare(&self, m: &Meeting, slot: &Slot, p: &StoredPlacement) -> Result<(), ApiError> {
        let meeting = &m.id;
        let addr = self
            .view
            .read(|v| v.media.get(&p.node).map(|n| n.grpc_addr.clone()))
            .unwrap_or_default();
        if let Err(e) = self
            .nodes
            .prepare_meeting(&addr, &slot.region, p.epoch, m)
            .await
        {
            let node = &p.node;
            tracing::warn!(meeting = %meeting, node = %node, error = %e, "prepare failed; withdrawing the placement");
            let _ = self
                .store
                .remove_placement(meeting, slot, p.mod_revision)
                .await;
            return Err(ApiError::Unavailable(format!(
                "media node {node} did not accept the meeting: {e}"
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::store::{ClusterStore, MemoryStore};
    use crate::testing::{media_node, meeting, region, until};

    #[tokio::test]
    async fn two_controllers_racing_one_meeting_over_slow_commits_agree_on_its_node() {
        let store = MemoryStore::new();
        let lease = store.grant_lease(Duration::from_secs(5)).await.unwrap();
        for id in ["media-oslo-1", "media-oslo-2"] {
            store
                .put_media_node(&media_node(id, "oslo"), lease)
                .await
                .unwrap();
        }
        let m = meeting("abc-defg-hij");
        store.create_meeting(&m).await.unwrap();
        let (a, _stop_a) = Service::for_test(&store).await;
        let (b, _stop_b) = Service::for_test(&store).await;
        until("both views see the nodes", || {
            a.view.read(|v| v.media.len()) == 2 && b.view.read(|v| v.media.len()) == 2
        })
        .await;
        // Each controller alone would pick a node by its own count of recent joins; make
        // them disagree, so that only the transaction can make them agree.
        a.decide(&placement::Request {
            client_region: &region("oslo"),
            residency: None,
            existing: &BTreeMap::new(),
        });
        store.set_commit_delay(Duration::from_millis(20));
        let oslo = region("oslo");
        let (pa, pb) = tokio::join!(
            a.place_and_commit(&m.id, &oslo, None),
            b.place_and_commit(&m.id, &oslo, None)
        );
        let (pa, pb) = (pa.unwrap(), pb.unwrap());
        assert_eq!(pa.node, pb.node, "both joins go to one node");
        assert!(
            pa.committed.is_some() != pb.committed.is_some(),
            "exactly one of them committed the placement: {pa:?} {pb:?}"
        );
        let stored = store.placements(&m.id).await.unwrap();
        assert_eq!(stored.len(), 1, "{stored:?}");
        assert_eq!(stored.values().next().unwrap().node, pa.node);
    }

    #[tokio::test]
    async fn a_join_whose_node_died_takes_its_slot_on_a_live_node_in_the_next_epoch() {
        let store = MemoryStore::new();
        let dying = store.grant_lease(Duration::from_secs(5)).await.unwrap();
        let living = store.grant_lease(Duration::from_secs(5)).await.unwrap();
        store
            .put_media_node(&media_node("media-oslo-1", "oslo"), dying)
            .await
            .unwrap();
        let m = meeting("abc-defg-hij");
        store.create_meeting(&m).await.unwrap();
        let (s, _stop) = Service::for_test(&store).await;
        until("the node shows", || s.view.read(|v| v.media.len()) == 1).await;
        let first = s
            .place_and_commit(&m.id, &region("oslo"), None)
            .await
            .unwrap();
        assert_eq!(first.node.as_str(), "media-oslo-1");
        assert_eq!(first.committed.as_ref().unwrap().1.epoch, 1);

        store
            .put_media_node(&media_node("media-oslo-2", "oslo"), living)
            .await
            .unwrap();
        store.expire_lease(dying);
        until("only the new node shows, with the placement", || {
            s.view.read(|v| {
                v.media.len() == 1
                    && v.media
                        .contains_key(&NodeId::parse("media-oslo-2").unwrap())
                    && v.placements.contains_key(&m.id)
            })
        })
        .await;
        let next = s
            .place_and_commit(&m.id, &region("oslo"), None)
            .await
            .unwrap();
        assert_eq!(next.node.as_str(), "media-oslo-2");
        let (slot, p) = next.committed.expect("a new placement");
        assert_eq!(slot, Slot::first(region("oslo")), "the dead node's slot");
        assert_eq!(p.epoch, 2);
    }
}
