//! The leader's watch on every registered node: it holds each node's heartbeat stream
//! (`Watch`), so that a node that dies is noticed when its connection resets (at once
//! for a killed process) or its heartbeats stop (a partition), not only when its lease
//! runs out. A broken stream is confirmed by opening it again; a node that does not
//! answer twice is reported dead, and the leader revokes its lease, which removes its
//! registration and so, through the planner, its placements: the next join of its
//! meetings lands on a live node. A node the leader has never reached is left to its
//! lease, and the leader revokes no more when half the nodes stop answering at once
//! (`bury`): a leader that cannot reach anyone must not take the cluster down.
//!
//! The timings: a heartbeat every 250 ms; a stream without one for 1 s is broken; each
//! confirming open waits 500 ms. A killed node is reported within a few milliseconds of
//! its death, a silent one within about 2 s.
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use common::ids::NodeId;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::model::NodeKind;
use crate::service::Service;

const BEAT: Duration = Duration::from_millis(250);
const SILENCE: Duration = Duration::from_secs(1);
const PROBE: Duration = Duration::from_millis(500);
const PROBES: u32 = 2;
/// How often to try a node never reached.
const RETRY_UNREACHED: Duration = Duration::from_secs(2);

/// A node that stopped answering.
#[derive(Debug)]
pub(super) struct Dead {
    pub node: NodeId,
    pub kind: NodeKind,
    pub lease: i64,
    pub why: String,
    /// When its last heartbeat came (Unix ms).
    pub last_heard_unix_ms: i64,
}

/// One watcher task per registered node (and lease).
pub(super) struct Liveness {
    watching: HashMap<NodeId, (i64, CancellationToken)>,
    tx: mpsc::UnboundedSender<Dead>,
    pub dead: mpsc::UnboundedReceiver<Dead>,
}

impl Liveness {
    pub fn new() -> Self {
        let (tx, dead) = mpsc::unbounded_channel();
        Self {
            watching: HashMap::new(),
            tx,
            dead,
        }
    }

    /// Watches every node of the view (again, if it registered with a new lease) and
    /// stops watching nodes that left it.
    pub fn sync(&mut self, service: &Arc<Service>) {
        let nodes: Vec<(NodeId, NodeKind, String, i64)> = service.view.read(|v| {
            let media = v.media.values().map(|n| {
                (
                    n.id.clone(),
                    NodeKind::Media,
                    n.grpc_addr.clone(),
                    n.lease_id,
                )
            });
            let recording = v.recording.values().map(|n| {
                (
                    n.id.clone(),
                    NodeKind::Recording,
                    n.grpc_addr.clone(),
                    n.lease_id,
                )
            });
            media.chain(recording).collect()
        });
        self.watching.retain(|id, (lease, stop)| {
            let keep = nodes.iter().any(|(n, _, _, l)| n == id && l == lease);
            if !keep {
                stop.cancel();
            }
            keep
        });
        for (id, kind, addr, lease) in nodes {
            if self.watching.contains_key(&id) {
                continue;
            }
            let stop = CancellationToken::new();
            self.watching.insert(id.clone(), (lease, stop.clone()));
            tokio::spawn(watch(
                service.clone(),
                Dead {
                    node: id,
                    kind,
                    lease,
                    why: String::new(),
                    last_heard_unix_ms: 0,
                },
                addr,
                self.tx.clone(),
                stop,
            ));
        }
    }
}

impl Drop for Liveness {
    fn drop(&mut self) {
        for (_, stop) in self.watching.values() {
            stop.cancel();
        }
    }
}

/// Watches one node until `stop`, or until it is found dead (then reports it).
async fn watch(
    service: Arc<Service>,
    mut node: Dead,
    addr: String,
    tx: mpsc::UnboundedSender<Dead>,
    stop: CancellationToken,
) {
    let mut reached = false;
    let mut failed = 0;
    let mut why = String::new();
    loop {
        let opened = tokio::select! {
            _ = stop.cancelled() => return,
            r = service.nodes.watch(node.kind, &addr, BEAT, PROBE) => r,
        };
        let mut stream = match opened {
            Ok(s) => s,
            Err(e) if !reached => {
                tracing::debug!(node = %node.node, error = %e, "node not reached yet");
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(RETRY_UNREACHED) => continue,
                }
            }
            Err(e) => {
                failed += 1;
                if failed >= PROBES {
                    node.why = format!("{why}; then {e}");
                    let _ = tx.send(node);
                    return;
                }
                continue;
            }
        };
        reached = true;
        failed = 0;
        node.last_heard_unix_ms = common::unix_ms();
        why = loop {
            let next = tokio::select! {
                _ = stop.cancelled() => return,
                r = tokio::time::timeout(SILENCE, stream.message()) => r,
            };
            match next {
                Ok(Ok(Some(_))) => node.last_heard_unix_ms = common::unix_ms(),
                Ok(Ok(None)) => break "its heartbeat stream ended".to_owned(),
                Ok(Err(s)) => break format!("its heartbeat stream broke ({})", s.code()),
                Err(_) => break format!("no heartbeat for {SILENCE:?}"),
            }
        };
        tracing::info!(node = %node.node, why, "checking a node whose heartbeats stopped");
    }
}
