//! The partitions from etcd (a [`Gate`](crate::partition::Gate) cut, then healed): of
//! the busiest media node, which must fence itself, and of the controller leader, which
//! must step down; each must serve again after the heal.
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::json;

use super::{Drill, FaultReport, json};

impl Drill {
    /// The signaling URL, with a join token, of a meeting placed on `node` (as HTTP: a
    /// GET of it without an upgrade shows whether the node would take the join).
    async fn token_on(&self, node: &str) -> anyhow::Result<String> {
        let base = self
            .controller_urls()
            .first()
            .cloned()
            .context("no controller")?;
        for (m, id) in self.meeting_ids.iter().enumerate() {
            let on = self.cluster.placements(id).await?;
            if !on.values().any(|n| n == node) {
                continue;
            }
            let spec = self.cluster.media.iter().find(|n| n.spec.id == node);
            let region = &spec.context("no such media node")?.spec.region;
            let j = json(
                self.http
                    .post(format!("{base}/v1/meetings/{id}/join"))
                    .json(&json!({ "name": format!("witness {m}"), "region": region })),
            )
            .await?;
            if j["node_id"] == node {
                let url = j["signal_url"].as_str().context("signal url")?;
                let token = j["token"].as_str().context("token")?;
                // Asked without a WebSocket upgrade: the answer is the status alone.
                let url = url.replacen("ws", "http", 1);
                return Ok(format!("{url}?token={token}"));
            }
        }
        anyhow::bail!("no meeting is placed on {node}")
    }

    /// Cuts the oslo media node that hosts the most participants off from etcd (its
    /// clients, peers and the controllers still reach it): it must fence itself (no new
    /// joins; 503 on signaling), its participants must get media back on another node
    /// once its lease is gone, and it must serve again when the partition heals.
    pub async fn partition_media_node(&mut self) -> anyhow::Result<FaultReport> {
        let victim = self
            .busiest_node("oslo")
            .context("no participant in oslo")?;
        let signal = self.token_on(&victim).await?;
        let readyz = {
            let n = self.cluster.media_node(&victim)?;
            format!("http://127.0.0.1:{}/readyz", n.http)
        };
        let hit = self
            .recordings_by("media_node_id")
            .await?
            .remove(&victim)
            .unwrap_or_default();
        let before = self.rejoins_so_far();
        let prober = self.prober();
        self.cluster.gate(&victim)?.cut();
        let fault = Instant::now();
        let mut r = FaultReport::new(
            format!("partition of media node {victim} from etcd"),
            victim.clone(),
            self,
        );
        // Fenced: not ready, and signaling with a valid token answers 503.
        let status = async |u: &str| {
            let r = self.http.get(u).send().await.ok()?;
            Some(r.status().as_u16())
        };
        while fault.elapsed() < self.spec.patience {
            if status(&readyz).await == Some(503) && status(&signal).await == Some(503) {
                r.fenced_after = Some(fault.elapsed());
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        anyhow::ensure!(
            r.fenced_after.is_some(),
            "{victim} never fenced itself: {r:?}"
        );
        // From the fence on, its sessions end and its participants rejoin elsewhere;
        // placements still naming it are counted 10 s later.
        let fenced = Instant::now();
        self.media_node_gone(&mut r, &victim, fenced, &before, &hit, prober)
            .await?;
        // The heal: the node registers again and takes joins.
        self.cluster.gate(&victim)?.heal();
        let healed = Instant::now();
        let listed = async {
            let base = self.controller_urls().first().cloned()?;
            while healed.elapsed() < self.spec.patience {
                let ready = crate::http_ok(&self.http, &readyz).await.is_some();
                let nodes = json(
                    self.http
                        .get(format!("{base}/v1/nodes"))
                        .bearer_auth(&self.cluster.operator_key),
                )
                .await
                .unwrap_or_default();
                let active = nodes["nodes"].as_array().is_some_and(|n| {
                    n.iter()
                        .any(|n| n["id"] == victim.as_str() && n["state"] == "active")
                });
                if ready && active {
                    return Some(healed.elapsed());
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            None
        };
        r.healed_after = listed.await;
        Ok(r)
    }

    /// Cuts the controller that leads off from etcd (clients and nodes still reach it):
    /// it must step down and say it is not ready, the other must lead, joins must go on
    /// through the other, and it must serve again when the partition heals.
    pub async fn partition_controller(&mut self) -> anyhow::Result<FaultReport> {
        let leader = self.leader().await?;
        let url = self
            .cluster
            .controllers
            .iter()
            .find(|c| c.id == leader)
            .context("the leader")?
            .url();
        let before = self.rejoins_so_far();
        let prober = self.prober();
        self.cluster.gate(&leader)?.cut();
        let fault = Instant::now();
        let mut r = FaultReport::new(
            format!("partition of controller leader {leader} from etcd"),
            leader.clone(),
            self,
        );
        self.hand_over(&mut r, &leader, fault, &before).await?;
        // Not ready while cut off, so that a load balancer sends joins elsewhere.
        let readyz = format!("{url}/readyz");
        let unready = crate::eventually(
            self.spec.patience,
            "the cut-off controller to say it is not ready",
            || async {
                let st = self.http.get(&readyz).send().await.ok()?.status();
                (st == reqwest::StatusCode::SERVICE_UNAVAILABLE).then_some(())
            },
        )
        .await;
        prober.finish(&mut r).await?;
        unready?;
        self.cluster.gate(&leader)?.heal();
        let healed = Instant::now();
        let ok = crate::eventually(
            self.spec.patience,
            "the healed controller to serve joins",
            || async {
                crate::http_ok(&self.http, &readyz).await?;
                let j = self
                    .http
                    .post(format!("{url}/v1/meetings/{}/join", self.probe_meeting))
                    .json(&json!({ "name": "after the heal", "region": "oslo" }))
                    .send()
                    .await
                    .ok()?;
                j.status().is_success().then_some(())
            },
        )
        .await;
        r.healed_after = ok.is_ok().then(|| healed.elapsed());
        self.no_recording_ended(&mut r).await?;
        Ok(r)
    }
}
