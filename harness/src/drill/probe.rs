//! The prober: joins through the controllers throughout a fault, as clients would.
use std::time::{Duration, Instant};

use serde_json::json;

use super::{FaultReport, json};

/// Joins a meeting every 250 ms through the controllers, as a client behind a load
/// balancer would (the next controller when one does not answer within 2 s, or answers
/// an error), and keeps what happened.
pub(super) struct JoinProber {
    stop: tokio_util::sync::CancellationToken,
    task: tokio::task::JoinHandle<Vec<(Instant, bool)>>,
}

impl JoinProber {
    pub(super) fn start(controllers: Vec<String>, meeting: String) -> Self {
        let stop = tokio_util::sync::CancellationToken::new();
        let halt = stop.clone();
        let task = tokio::spawn(async move {
            let http = reqwest::Client::builder()
                .timeout(Duration::from_secs(2))
                .build()
                .expect("an HTTP client");
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            let mut seen = Vec::new();
            let mut first = 0;
            while !halt.is_cancelled() {
                tick.tick().await;
                let at = Instant::now();
                let mut ok = false;
                for k in 0..controllers.len() {
                    let base = &controllers[(first + k) % controllers.len()];
                    let req = http
                        .post(format!("{base}/v1/meetings/{meeting}/join"))
                        .json(&json!({ "name": "prober", "region": "oslo" }));
                    if json(req).await.is_ok() {
                        ok = true;
                        break;
                    }
                }
                first += 1;
                seen.push((at, ok));
            }
            seen
        });
        Self { stop, task }
    }

    /// Stops and fills the report's join figures.
    pub(super) async fn finish(self, r: &mut FaultReport) -> anyhow::Result<()> {
        self.stop.cancel();
        let seen = self.task.await?;
        r.joins_tried = seen.len();
        r.joins_failed = seen.iter().filter(|(_, ok)| !ok).count();
        let mut since: Option<Instant> = None;
        for (at, ok) in &seen {
            match (ok, since) {
                (false, None) => since = Some(*at),
                (true, Some(s)) => {
                    r.join_outage = r.join_outage.max(at.duration_since(s));
                    since = None;
                }
                _ => {}
            }
        }
        if let (Some(s), Some((last, _))) = (since, seen.last()) {
            r.join_outage = r
                .join_outage
                .max(last.duration_since(s) + Duration::from_millis(250));
        }
        Ok(())
    }
}
