//! Fault drills under load: a two-region cluster with meetings of bots that rejoin on
//! their own (`bot::ResilientBot`), one fault at a time, and what the participants saw.
//! For each fault it reports the meetings lost, how long until every participant had
//! media from every publisher of its meeting again (max and p99), and the placements
//! still naming the dead node 10 s after the fault. `fjord-drill` runs it; a test runs a
//! short version.
//!
//! The faults, one at a time, on a cluster of two controllers, three media nodes in two
//! regions, two recording nodes and a three-member etcd: `kill -9` of the media node
//! that hosts the most participants, of the recording node that holds the most
//! recordings (they must move; the gap in each is reported), of the controller leader
//! and of the etcd member that leads the raft; and partitions (a [`Gate`] cut) of that
//! media node, and of the controller leader, from etcd while everything else still
//! reaches them. Throughout a fault a prober joins a meeting every 250 ms through the
//! controllers (as a client behind a load balancer would: the next controller when one
//! fails), and the report says how many of those joins failed and for how long.
//!
//! By concern: `faults` (the kills) and `partitions` (the cuts from etcd), `follow`
//! (what the participants saw), `recordings`, `probe` (the prober's joins) and `report`
//! ([`FaultReport`]). Here: the drill's cluster and meetings, [`Drill::start`], and who
//! leads and where the participants are.
//!
//! [`Gate`]: crate::partition::Gate
mod faults;
mod follow;
mod partitions;
mod probe;
mod recordings;
mod report;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bot::{BotConfig, ClipSpec, ResilientBot};

use self::probe::JoinProber;
use self::recordings::start_recording;
pub use self::report::FaultReport;
use crate::{Cluster, ClusterSpec, NodeSpec};

#[derive(Clone, Debug)]
pub struct DrillSpec {
    pub meetings: usize,
    pub publishers: usize,
    /// Per meeting; they join from the other region in turn, so meetings cascade.
    pub subscribers: usize,
    /// Node leases: long, so that only the cluster's own failure detection counts.
    pub lease_ttl_secs: u64,
    /// How long a participant may take to get media back before its meeting counts as
    /// lost.
    pub patience: Duration,
    /// Meetings recorded (the first ones), on two recording nodes in oslo; 0: no
    /// recording nodes.
    pub recordings: usize,
    /// Members of the etcd cluster.
    pub etcd_members: usize,
}

impl Default for DrillSpec {
    fn default() -> Self {
        Self {
            meetings: 2,
            publishers: 2,
            subscribers: 2,
            // The chart's default.
            lease_ttl_secs: 10,
            patience: Duration::from_secs(30),
            recordings: 0,
            etcd_members: 3,
        }
    }
}

struct Participant {
    meeting: usize,
    bot: ResilientBot,
    publishes: bool,
    name: String,
    region: &'static str,
}

/// Sends `req` and reads the JSON of a successful answer. (This module spells the
/// `json!` macro out as `serde_json::json!`, so that its submodules can import both the
/// macro and this function by the one name.)
async fn json(req: reqwest::RequestBuilder) -> anyhow::Result<serde_json::Value> {
    Ok(req.send().await?.error_for_status()?.json().await?)
}

/// A running drill: the cluster and its meetings.
pub struct Drill {
    pub cluster: Cluster,
    spec: DrillSpec,
    meeting_ids: Vec<String>,
    people: Vec<Participant>,
    /// (recording id, host key of its meeting, meeting id).
    recordings: Vec<(String, String, String)>,
    /// The meeting the prober joins (nobody connects to it).
    probe_meeting: String,
    http: reqwest::Client,
}

fn clip() -> ClipSpec {
    ClipSpec {
        width: 160,
        height: 120,
        fps: 10,
        video_kbps: 150,
        ..ClipSpec::default()
    }
}

impl Drill {
    /// Starts the cluster (oslo: two media nodes, stockholm: one; two controllers; every
    /// process reaching etcd through a gate) and joins every meeting's bots.
    pub async fn start(spec: DrillSpec) -> anyhow::Result<Self> {
        let node = |id: &str, region: &str| NodeSpec {
            id: id.into(),
            region: region.into(),
            capacity: 200,
        };
        let mut cluster = Cluster::start(ClusterSpec {
            controllers: 2,
            media: vec![
                node("media-oslo-1", "oslo"),
                node("media-oslo-2", "oslo"),
                node("media-stockholm-1", "stockholm"),
            ],
            recording: if spec.recordings > 0 {
                vec![
                    node("recording-oslo-1", "oslo"),
                    node("recording-oslo-2", "oslo"),
                ]
            } else {
                vec![]
            },
            lease_ttl_secs: spec.lease_ttl_secs,
            join_limits: crate::no_join_limits(),
            etcd_members: spec.etcd_members,
            gated: true,
            ..ClusterSpec::local()
        })
        .await?;
        cluster.wait_ready(Duration::from_secs(30)).await?;
        let base = cluster.controllers[0].url();
        let http = reqwest::Client::new();
        let encoded = Arc::new(tokio::task::spawn_blocking(|| bot::media::encode(&clip())).await??);
        let create = async |title: String| -> anyhow::Result<(String, String)> {
            let created = json(
                http.post(format!("{base}/v1/meetings"))
                    .bearer_auth(&cluster.operator_key)
                    .json(&serde_json::json!({ "title": title, "waiting_room": false })),
            )
            .await?;
            Ok((
                created["id"].as_str().context("meeting id")?.to_owned(),
                created["host_key"].as_str().context("host key")?.to_owned(),
            ))
        };
        let (probe_meeting, _) = create("drill prober".into()).await?;
        let mut meeting_ids = Vec::new();
        let mut host_keys = Vec::new();
        let mut people = Vec::new();
        for m in 0..spec.meetings {
            let (id, key) = create(format!("drill {m}")).await?;
            host_keys.push(key);
            for i in 0..spec.publishers + spec.subscribers {
                let publishes = i < spec.publishers;
                // Publishers in oslo; subscribers in stockholm and oslo in turn.
                let region = if publishes || i % 2 == 0 {
                    "oslo"
                } else {
                    "stockholm"
                };
                let name = format!("m{m}-{}{i}", if publishes { "pub" } else { "sub" });
                let cfg = BotConfig {
                    controller: cluster.controllers[i % cluster.controllers.len()].url(),
                    meeting: id.clone(),
                    name: name.clone(),
                    password: None,
                    host_key: None,
                    panelist_key: None,
                    registrant_key: None,
                    region: Some(region.into()),
                    publish: publishes.then(|| encoded.clone()),
                    signal_ca: None,
                    view: None,
                };
                let bot = ResilientBot::join(cfg)
                    .await
                    .with_context(|| format!("joining meeting {m}"))?;
                people.push(Participant {
                    meeting: m,
                    bot,
                    publishes,
                    name,
                    region,
                });
            }
            meeting_ids.push(id);
        }
        let mut recordings = Vec::new();
        for (id, key) in meeting_ids.iter().zip(&host_keys).take(spec.recordings) {
            let rid = start_recording(&http, &base, id, key).await?;
            recordings.push((rid, key.clone(), id.clone()));
        }
        let drill = Self {
            cluster,
            spec,
            meeting_ids,
            people,
            recordings,
            probe_meeting,
            http,
        };
        let since = Instant::now();
        let deadline = since + Duration::from_secs(30);
        loop {
            let waiting = drill.waiting_for_media(since).len();
            if waiting == 0 {
                break;
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "{waiting} participants never had everyone's media before the drill"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(drill)
    }

    /// The recordings the drill keeps running: (recording id, its meeting's host key).
    pub fn recordings(&self) -> Vec<(String, String)> {
        self.recordings
            .iter()
            .map(|(rid, key, _)| (rid.clone(), key.clone()))
            .collect()
    }

    /// The media node most participants are on, in `region`.
    fn busiest_node(&self, region: &str) -> Option<String> {
        let mut count: BTreeMap<String, usize> = BTreeMap::new();
        for p in &self.people {
            let node = p.bot.node_id();
            if let Some(n) = node.filter(|n| {
                let spec = self.cluster.media.iter().find(|m| m.spec.id == *n);
                spec.is_some_and(|m| m.spec.region == region)
            }) {
                *count.entry(n).or_default() += 1;
            }
        }
        count.into_iter().max_by_key(|(_, c)| *c).map(|(n, _)| n)
    }

    /// The URLs of the controllers that run.
    fn controller_urls(&self) -> Vec<String> {
        self.cluster
            .controllers
            .iter()
            .filter(|c| c.proc.is_running())
            .map(|c| c.url())
            .collect()
    }

    fn prober(&self) -> JoinProber {
        let all = self.cluster.controllers.iter().map(|c| c.url()).collect();
        JoinProber::start(all, self.probe_meeting.clone())
    }

    /// The ids of the controllers that say they lead (by their metrics): one, but during
    /// a handover none, and two would be a split brain.
    async fn leaders(&self) -> Vec<String> {
        let c = &self.cluster.controllers;
        let leading = self.cluster.leaders().await;
        leading.into_iter().map(|i| c[i].id.clone()).collect()
    }

    /// Waits (up to `patience`) until one controller other than `not`, and only it,
    /// leads; how long that took from `since`.
    async fn leader_other_than(&self, not: &str, since: Instant) -> Option<Duration> {
        while since.elapsed() < self.spec.patience {
            let l = self.leaders().await;
            if l.len() == 1 && l[0] != not {
                return Some(since.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        None
    }

    /// The one controller that leads.
    async fn leader(&self) -> anyhow::Result<String> {
        match self.leaders().await.as_slice() {
            [one] => Ok(one.clone()),
            more => anyhow::bail!("not one controller leads: {more:?}"),
        }
    }
}
