//! Who attended: each participant's arrival in a meeting (past the waiting room) and
//! departure, written by their media node to `/fjord/meetings/{m}/attendance/{p}`
//! (`AttendanceRecord`), from which the controller exports the meeting's participants.
//!
//! One task per session writes both, in order, retrying while etcd is unreachable, so
//! that a departure never lands before its arrival; the departure lands only over its
//! own arrival (a newer session of the same participant wins); the session itself
//! never waits on etcd. A node that dies leaves its participants' departures unwritten (the export
//! shows them without one).
use std::sync::Arc;

use common::token::JoinClaims;
use prost::Message;
use proto::AttendanceRecord;
use tokio::sync::oneshot;

use crate::Node;
use crate::record;

/// A participant in the meeting; [`Present::left`] records their departure.
pub struct Present {
    left: Option<oneshot::Sender<i64>>,
}

impl Present {
    /// `claims`'s participant came in now, as `name` with `role`.
    pub fn arrived(
        node: &Arc<Node>,
        claims: &JoinClaims,
        name: &str,
        role: signaling::Role,
    ) -> Self {
        let mut rec = AttendanceRecord {
            participant_id: claims.sub.to_string(),
            name: name.to_owned(),
            registrant_id: claims.reg.clone().unwrap_or_default(),
            role: role.as_str().to_owned(),
            region: claims.region.to_string(),
            node_id: node.id.to_string(),
            joined_unix_ms: common::unix_ms(),
            left_unix_ms: 0,
        };
        let key = node.hosts.keyspace.attendance(&claims.mtg, &claims.sub);
        let (tx, rx) = oneshot::channel();
        let node = node.clone();
        tokio::spawn(async move {
            let arrival = rec.encode_to_vec();
            write(&node, &key, None, &arrival).await;
            // The session ended (or its node is shutting down: it ends them all first).
            let Ok(at) = rx.await else { return };
            rec.left_unix_ms = at;
            // Only over our own arrival: a newer session of the same participant (a
            // reconnect with the same token) wrote its own, and will write its departure.
            write(&node, &key, Some(&arrival), &rec.encode_to_vec()).await;
        });
        Self { left: Some(tx) }
    }

    /// The participant left now.
    pub fn left(mut self) {
        if let Some(tx) = self.left.take() {
            let _ = tx.send(common::unix_ms());
        }
    }
}

/// Puts `value` at `key` (when `over` is given, only if the key still holds exactly
/// that), retrying with back-off for as long as the node runs.
async fn write(node: &Node, key: &str, over: Option<&[u8]>, value: &[u8]) {
    use etcd_client::{Compare, CompareOp, Txn, TxnOp};
    let mut delay = record::RETRY_FIRST;
    loop {
        let done = match node.etcd_client().await {
            Some(mut etcd) => {
                let put = TxnOp::put(key, value, None);
                let txn = match over {
                    Some(v) => Txn::new()
                        .when([Compare::value(key, CompareOp::Equal, v)])
                        .and_then([put]),
                    None => Txn::new().and_then([put]),
                };
                etcd.txn(txn).await.map(|_| ()).map_err(|e| e.to_string())
            }
            None => Err("etcd unreachable".to_owned()),
        };
        match done {
            Ok(()) => return,
            Err(e) => tracing::warn!(key, error = %e, "writing attendance failed; retrying"),
        }
        if !record::back_off(&node.shutdown, &mut delay).await {
            return;
        }
    }
}
