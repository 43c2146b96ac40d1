//! One etcd watch stream for every record a node follows. A node follows three records
//! of each meeting placed on it (placements, room, polls): a watch stream of its own
//! each — a gRPC stream and two server goroutines, set up per meeting — made preparing
//! a meeting the costliest part of a join storm (1,000 meetings placed on 20 nodes: 568
//! first joins a second, 2,876 without the follows). etcd multiplexes watches on one
//! stream: each follower's watch is a create request on the node's stream, under a
//! watch id of ours, and the responses are handed to it by id.
#![allow(clippy::disallowed_types)]

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicI64, Ordering};

use etcd_client::{WatchOptions, WatchResponse, WatchStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

enum Cmd {
    Watch {
        id: i64,
        key: String,
        options: WatchOptions,
        responses: mpsc::UnboundedSender<WatchResponse>,
    },
    Cancel(i64),
}

/// The node's shared watch stream (set up at the first watch, again after it broke).
pub(super) struct Watches {
    cmds: mpsc::UnboundedSender<Cmd>,
    next_id: AtomicI64,
}

/// One follower's watch on the shared stream; cancelled when dropped.
pub(super) struct Watch {
    id: i64,
    responses: mpsc::UnboundedReceiver<WatchResponse>,
    cmds: mpsc::UnboundedSender<Cmd>,
}

impl Watch {
    /// The next response to this watch; None once the shared stream broke (follow
    /// again, from a fresh read).
    pub(super) async fn message(&mut self) -> Option<WatchResponse> {
        self.responses.recv().await
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.cmds.send(Cmd::Cancel(self.id));
    }
}

impl Watches {
    /// Runs the stream on `client` until `shutdown`.
    pub(super) fn start(client: etcd_client::Client, shutdown: CancellationToken) -> Self {
        let (cmds, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(client, rx, shutdown));
        Watches {
            cmds,
            next_id: AtomicI64::new(1),
        }
    }

    /// Watches `key` with `options` on the node's stream.
    pub(super) fn watch(&self, key: &str, options: WatchOptions) -> Watch {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, responses) = mpsc::unbounded_channel();
        // The stream's task gone (shutdown): the watch ends at once, its sender dropped.
        let _ = self.cmds.send(Cmd::Watch {
            id,
            key: key.to_owned(),
            options,
            responses: tx,
        });
        Watch {
            id,
            responses,
            cmds: self.cmds.clone(),
        }
    }
}

async fn next(
    stream: &mut Option<WatchStream>,
) -> Result<Option<WatchResponse>, etcd_client::Error> {
    match stream {
        Some(s) => s.message().await,
        None => std::future::pending().await,
    }
}

async fn run(
    mut client: etcd_client::Client,
    mut cmds: mpsc::UnboundedReceiver<Cmd>,
    shutdown: CancellationToken,
) {
    let mut stream: Option<WatchStream> = None;
    let mut watches: HashMap<i64, mpsc::UnboundedSender<WatchResponse>> = HashMap::new();
    // Creates not acknowledged yet, oldest first: etcd answers them in order, and one
    // it refuses (a bad range, permissions) comes back with watch id -1, not ours.
    let mut unconfirmed: VecDeque<i64> = VecDeque::new();
    loop {
        let broke = tokio::select! {
            _ = shutdown.cancelled() => return,
            cmd = cmds.recv() => match cmd {
                None => return,
                Some(Cmd::Watch { id, key, options, responses }) => {
                    let options = options.with_watch_id(id);
                    let sent = match &mut stream {
                        Some(s) => s.watch(key, Some(options)).await.map_err(|e| e.to_string()),
                        None => match client.watch(key, Some(options)).await {
                            Ok(s) => {
                                stream = Some(s);
                                Ok(())
                            }
                            Err(e) => Err(e.to_string()),
                        },
                    };
                    match sent {
                        Ok(()) => {
                            watches.insert(id, responses);
                            unconfirmed.push_back(id);
                            None
                        }
                        // The follower sees its watch end (`responses` dropped) and
                        // tries again after its back-off.
                        Err(e) => Some(e),
                    }
                }
                Some(Cmd::Cancel(id)) => {
                    if watches.remove(&id).is_some()
                        && let Some(s) = &mut stream
                        && let Err(e) = s.cancel(id).await
                    {
                        Some(e.to_string())
                    } else {
                        None
                    }
                }
            },
            msg = next(&mut stream) => match msg {
                Ok(Some(resp)) => {
                    let mut id = resp.watch_id();
                    if resp.created() {
                        let asked = unconfirmed.pop_front();
                        if id == -1 {
                            // Refused: its follower reads and watches again later.
                            id = asked.unwrap_or(id);
                        }
                    }
                    if resp.canceled() {
                        // Compacted past its start, or refused: it follows again from a
                        // read.
                        if let Some(tx) = watches.remove(&id) {
                            let _ = tx.send(resp);
                        }
                        None
                    } else if resp.created() && resp.events().is_empty() {
                        None
                    } else if let Some(tx) = watches.get(&id)
                        && tx.send(resp).is_err()
                    {
                        // Its follower stopped before its cancel came through: cancel
                        // it on etcd here (the cancel that follows finds nothing).
                        watches.remove(&id);
                        match &mut stream {
                            Some(s) => s.cancel(id).await.err().map(|e| e.to_string()),
                            None => None,
                        }
                    } else {
                        None
                    }
                }
                Ok(None) => Some("the watch stream ended".to_owned()),
                Err(e) => Some(e.to_string()),
            },
        };
        if let Some(e) = broke {
            if !watches.is_empty() {
                tracing::warn!(error = %e, followers = watches.len(), "the node's etcd watch stream broke; its followers read and watch again");
            }
            // Every follower's sender goes: each reads again and watches anew.
            watches.clear();
            unconfirmed.clear();
            stream = None;
        }
    }
}
