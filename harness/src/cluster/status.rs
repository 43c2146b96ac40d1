//! What a running cluster says of itself: readiness, which controller leads, and the
//! placements in etcd.
use std::time::Duration;

use super::Cluster;
use crate::{eventually, http_ok, metric_value};

impl Cluster {
    /// Waits until every running process answers `/readyz` and every running controller
    /// lists every running media node.
    pub async fn wait_ready(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let http = reqwest::Client::new();
        let mut urls: Vec<(String, String)> = Vec::new();
        for c in self.controllers.iter().filter(|c| c.proc.is_running()) {
            urls.push((c.id.clone(), format!("{}/readyz", c.url())));
        }
        for n in self
            .media
            .iter()
            .chain(self.recording.iter())
            .filter(|n| n.proc.is_running())
        {
            urls.push((
                n.spec.id.clone(),
                format!("http://127.0.0.1:{}/readyz", n.http),
            ));
        }
        for (name, url) in urls {
            eventually(
                timeout,
                &format!(
                    "{name} to be ready ({url}); see {}/logs/{name}.log",
                    self.dir.display()
                ),
                || http_ok(&http, &url),
            )
            .await?;
        }
        let expected = self.media.iter().filter(|n| n.proc.is_running()).count();
        for c in self.controllers.iter().filter(|c| c.proc.is_running()) {
            let url = format!("{}/v1/nodes", c.url());
            let key = self.operator_key.clone();
            eventually(
                timeout,
                &format!("{} to see {expected} media nodes", c.id),
                || {
                    let (h, url, key) = (http.clone(), url.clone(), key.clone());
                    async move {
                        let v: serde_json::Value = h
                            .get(&url)
                            .bearer_auth(key)
                            .send()
                            .await
                            .ok()?
                            .json()
                            .await
                            .ok()?;
                        let n = v["nodes"]
                            .as_array()?
                            .iter()
                            .filter(|n| n["kind"] == "media")
                            .count();
                        (n >= expected).then_some(())
                    }
                },
            )
            .await?;
        }
        Ok(())
    }

    /// The indexes of the running controllers that say they lead (their
    /// `fjord_controller_is_leader` metric): one, none during a handover, two would be a
    /// split brain.
    pub async fn leaders(&self) -> Vec<usize> {
        let http = reqwest::Client::new();
        let mut out = Vec::new();
        for (i, c) in self.controllers.iter().enumerate() {
            if !c.proc.is_running() {
                continue;
            }
            let Ok(r) = http.get(format!("{}/metrics", c.url())).send().await else {
                continue;
            };
            let text = r.text().await.unwrap_or_default();
            if metric_value(&text, "fjord_controller_is_leader") == Some(1.0) {
                out.push(i);
            }
        }
        out
    }

    /// The placements of `meeting` in etcd: slot → media node.
    pub async fn placements(
        &self,
        meeting: &str,
    ) -> anyhow::Result<std::collections::BTreeMap<String, String>> {
        use prost::Message;
        let mut client = self.etcd.client().await?;
        let ks = common::keyspace::Keyspace::new("/fjord");
        let prefix = ks.placements_of(&common::ids::MeetingId::parse(meeting)?);
        let resp = client
            .get(prefix, Some(etcd_client::GetOptions::new().with_prefix()))
            .await?;
        let mut out = std::collections::BTreeMap::new();
        for kv in resp.kvs() {
            let common::keyspace::Key::Placement(_, slot) = ks.parse(kv.key_str()?) else {
                anyhow::bail!("not a placement key: {:?}", kv.key_str());
            };
            let rec = proto::v1::PlacementRecord::decode(kv.value())?;
            out.insert(slot.to_string(), rec.node_id);
        }
        Ok(out)
    }
}
