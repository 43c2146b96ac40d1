//! A meeting's records in etcd that its media nodes share: followed (read, then watched
//! from the revision read, read again after a broken watch) and changed with a
//! compare-and-swap on the key's revision, so that nodes writing at once never overwrite
//! each other. The room of `hosts.rs` and the polls and Q&A of `collab.rs` live so.
use std::sync::Arc;
use std::time::Duration;

use common::ids::MeetingId;
use etcd_client::{Compare, CompareOp, Txn, TxnOp, WatchOptions};
use prost::Message;
use tokio_util::sync::CancellationToken;

use crate::Node;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    #[error("the cluster state (etcd) cannot be reached")]
    NoEtcd,
    #[error("etcd: {0}")]
    Etcd(#[from] etcd_client::Error),
    #[error("the meeting's record is unreadable: {0}")]
    Corrupt(#[from] prost::DecodeError),
    #[error("others kept changing the meeting at the same time; try again")]
    Contended,
}

/// What a follower learns of the record (None: there is none, or it was deleted).
pub enum Seen<R> {
    /// A fresh read, as of store revision `.1`: the truth, even against a newer one
    /// this node wrote meanwhile (the taker decides).
    Read(Option<R>, i64),
    /// A change, written at revision `.1`.
    Changed(Option<R>, i64),
}

/// How long a failed read or watch waits before it tries again: doubling from the first
/// to the most.
pub const RETRY_FIRST: Duration = Duration::from_millis(200);
const RETRY_MAX: Duration = Duration::from_secs(5);

/// Waits `delay` before another try (unless `stop` comes first) and doubles it, up to
/// [`RETRY_MAX`]; false when stopped.
pub async fn back_off(stop: &CancellationToken, delay: &mut Duration) -> bool {
    tokio::select! {
        _ = stop.cancelled() => return false,
        _ = tokio::time::sleep(*delay) => {}
    }
    *delay = (*delay * 2).min(RETRY_MAX);
    true
}

/// Follows `meeting`'s record at `key` (`what` names it in logs) until `stop`, giving
/// every read and change to `take`.
pub async fn follow<R: Message + Default>(
    node: Arc<Node>,
    what: &'static str,
    meeting: MeetingId,
    key: String,
    stop: CancellationToken,
    mut take: impl FnMut(Seen<R>) + Send,
) {
    let mut delay = RETRY_FIRST;
    while !stop.is_cancelled() {
        let result: Result<(), RecordError> = async {
            let mut etcd = node.etcd_client().await.ok_or(RecordError::NoEtcd)?;
            let r = etcd.get(key.as_str(), None).await?;
            let revision = r.header().map_or(0, |h| h.revision());
            let rec = r
                .kvs()
                .first()
                .map(|kv| R::decode(kv.value()))
                .transpose()?;
            take(Seen::Read(rec, revision));
            let mut stream = etcd
                .watch(
                    key.as_str(),
                    Some(WatchOptions::new().with_start_revision(revision + 1)),
                )
                .await?;
            delay = RETRY_FIRST;
            loop {
                let msg = tokio::select! {
                    _ = stop.cancelled() => return Ok(()),
                    m = stream.message() => m?,
                };
                let Some(resp) = msg else {
                    return Err(RecordError::Etcd(etcd_client::Error::WatchError(
                        "the watch ended".into(),
                    )));
                };
                for ev in resp.events() {
                    let Some(kv) = ev.kv() else { continue };
                    let rec = match ev.event_type() {
                        etcd_client::EventType::Put => Some(R::decode(kv.value())?),
                        etcd_client::EventType::Delete => None,
                    };
                    take(Seen::Changed(rec, kv.mod_revision()));
                }
            }
        }
        .await;
        if let Err(e) = result {
            tracing::warn!(%meeting, error = %e, "following the meeting's {what} failed; retrying");
            if !back_off(&stop, &mut delay).await {
                return;
            }
        }
    }
}

/// Changes the record at `key` with `change` (given the stored record, or a new one)
/// in one write that no concurrent one overwrites: read, change, write if the key is
/// still as read, else again (up to `attempts` times). Returns the record written, its
/// revision, and what `change` returned the last time.
pub async fn update<R: Message + Default, T>(
    node: &Node,
    key: &str,
    attempts: usize,
    mut change: impl FnMut(&mut R) -> T,
) -> Result<(R, i64, T), RecordError> {
    let mut etcd = node.etcd_client().await.ok_or(RecordError::NoEtcd)?;
    for _ in 0..attempts {
        let got = etcd.get(key, None).await?;
        let (mut rec, unchanged) = match got.kvs().first() {
            Some(kv) => (
                R::decode(kv.value())?,
                Compare::mod_revision(key, CompareOp::Equal, kv.mod_revision()),
            ),
            None => (R::default(), Compare::version(key, CompareOp::Equal, 0)),
        };
        let out = change(&mut rec);
        let txn =
            Txn::new()
                .when([unchanged])
                .and_then([TxnOp::put(key, rec.encode_to_vec(), None)]);
        let done = etcd.txn(txn).await?;
        if done.succeeded() {
            let revision = done.header().map_or(0, |h| h.revision());
            return Ok((rec, revision, out));
        }
    }
    Err(RecordError::Contended)
}
