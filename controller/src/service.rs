//! The service layer behind both the HTTP/JSON and the gRPC API: what every call needs
//! (the store, the view, the node clients, the token signer, the regions) and the checks
//! they share. The calls themselves live by concern: `meetings`, `join`, `nodes`,
//! `recordings`; the two edges translate them. It speaks domain types and `ApiError`.
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::ids::{MeetingId, NodeId, Region};
use common::token::TokenSigner;

use crate::config::Regions;
use crate::error::ApiError;
use crate::lengths::truncate;
use crate::metrics::Metrics;
use crate::model::Meeting;
use crate::node_rpc::NodeClients;
use crate::store::ClusterStore;
use crate::view::SharedView;

pub struct Service {
    pub store: Arc<dyn ClusterStore>,
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
    pub(crate) recent_joins: Mutex<HashMap<NodeId, VecDeque<(Instant, i64)>>>,
    /// Key and validity of recording download links (None: no links).
    pub downloads: Option<(Vec<u8>, Duration)>,
    pub join_limits: crate::limits::JoinLimits,
    /// TURN servers and their shared secret (None: joins offer no ICE servers).
    pub turn: Option<crate::turn::Turn>,
    /// Where users reach the controllers (`[controller] public_url`), without a
    /// trailing slash.
    pub public_url: Option<String>,
    /// Sign-in (`[oidc]`); None without it.
    pub oidc: Option<Arc<crate::oidc::Oidc>>,
    /// Sessions of signed-in users: there with `[oidc]` or `[accounts]`.
    pub sessions: Option<Arc<crate::sessions::Sessions>>,
    /// Local accounts (`[accounts]`); None without them.
    pub accounts: Option<Arc<crate::accounts::Accounts>>,
    /// How long an ended meeting's personal data is kept (`retention_secs`).
    pub retention: Duration,
}

impl Service {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Arc<dyn ClusterStore>,
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
            join_limits: crate::limits::JoinLimits::new(&Default::default()),
            turn: None,
            public_url: None,
            oidc: None,
            sessions: None,
            accounts: None,
            retention: Duration::from_secs(30 * 24 * 3600),
        }
    }

    pub(crate) fn require_synced(&self) -> Result<(), ApiError> {
        if self.view.is_synced() {
            Ok(())
        } else {
            Err(ApiError::Unavailable(
                "cluster state store (etcd) unreachable: the controller cannot place joins right now; try again shortly"
                    .into(),
            ))
        }
    }

    /// `name` as a region that is configured or has a media node; `key` names the field.
    pub(crate) fn known_region(&self, key: &str, name: &str) -> Result<Region, ApiError> {
        let r = Region::parse(name).map_err(|e| ApiError::BadRequest(format!("{key}: {e}")))?;
        if self.regions.known.contains(&r)
            || self.view.read(|v| v.media.values().any(|n| n.region == r))
        {
            Ok(r)
        } else {
            Err(ApiError::BadRequest(format!(
                "{key}: unknown region {name:?}"
            )))
        }
    }

    pub(crate) fn parse_meeting_id(id: &str) -> Result<MeetingId, ApiError> {
        MeetingId::parse(id).map_err(|_| {
            ApiError::NotFound(format!("meeting {:?} does not exist", truncate(id, 80)))
        })
    }

    /// The meeting from the view, or from the store if the view has not seen it yet.
    pub(crate) async fn meeting(&self, id: &MeetingId) -> Result<Meeting, ApiError> {
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
}

#[cfg(test)]
impl Service {
    /// A service on `store` with its view following it (synced when this returns), and
    /// the token that stops the view. Regions: oslo (default) and stockholm. Node calls go
    /// to a closed port and fail at once.
    pub(crate) async fn for_test(
        store: &crate::store::MemoryStore,
    ) -> (Arc<Service>, tokio_util::sync::CancellationToken) {
        use crate::testing::{region, until};
        let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let signer =
            TokenSigner::from_pem(kp.serialize_pem().as_bytes(), "k1", Duration::from_secs(60))
                .unwrap();
        let regions = Regions {
            known: vec![region("oslo"), region("stockholm")],
            default: region("oslo"),
            cidrs: Vec::new(),
            topology: Default::default(),
        };
        let view = SharedView::default();
        let store: Arc<dyn ClusterStore> = Arc::new(store.clone());
        let service = Service::new(
            store.clone(),
            view.clone(),
            NodeClients::new(None, Duration::from_millis(200)),
            signer,
            regions,
            vec!["operator-key-0123456789".into()],
            false,
            Duration::from_secs(5),
            Metrics::new(&prometheus::Registry::new()),
        );
        let stop = tokio_util::sync::CancellationToken::new();
        tokio::spawn(view.clone().run_watcher(store, stop.clone()));
        until("the view syncs", || view.is_synced()).await;
        (Arc::new(service), stop)
    }
}
