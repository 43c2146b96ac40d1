//! The recordings a drill keeps running: which node holds or feeds each, whether each
//! went on elsewhere after a fault and with what gap, and starting again any that ended.
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Context;

use super::{Drill, FaultReport, json};

/// Starts recording meeting `id` as its host; returns the recording's id.
pub(super) async fn start_recording(
    http: &reqwest::Client,
    base: &str,
    id: &str,
    host_key: &str,
) -> anyhow::Result<String> {
    let rec = json(
        http.post(format!("{base}/v1/meetings/{id}/recordings"))
            .bearer_auth(host_key),
    )
    .await?;
    Ok(rec["recording_id"]
        .as_str()
        .context("recording id")?
        .to_owned())
}

impl Drill {
    /// Recording `rid` as the API shows it.
    async fn recording(&self, rid: &str, host_key: &str) -> anyhow::Result<serde_json::Value> {
        let base = self.cluster.controllers[0].url();
        json(
            self.http
                .get(format!("{base}/v1/recordings/{rid}"))
                .bearer_auth(host_key),
        )
        .await
    }

    /// Starts again the recordings that ended (none should); how many there were.
    async fn restart_ended_recordings(&mut self) -> anyhow::Result<usize> {
        let base = self
            .controller_urls()
            .first()
            .cloned()
            .context("no controller")?;
        let mut ended = 0;
        for k in 0..self.recordings.len() {
            let (rid, key, meeting) = self.recordings[k].clone();
            let state = json(
                self.http
                    .get(format!("{base}/v1/recordings/{rid}"))
                    .bearer_auth(&key),
            )
            .await?;
            if state["state"] != "recording" {
                ended += 1;
                let again = start_recording(&self.http, &base, &meeting, &key).await?;
                self.recordings[k].0 = again;
            }
        }
        Ok(ended)
    }

    /// After a fault that should hit no recording: counts any that ended as hit and
    /// lost, and starts them again.
    pub(super) async fn no_recording_ended(&mut self, r: &mut FaultReport) -> anyhow::Result<()> {
        let ended = self.restart_ended_recordings().await?;
        r.recordings_hit += ended;
        r.recordings_lost += ended;
        Ok(())
    }

    /// The running recordings (by index) by the node in their `field` (`node_id`: the
    /// recording node, `media_node_id`: the media node feeding them).
    pub(super) async fn recordings_by(
        &self,
        field: &str,
    ) -> anyhow::Result<BTreeMap<String, Vec<usize>>> {
        let mut on: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (i, (rid, key, _)) in self.recordings.iter().enumerate() {
            let r = self.recording(rid, key).await?;
            if r["state"] != "recording" {
                continue;
            }
            let node = r[field].as_str().context("recording's node")?.to_owned();
            on.entry(node).or_default().push(i);
        }
        Ok(on)
    }

    /// Waits (up to the patience from `since`) until each of the recordings `hit` goes on
    /// with `victim` no longer in its `field`; the gap each shows for `victim`.
    pub(super) async fn recordings_moved(
        &self,
        hit: &[usize],
        field: &str,
        victim: &str,
        since: Instant,
    ) -> anyhow::Result<BTreeMap<usize, Duration>> {
        let mut gaps: BTreeMap<usize, Duration> = BTreeMap::new();
        while since.elapsed() < self.spec.patience && gaps.len() < hit.len() {
            for &i in hit {
                if gaps.contains_key(&i) {
                    continue;
                }
                let (rid, key, _) = &self.recordings[i];
                let r = self.recording(rid, key).await?;
                if r["state"] != "recording" || r[field] == victim {
                    continue;
                }
                let gap = r["gaps"].as_array().and_then(|g| {
                    g.iter()
                        .filter(|g| g["reason"].as_str().is_some_and(|w| w.contains(victim)))
                        .filter(|g| g["end_unix_ms"].as_i64().is_some_and(|e| e > 0))
                        .filter_map(|g| {
                            Some(g["end_unix_ms"].as_i64()? - g["start_unix_ms"].as_i64()?)
                        })
                        .next_back()
                });
                if let Some(ms) = gap {
                    gaps.insert(i, Duration::from_millis(ms.max(0) as u64));
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(gaps)
    }

    /// Fills the report's recording figures for the recordings `hit`, and starts again
    /// any recording that ended (counted lost too, whether the fault hit it or not).
    pub(super) async fn count_recordings(
        &mut self,
        r: &mut FaultReport,
        hit: &[usize],
        gaps: BTreeMap<usize, Duration>,
    ) -> anyhow::Result<()> {
        r.recordings_hit = hit.len();
        r.recordings_lost = hit.len() - gaps.len();
        r.recording_gaps = gaps.into_values().collect();
        let ended = self.restart_ended_recordings().await?;
        r.recordings_lost = r.recordings_lost.max(ended);
        Ok(())
    }
}
