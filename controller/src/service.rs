//! The service layer behind both the HTTP/JSON and the gRPC API: meetings, joins, nodes.
//! It speaks domain types and `ApiError`; the two edges translate.
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use common::ids::{MeetingId, NodeId, ParticipantId, Region};
use common::keyspace::Slot;
use common::token::{Role, TokenSigner};
use proto::v1::{MeetingRecord, MeetingStatus, NodeLoad, NodeState, PrepareMeetingRequest};

use crate::config::Regions;
use crate::metrics::Metrics;
use crate::nodes::NodeClients;
use crate::placement::{self, Capacity, Load, NodeSnapshot, Placement};
use crate::store::{PlacementCommit, Store, StoreError};
use crate::view::{SharedView, StoredPlacement};

pub const MAX_TITLE_CHARS: usize = 200;
pub const MAX_NAME_CHARS: usize = 64;
pub const MAX_PASSWORD_CHARS: usize = 128;
/// How long a placed join takes to show in the node's load report at the earliest (the
/// client fetches its token and opens the node's WebSocket): joins placed this long
/// before a report are taken to be in it.
const JOIN_TRANSIT_MS: i64 = 300;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad_request",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not_found",
            ApiError::Conflict(_) => "conflict",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Internal(_) => "internal",
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(_) => ApiError::Unavailable(e.to_string()),
            StoreError::Corrupt(_) => ApiError::Internal(e.to_string()),
        }
    }
}

/// The credentials of an `Authorization: Bearer <key>` value (scheme case-insensitive).
pub fn parse_bearer(value: &str) -> Option<&str> {
    let (scheme, rest) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
}

/// Who is calling, as the edge established it.
#[derive(Clone, Debug, Default)]
pub struct Caller {
    /// The `Authorization: Bearer` value, if any.
    pub bearer: Option<String>,
    pub addr: Option<IpAddr>,
    /// The value of the configured regional-ingress header, if present.
    pub region_header: Option<String>,
}

#[derive(Clone, Debug)]
pub struct NewMeeting {
    pub title: String,
    pub password: Option<String>,
    pub residency: Option<String>,
    pub classification: Option<String>,
}

#[derive(Clone, Debug)]
pub struct JoinInput {
    pub meeting: String,
    pub name: String,
    pub password: Option<String>,
    pub region: Option<String>,
    pub host_key: Option<String>,
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
}

/// A meeting as the API shows it.
#[derive(Clone, Debug)]
pub struct MeetingInfo {
    pub record: MeetingRecord,
    pub placements: Vec<(Region, NodeId)>,
}

#[derive(Clone, Debug)]
pub struct NodeInfo {
    pub id: NodeId,
    pub kind: &'static str,
    pub region: String,
    pub state: NodeState,
    pub load: NodeLoad,
    pub capacity: proto::v1::Capacity,
    pub slots: u32,
}

pub struct Service {
    pub store: Store,
    pub view: SharedView,
    pub nodes: NodeClients,
    pub signer: TokenSigner,
    pub regions: Regions,
    pub operator_keys: Vec<String>,
    pub allow_region_override: bool,
    pub join_correction: Duration,
    pub metrics: Metrics,
    /// Joins placed lately, per node: when (monotonic, and Unix ms to compare with the
    /// node's load report).
    recent_joins: Mutex<HashMap<NodeId, VecDeque<(Instant, i64)>>>,
    /// Key and validity of recording download links (None: no links).
    pub downloads: Option<(Vec<u8>, Duration)>,
}

fn hash_secret(secret: &str) -> Result<String, ApiError> {
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    Argon2::default()
        .hash_password(secret.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| ApiError::Internal(format!("hashing failed: {e}")))
}

pub(crate) fn verify_secret(secret: &str, phc: &str) -> bool {
    PasswordHash::new(phc)
        .map(|h| {
            Argon2::default()
                .verify_password(secret.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

/// Runs argon2 off the async threads: it is deliberately slow.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn random_secret() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..32)
        .map(|_| char::from(b"abcdefghijklmnopqrstuvwxyz0123456789"[rng.random_range(0..36)]))
        .collect()
}

impl Service {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Store,
        view: SharedView,
        nodes: NodeClients,
        signer: TokenSigner,
        regions: Regions,
        operator_keys: Vec<String>,
        allow_region_override: bool,
        join_correction: Duration,
        metrics: Metrics,
    ) -> Self {
        Self {
            store,
            view,
            nodes,
            signer,
            regions,
            operator_keys,
            allow_region_override,
            join_correction,
            metrics,
            recent_joins: Mutex::default(),
            downloads: None,
        }
    }

    fn is_operator(&self, caller: &Caller) -> bool {
        caller.bearer.as_deref().is_some_and(|b| {
            self.operator_keys
                .iter()
                .any(|k| constant_time_eq(k.as_bytes(), b.as_bytes()))
        })
    }

    pub fn require_operator(&self, caller: &Caller) -> Result<(), ApiError> {
        match &caller.bearer {
            None => Err(ApiError::Unauthorized(
                "this call needs an operator key: Authorization: Bearer <key>".into(),
            )),
            Some(_) if self.is_operator(caller) => Ok(()),
            Some(_) => Err(ApiError::Unauthorized(
                "the operator key is not valid".into(),
            )),
        }
    }

    fn require_synced(&self) -> Result<(), ApiError> {
        if self.view.is_synced() {
            Ok(())
        } else {
            Err(ApiError::Unavailable(
                "cluster state store (etcd) unreachable: the controller cannot place joins right now; try again shortly"
                    .into(),
            ))
        }
    }

    fn known_region(&self, key: &str, name: &str) -> Result<Region, ApiError> {
        let r = Region::parse(name).map_err(|e| ApiError::BadRequest(format!("{key}: {e}")))?;
        if self.regions.known.contains(&r)
            || self
                .view
                .read(|v| v.media.values().any(|n| n.region == name))
        {
            Ok(r)
        } else {
            Err(ApiError::BadRequest(format!(
                "{key}: unknown region {name:?}"
            )))
        }
    }

    fn parse_meeting_id(id: &str) -> Result<MeetingId, ApiError> {
        MeetingId::parse(id).map_err(|_| {
            ApiError::NotFound(format!("meeting {:?} does not exist", truncate(id, 80)))
        })
    }

    pub async fn create_meeting(
        &self,
        caller: &Caller,
        req: NewMeeting,
    ) -> Result<(MeetingInfo, String), ApiError> {
        self.require_operator(caller)?;
        let title = req.title.trim().to_owned();
        if title.is_empty() {
            return Err(ApiError::BadRequest("title: must not be empty".into()));
        }
        if title.chars().count() > MAX_TITLE_CHARS {
            return Err(ApiError::BadRequest(format!(
                "title: at most {MAX_TITLE_CHARS} characters"
            )));
        }
        if title.chars().any(char::is_control) {
            return Err(ApiError::BadRequest(
                "title: must not contain control characters".into(),
            ));
        }
        if let Some(p) = &req.password
            && (p.is_empty() || p.chars().count() > MAX_PASSWORD_CHARS)
        {
            return Err(ApiError::BadRequest(format!(
                "password: 1 to {MAX_PASSWORD_CHARS} characters"
            )));
        }
        let residency = match &req.residency {
            Some(r) => self.known_region("residency", r)?.to_string(),
            None => String::new(),
        };
        let classification = match &req.classification {
            Some(c) => Region::parse(c)
                .map_err(|_| {
                    ApiError::BadRequest(
                        "classification: 1-63 characters of a-z, 0-9 and '-'".into(),
                    )
                })?
                .to_string(),
            None => "internal".to_owned(),
        };
        let host_key = random_secret();
        let (password_hash, host_key_hash) = {
            let (pw, hk) = (req.password.clone(), host_key.clone());
            blocking(move || -> Result<(String, String), ApiError> {
                let p = match pw {
                    Some(p) => hash_secret(&p)?,
                    None => String::new(),
                };
                Ok((p, hash_secret(&hk)?))
            })
            .await??
        };
        let mut record = MeetingRecord {
            title,
            password_hash,
            residency,
            classification,
            host_key_hash,
            status: MeetingStatus::Active as i32,
            created_unix_ms: common::unix_ms(),
            ..Default::default()
        };
        for _ in 0..5 {
            let id = MeetingId::random();
            record.meeting_id = id.to_string();
            if self
                .store
                .create_meeting(&record, &id)
                .await
                .inspect_err(|_| self.metrics.etcd_errors.inc())?
            {
                return Ok((
                    MeetingInfo {
                        record,
                        placements: vec![],
                    },
                    host_key,
                ));
            }
        }
        Err(ApiError::Internal("could not allocate a meeting id".into()))
    }

    /// The meeting from the view, or from etcd if the view has not seen it yet.
    pub(crate) async fn meeting_record(&self, id: &MeetingId) -> Result<MeetingRecord, ApiError> {
        if let Some(m) = self.view.read(|v| v.meetings.get(id).cloned()) {
            return Ok(m);
        }
        match self
            .store
            .get_meeting(id)
            .await
            .inspect_err(|_| self.metrics.etcd_errors.inc())?
        {
            Some(m) => Ok(m),
            None => Err(ApiError::NotFound(format!("meeting {id} does not exist"))),
        }
    }

    fn info(&self, record: MeetingRecord) -> MeetingInfo {
        let placements = MeetingId::parse(&record.meeting_id)
            .ok()
            .map(|id| {
                self.view.read(|v| {
                    v.placements
                        .get(&id)
                        .into_iter()
                        .flatten()
                        .filter_map(|(s, p)| {
                            NodeId::parse(&p.record.node_id)
                                .ok()
                                .map(|n| (s.region.clone(), n))
                        })
                        .collect()
                })
            })
            .unwrap_or_default();
        MeetingInfo { record, placements }
    }

    pub async fn get_meeting(&self, caller: &Caller, id: &str) -> Result<MeetingInfo, ApiError> {
        self.require_operator(caller)?;
        let id = Self::parse_meeting_id(id)?;
        Ok(self.info(self.meeting_record(&id).await?))
    }

    pub async fn list_meetings(
        &self,
        caller: &Caller,
        state: Option<&str>,
    ) -> Result<Vec<MeetingInfo>, ApiError> {
        self.require_operator(caller)?;
        let want = match state {
            None | Some("") => None,
            Some("active") => Some(MeetingStatus::Active as i32),
            Some("ended") => Some(MeetingStatus::Ended as i32),
            Some(other) => {
                return Err(ApiError::BadRequest(format!(
                    "state: expected \"active\" or \"ended\", got {:?}",
                    truncate(other, 40)
                )));
            }
        };
        self.require_synced()?;
        let mut records: Vec<MeetingRecord> = self.view.read(|v| {
            v.meetings
                .values()
                .filter(|m| want.is_none_or(|s| m.status == s))
                .cloned()
                .collect()
        });
        records.sort_by(|a, b| {
            b.created_unix_ms
                .cmp(&a.created_unix_ms)
                .then(a.meeting_id.cmp(&b.meeting_id))
        });
        Ok(records.into_iter().map(|r| self.info(r)).collect())
    }

    pub async fn end_meeting(&self, caller: &Caller, id: &str) -> Result<MeetingInfo, ApiError> {
        self.require_operator(caller)?;
        let id = Self::parse_meeting_id(id)?;
        let mut record = self.meeting_record(&id).await?;
        if record.status == MeetingStatus::Ended as i32 {
            return Ok(self.info(record));
        }
        let nodes: Vec<String> = self.view.read(|v| {
            v.placements
                .get(&id)
                .into_iter()
                .flatten()
                .filter_map(|(_, p)| NodeId::parse(&p.record.node_id).ok())
                .filter_map(|n| v.media.get(&n).map(|m| m.grpc_addr.clone()))
                .collect()
        });
        record.status = MeetingStatus::Ended as i32;
        record.ended_unix_ms = common::unix_ms();
        self.store
            .end_meeting(&id, &record)
            .await
            .inspect_err(|_| self.metrics.etcd_errors.inc())?;
        for addr in nodes {
            if let Err(e) = self
                .nodes
                .close_meeting(&addr, id.as_str(), "meeting ended")
                .await
            {
                tracing::warn!(meeting = %id, error = %e, "could not tell a node the meeting ended");
            }
        }
        Ok(MeetingInfo {
            record,
            placements: vec![],
        })
    }

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
                .filter_map(|(id, rec)| {
                    let region = Region::parse(&rec.region).ok()?;
                    let cap = rec.capacity.unwrap_or_default();
                    let load = v.load.get(id).cloned().unwrap_or_default();
                    let q = recent.entry(id.clone()).or_default();
                    while q
                        .front()
                        .is_some_and(|(t, _)| now.duration_since(*t) > self.join_correction)
                    {
                        q.pop_front();
                    }
                    // Joins the last load report cannot show yet: those placed after it
                    // was measured, less the moment a join takes to reach the node.
                    let reported = load.updated_unix_ms - JOIN_TRANSIT_MS;
                    let unreported = q.iter().filter(|(_, ms)| *ms > reported).count();
                    Some(NodeSnapshot {
                        id: id.clone(),
                        region,
                        draining: rec.state != NodeState::Active as i32,
                        capacity: Capacity {
                            participants: cap.participants,
                            bitrate_kbps: cap.bitrate_kbps,
                            cpu_cores: cap.cpu_cores,
                        },
                        load: Load {
                            participants: load.participants,
                            bitrate_kbps: load.bitrate_in_kbps.max(load.bitrate_out_kbps),
                            cpu_cores: load.cpu_cores,
                        },
                        recent_joins: unreported as u32,
                    })
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

    pub async fn join(&self, caller: &Caller, req: JoinInput) -> Result<Joined, ApiError> {
        let started = Instant::now();
        let res = self.join_inner(caller, req).await;
        self.metrics
            .join_seconds
            .observe(started.elapsed().as_secs_f64());
        self.metrics
            .joins
            .with_label_values(&[if res.is_ok() { "ok" } else { "error" }])
            .inc();
        res
    }

    async fn join_inner(&self, caller: &Caller, req: JoinInput) -> Result<Joined, ApiError> {
        let meeting = Self::parse_meeting_id(&req.meeting)?;
        let name = req.name.trim().to_owned();
        if name.is_empty()
            || name.chars().count() > MAX_NAME_CHARS
            || name.chars().any(char::is_control)
        {
            return Err(ApiError::BadRequest(format!(
                "name: 1 to {MAX_NAME_CHARS} printable characters"
            )));
        }
        if req
            .password
            .as_ref()
            .is_some_and(|p| p.chars().count() > MAX_PASSWORD_CHARS)
        {
            return Err(ApiError::Forbidden("wrong meeting password".into()));
        }
        let client_region = self.client_region(caller, req.region.as_deref())?;
        self.require_synced()?;
        let record = self.meeting_record(&meeting).await?;
        if record.status == MeetingStatus::Ended as i32 {
            return Err(ApiError::Conflict(format!("meeting {meeting} has ended")));
        }
        let role = self
            .check_secrets(&record, req.password, req.host_key)
            .await?;
        let residency = if record.residency.is_empty() {
            None
        } else {
            Region::parse(&record.residency).ok()
        };

        let (node, region) = self
            .place_and_commit(&meeting, &client_region, residency.as_ref())
            .await?;
        let (signal_base, _) = self
            .view
            .read(|v| {
                v.media
                    .get(&node)
                    .map(|n| (n.signal_url.clone(), n.grpc_addr.clone()))
            })
            .ok_or_else(|| {
                ApiError::Unavailable(format!(
                    "media node {node} disappeared during the join; try again"
                ))
            })?;
        // `decide` counted this join against the node already.

        let participant = ParticipantId::random();
        let now = common::unix_ms() as u64 / 1000;
        let claims = self.signer.claims(
            now,
            participant.clone(),
            meeting.clone(),
            name,
            role,
            node.clone(),
            region.clone(),
        );
        Ok(Joined {
            signal_url: format!("{}/{}", signal_base.trim_end_matches('/'), meeting),
            token: self.signer.sign(&claims),
            region,
            node,
            participant,
            role,
            expires_in_secs: self.signer.ttl().as_secs(),
        })
    }

    async fn check_secrets(
        &self,
        record: &MeetingRecord,
        password: Option<String>,
        host_key: Option<String>,
    ) -> Result<Role, ApiError> {
        let (pw_hash, hk_hash) = (record.password_hash.clone(), record.host_key_hash.clone());
        if !pw_hash.is_empty() && password.is_none() && host_key.is_none() {
            return Err(ApiError::Unauthorized(
                "this meeting needs a password".into(),
            ));
        }
        blocking(move || {
            if let Some(hk) = host_key {
                return if verify_secret(&hk, &hk_hash) {
                    Ok(Role::Host)
                } else {
                    Err(ApiError::Forbidden("wrong host key".into()))
                };
            }
            if !pw_hash.is_empty() && !verify_secret(password.as_deref().unwrap_or(""), &pw_hash) {
                return Err(ApiError::Forbidden("wrong meeting password".into()));
            }
            Ok(Role::Attendee)
        })
        .await?
    }

    /// Decides the node with [`placement::place`] and commits it with a transaction;
    /// when another controller won the race, follows its choice.
    async fn place_and_commit(
        &self,
        meeting: &MeetingId,
        client_region: &Region,
        residency: Option<&Region>,
    ) -> Result<(NodeId, Region), ApiError> {
        let mut known: BTreeMap<Slot, StoredPlacement> = self
            .view
            .read(|v| v.placements.get(meeting).cloned().unwrap_or_default());
        for _ in 0..5 {
            let existing: BTreeMap<Slot, NodeId> = known
                .iter()
                .filter_map(|(r, p)| {
                    NodeId::parse(&p.record.node_id)
                        .ok()
                        .map(|n| (r.clone(), n))
                })
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
                    self.metrics
                        .placements
                        .with_label_values(&[outcome.as_str()])
                        .inc();
                    return Ok((node, region));
                }
                Placement::New {
                    node,
                    region,
                    n,
                    outcome,
                } => (node, Slot { region, n }, outcome),
                Placement::Refused(why) => {
                    self.metrics
                        .placements
                        .with_label_values(&["refused"])
                        .inc();
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
                    known.insert(slot.clone(), p.clone());
                    self.prepare(meeting, &slot, &node, &p).await?;
                    self.metrics
                        .placements
                        .with_label_values(&[outcome.as_str()])
                        .inc();
                    return Ok((node, slot.region));
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

    async fn prepare(
        &self,
        meeting: &MeetingId,
        slot: &Slot,
        node: &NodeId,
        p: &StoredPlacement,
    ) -> Result<(), ApiError> {
        let addr = self
            .view
            .read(|v| v.media.get(node).map(|n| n.grpc_addr.clone()))
            .unwrap_or_default();
        let req = PrepareMeetingRequest {
            meeting_id: meeting.to_string(),
            region: slot.region.to_string(),
            epoch: p.record.epoch,
        };
        if let Err(e) = self.nodes.prepare_meeting(&addr, req).await {
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

    pub fn list_nodes(&self, caller: &Caller) -> Result<Vec<NodeInfo>, ApiError> {
        self.require_operator(caller)?;
        self.require_synced()?;
        Ok(self.view.read(|v| {
            let media = v.media.iter().map(|(id, n)| NodeInfo {
                id: id.clone(),
                kind: "media",
                region: n.region.clone(),
                state: NodeState::try_from(n.state).unwrap_or(NodeState::Unspecified),
                load: v.load.get(id).cloned().unwrap_or_default(),
                capacity: n.capacity.unwrap_or_default(),
                slots: 0,
            });
            let rec = v.recording.iter().map(|(id, n)| NodeInfo {
                id: id.clone(),
                kind: "recording",
                region: n.region.clone(),
                state: NodeState::try_from(n.state).unwrap_or(NodeState::Unspecified),
                load: v.load.get(id).cloned().unwrap_or_default(),
                capacity: Default::default(),
                slots: n.slots,
            });
            media.chain(rec).collect()
        }))
    }

    pub async fn drain_node(&self, caller: &Caller, id: &str) -> Result<NodeInfo, ApiError> {
        self.require_operator(caller)?;
        self.require_synced()?;
        let node = NodeId::parse(id).map_err(|_| {
            ApiError::NotFound(format!("node {:?} is not registered", truncate(id, 80)))
        })?;
        let (media, recording) = self
            .view
            .read(|v| (v.media.get(&node).cloned(), v.recording.get(&node).cloned()));
        let result = match (&media, &recording) {
            (Some(m), _) => self.nodes.drain_media(&m.grpc_addr).await,
            (None, Some(r)) => self.nodes.drain_recording(&r.grpc_addr).await,
            (None, None) => {
                return Err(ApiError::NotFound(format!("node {node} is not registered")));
            }
        };
        let resp = result.map_err(|e| ApiError::Unavailable(e.to_string()))?;
        let mut info = self
            .list_nodes(caller)?
            .into_iter()
            .find(|n| n.id == node)
            .ok_or_else(|| ApiError::NotFound(format!("node {node} left the cluster")))?;
        info.state = NodeState::Draining;
        info.load.participants = resp.participants;
        info.load.meetings = resp.meetings;
        Ok(info)
    }
}

pub(crate) fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}
