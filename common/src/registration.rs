//! A node's registration: its record and load in etcd, bound to its own lease, renewed
//! every second. Liveness is the lease (DESIGN §2): if the node cannot renew within the
//! lease's TTL it counts itself gone (self-fencing) and stops taking joins until it has
//! registered again.
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use etcd_client::{Client, PutOptions};
use prost::Message;
use proto::v1::{MediaNodeRecord, NodeLoad, NodeState, RecordingNodeRecord};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::EtcdConfig;
use crate::ids::NodeId;
use crate::keyspace::Keyspace;

/// What a node publishes about itself.
#[derive(Clone, Debug, PartialEq)]
pub enum NodeRecord {
    Media(MediaNodeRecord),
    Recording(RecordingNodeRecord),
}

impl NodeRecord {
    fn with_lease(&self, lease: i64) -> Vec<u8> {
        match self {
            NodeRecord::Media(r) => MediaNodeRecord {
                lease_id: lease,
                ..r.clone()
            }
            .encode_to_vec(),
            NodeRecord::Recording(r) => RecordingNodeRecord {
                lease_id: lease,
                ..r.clone()
            }
            .encode_to_vec(),
        }
    }
    fn key(&self, ks: &Keyspace, node: &NodeId) -> String {
        match self {
            NodeRecord::Media(_) => ks.media_node(node),
            NodeRecord::Recording(_) => ks.recording_node(node),
        }
    }
    pub fn set_state(&mut self, state: NodeState) {
        match self {
            NodeRecord::Media(r) => r.state = state as i32,
            NodeRecord::Recording(r) => r.state = state as i32,
        }
    }
}

/// When the lease was last renewed, and whether the node is fenced.
struct Renewal {
    last: Mutex<Option<Instant>>,
    fenced: watch::Sender<bool>,
}

impl Renewal {
    /// The lease was just renewed: the node is not fenced (at once, not at the next
    /// check, so that the first `Watch` after registering is served).
    fn renewed(&self) {
        *self.last.lock().expect("registration lock") = Some(Instant::now());
        self.fenced
            .send_if_modified(|f| std::mem::replace(f, false));
    }
}

/// Handle on the registration task.
pub struct Registration {
    record: watch::Sender<NodeRecord>,
    last_renewal: Arc<Renewal>,
    ttl: Duration,
    fenced: watch::Receiver<bool>,
    task: JoinHandle<()>,
}

/// Why a node whose lease was last renewed at `last` (None: never) is fenced, if it is.
fn fence(last: &Mutex<Option<Instant>>, ttl: Duration) -> Result<(), String> {
    // The lock guards a plain Instant and is never held across an await.
    match *last.lock().expect("registration lock") {
        None => Err("not registered in etcd yet".into()),
        Some(t) if t.elapsed() >= ttl => Err(format!(
            "lease not renewed for {:.1}s (etcd unreachable?)",
            t.elapsed().as_secs_f64()
        )),
        Some(_) => Ok(()),
    }
}

/// Publishes whether the node is fenced, checked every 100 ms, until `shutdown`; says so
/// when a registered node becomes fenced and when it has registered again.
async fn watch_fence(renewal: Arc<Renewal>, ttl: Duration, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut was: Option<bool> = None;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let now = fence(&renewal.last, ttl);
        renewal
            .fenced
            .send_if_modified(|f| std::mem::replace(f, now.is_err()) != now.is_err());
        match (&now, was) {
            (Err(why), Some(false)) => tracing::warn!(
                why,
                "fenced: this node may have been replaced; it takes no joins and ends its sessions"
            ),
            (Ok(()), Some(true)) => tracing::info!("registered again: no longer fenced"),
            _ => {}
        }
        // "Fenced" before the first registration is not news.
        if now.is_ok() || was.is_some() {
            was = Some(now.is_err());
        }
    }
}

impl Registration {
    /// Starts registering `record` and publishing `load` until `shutdown`, then revokes the lease.
    pub fn spawn(
        cfg: EtcdConfig,
        node: NodeId,
        record: NodeRecord,
        load: watch::Receiver<NodeLoad>,
        shutdown: CancellationToken,
    ) -> Self {
        let (record_tx, record_rx) = watch::channel(record);
        let ttl = cfg.lease_ttl();
        let (fenced_tx, fenced) = watch::channel(true);
        let last_renewal = Arc::new(Renewal {
            last: Mutex::new(None),
            fenced: fenced_tx,
        });
        tokio::spawn(watch_fence(last_renewal.clone(), ttl, shutdown.clone()));
        let task = tokio::spawn(run(
            cfg,
            node,
            record_rx,
            load,
            shutdown,
            last_renewal.clone(),
        ));
        Self {
            record: record_tx,
            last_renewal,
            ttl,
            fenced,
            task,
        }
    }

    /// `Ok` while the lease was renewed within its TTL; otherwise why the node is fenced.
    pub fn check(&self) -> Result<(), String> {
        fence(&self.last_renewal.last, self.ttl)
    }

    /// Calls `fence` each time the node becomes fenced, until `shutdown`.
    pub fn on_fenced(&self, shutdown: CancellationToken, fence: impl Fn() + Send + 'static) {
        let mut fenced = self.fenced();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    changed = fenced.changed() => if changed.is_err() { return },
                }
                if *fenced.borrow_and_update() {
                    fence();
                }
            }
        });
    }

    /// Whether the node is fenced (unregistered, or its lease unrenewed for the TTL):
    /// true until it first registers; changes are seen within 100 ms.
    pub fn fenced(&self) -> watch::Receiver<bool> {
        self.fenced.clone()
    }

    /// Changes the published record (for example to draining); it is written at once.
    pub fn update(&self, f: impl FnOnce(&mut NodeRecord)) {
        self.record.send_modify(f);
    }

    pub fn record(&self) -> NodeRecord {
        self.record.borrow().clone()
    }

    /// Waits for the task, which ends after `shutdown` with the lease revoked.
    pub async fn join(self) {
        let _ = self.task.await;
    }
}

async fn run(
    cfg: EtcdConfig,
    node: NodeId,
    mut record: watch::Receiver<NodeRecord>,
    mut load: watch::Receiver<NodeLoad>,
    shutdown: CancellationToken,
    last_renewal: Arc<Renewal>,
) {
    let ks = Keyspace::new(&cfg.prefix);
    while !shutdown.is_cancelled() {
        let Some(mut client) = crate::etcd::connect(&cfg, &shutdown).await else {
            break;
        };
        match session(
            &cfg,
            &ks,
            &node,
            &mut client,
            &mut record,
            &mut load,
            &shutdown,
            &last_renewal,
        )
        .await
        {
            Ok(()) => break,
            Err(e) => {
                tracing::warn!(error = %e, "etcd registration interrupted; registering again")
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
    *last_renewal.last.lock().expect("registration lock") = None;
}

#[allow(clippy::too_many_arguments)]
async fn session(
    cfg: &EtcdConfig,
    ks: &Keyspace,
    node: &NodeId,
    client: &mut Client,
    record: &mut watch::Receiver<NodeRecord>,
    load: &mut watch::Receiver<NodeLoad>,
    shutdown: &CancellationToken,
    last_renewal: &Renewal,
) -> Result<(), etcd_client::Error> {
    let lease = client
        .lease_grant(cfg.lease_ttl_secs as i64, None)
        .await?
        .id();
    // A lease just granted is as good as one just renewed. Said before the record is
    // written: the leader opens this node's heartbeat stream as soon as it sees the
    // record, and a node still fenced would refuse it (then the leader tries again
    // only 2 s later, and a node killed meanwhile is left to its lease).
    last_renewal.renewed();
    let opts = || Some(PutOptions::new().with_lease(lease));
    let rec = record.borrow_and_update().clone();
    client
        .put(rec.key(ks, node), rec.with_lease(lease), opts())
        .await?;
    let first_load = load.borrow().encode_to_vec();
    client.put(ks.load(node), first_load, opts()).await?;
    let (mut keeper, mut stream) = client.lease_keep_alive(lease).await?;
    tracing::info!(node = %node, lease, "registered in etcd");

    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => {
                // Leave at once rather than after the TTL, so placement stops choosing us.
                let _ = tokio::time::timeout(Duration::from_secs(1), client.lease_revoke(lease)).await;
                tracing::info!(node = %node, "registration revoked");
                return Ok(());
            }
            changed = record.changed() => {
                if changed.is_err() { return Ok(()); }
                let rec = record.borrow_and_update().clone();
                client.put(rec.key(ks, node), rec.with_lease(lease), opts()).await?;
            }
            _ = tick.tick() => {
                keeper.keep_alive().await?;
                let resp = tokio::time::timeout(cfg.request_timeout(), stream.message())
                    .await
                    .map_err(|_| etcd_client::Error::InvalidArgs("lease keep-alive timed out".into()))??;
                match resp {
                    Some(r) if r.ttl() > 0 => {}
                    _ => return Err(etcd_client::Error::LeaseKeepAliveError("lease expired".into())),
                }
                last_renewal.renewed();
                let l = NodeLoad { updated_unix_ms: crate::unix_ms(), ..*load.borrow_and_update() };
                client.put(ks.load(node), l.encode_to_vec(), opts()).await?;
            }
        }
    }
}
