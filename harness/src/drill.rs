//! Fault drills under load: a two-region cluster with meetings of bots that rejoin on
//! their own (`bot::ResilientBot`), one fault at a time, and what the participants saw.
//! For each fault it reports the meetings lost, how long until every participant had
//! media from every publisher of its meeting again (max and p99), and the placements
//! still naming the dead node 10 s after the fault. `fjord-drill` runs it; a test runs a
//! short version.
//!
//! Built so far: `kill -9` of the media node that hosts the most participants, and of the
//! recording node that holds the most recordings (its recordings must move, and the gap
//! in each is reported). Still to come (issue 13, point 2): the controller leader and an
//! etcd member killed; partitions of a media node and of a controller from etcd; a
//! three-member etcd.
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bot::{BotConfig, ClipSpec, ResilientBot};
use serde_json::json;

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
}

impl Default for DrillSpec {
    fn default() -> Self {
        Self {
            meetings: 2,
            publishers: 2,
            subscribers: 2,
            lease_ttl_secs: 30,
            patience: Duration::from_secs(30),
            recordings: 0,
        }
    }
}

/// What one fault did.
#[derive(Clone, Debug)]
pub struct FaultReport {
    pub fault: String,
    /// The node the fault took down.
    pub dead_node: String,
    pub meetings: usize,
    pub participants: usize,
    /// Participants whose session ended and who joined again.
    pub rejoined: usize,
    /// Join attempts of theirs that failed before one succeeded.
    pub failed_rejoins: u32,
    /// Meetings in which some participant had no media back within the patience.
    pub meetings_lost: usize,
    /// Per participant: from the fault until it had media from every publisher of its
    /// meeting again (only those that got it back).
    pub media_back: Vec<Duration>,
    /// Placements naming the dead node 10 s after the fault.
    pub stale_placements: usize,
    /// Recordings the fault hit, and of those: the ones that never went on recording on
    /// another node within the patience.
    pub recordings_hit: usize,
    pub recordings_lost: usize,
    /// The gap each moved recording shows for the fault.
    pub recording_gaps: Vec<Duration>,
}

impl FaultReport {
    pub fn percentile(&self, p: f64) -> Duration {
        let mut v = self.media_back.clone();
        v.sort();
        if v.is_empty() {
            return Duration::ZERO;
        }
        v[((v.len() - 1) as f64 * p).round() as usize]
    }

    pub fn print(&self) {
        println!("fault: {}", self.fault);
        println!(
            "  meetings {}, participants {}, rejoined {} (after {} failed attempts)",
            self.meetings, self.participants, self.rejoined, self.failed_rejoins
        );
        println!("  meetings lost: {}", self.meetings_lost);
        if !self.media_back.is_empty() {
            println!(
                "  media back at every participant: max {:.2} s, p99 {:.2} s, p50 {:.2} s",
                self.percentile(1.0).as_secs_f64(),
                self.percentile(0.99).as_secs_f64(),
                self.percentile(0.5).as_secs_f64()
            );
            println!(
                "  placements naming the dead node after 10 s: {}",
                self.stale_placements
            );
        }
        if self.recordings_hit > 0 || self.recordings_lost > 0 {
            let max = self
                .recording_gaps
                .iter()
                .max()
                .copied()
                .unwrap_or_default();
            println!(
                "  recordings hit {}, lost {}, largest gap {:.2} s",
                self.recordings_hit,
                self.recordings_lost,
                max.as_secs_f64()
            );
        }
    }
}

struct Participant {
    meeting: usize,
    bot: ResilientBot,
    publishes: bool,
}

/// Sends `req` and reads the JSON of a successful answer.
async fn json(req: reqwest::RequestBuilder) -> anyhow::Result<serde_json::Value> {
    Ok(req.send().await?.error_for_status()?.json().await?)
}

/// Starts recording meeting `id` as its host; returns the recording's id.
async fn start_recording(
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

/// A running drill: the cluster and its meetings.
pub struct Drill {
    pub cluster: Cluster,
    spec: DrillSpec,
    meeting_ids: Vec<String>,
    people: Vec<Participant>,
    /// (recording id, host key of its meeting, meeting id).
    recordings: Vec<(String, String, String)>,
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
    /// Starts the cluster (oslo: two media nodes, stockholm: one; two controllers) and
    /// joins every meeting's bots.
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
            ..ClusterSpec::local()
        })
        .await?;
        cluster.wait_ready(Duration::from_secs(30)).await?;
        let base = cluster.controllers[0].url();
        let http = reqwest::Client::new();
        let encoded = Arc::new(tokio::task::spawn_blocking(|| bot::media::encode(&clip())).await??);
        let mut meeting_ids = Vec::new();
        let mut host_keys = Vec::new();
        let mut people = Vec::new();
        for m in 0..spec.meetings {
            let created = json(
                http.post(format!("{base}/v1/meetings"))
                    .bearer_auth(&cluster.operator_key)
                    .json(&json!({ "title": format!("drill {m}") })),
            )
            .await?;
            let id = created["id"].as_str().context("meeting id")?.to_owned();
            host_keys.push(created["host_key"].as_str().context("host key")?.to_owned());
            for i in 0..spec.publishers + spec.subscribers {
                let publishes = i < spec.publishers;
                // Publishers in oslo; subscribers in stockholm and oslo in turn.
                let region = if publishes || i % 2 == 0 {
                    "oslo"
                } else {
                    "stockholm"
                };
                let cfg = BotConfig {
                    controller: cluster.controllers[i % cluster.controllers.len()].url(),
                    meeting: id.clone(),
                    name: format!("m{m}-{}{i}", if publishes { "pub" } else { "sub" }),
                    password: None,
                    region: Some(region.into()),
                    publish: publishes.then(|| encoded.clone()),
                    signal_ca: None,
                };
                let bot = ResilientBot::join(cfg)
                    .await
                    .with_context(|| format!("joining meeting {m}"))?;
                people.push(Participant {
                    meeting: m,
                    bot,
                    publishes,
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

    /// The participants (by index) that have not had audio from every other publisher
    /// of their meeting since `since`.
    fn waiting_for_media(&self, since: Instant) -> Vec<usize> {
        let current: Vec<Option<String>> =
            self.people.iter().map(|p| p.bot.participant_id()).collect();
        let mut waiting = Vec::new();
        for (i, p) in self.people.iter().enumerate() {
            let got = p.bot.received();
            let all = self.people.iter().enumerate().all(|(j, q)| {
                if j == i || !q.publishes || q.meeting != p.meeting {
                    return true;
                }
                let Some(id) = &current[j] else {
                    return false;
                };
                got.get(&(id.clone(), "audio"))
                    .and_then(|c| c.last_arrival())
                    .is_some_and(|at| at > since)
            });
            if !all || current[i].is_none() {
                waiting.push(i);
            }
        }
        waiting
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

    /// `kill -9` of the recording node that holds the most recordings: each must go on
    /// recording on the other node, with a gap that the recording shows.
    pub async fn kill_recording_node(&mut self) -> anyhow::Result<FaultReport> {
        let mut on: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (i, (rid, key, _)) in self.recordings.iter().enumerate() {
            let r = self.recording(rid, key).await?;
            if r["state"] != "recording" {
                continue;
            }
            let node = r["node_id"].as_str().context("recording node")?.to_owned();
            on.entry(node).or_default().push(i);
        }
        let (victim, hit) = on
            .into_iter()
            .max_by_key(|(_, v)| v.len())
            .context("no recording running")?;
        self.cluster.recording_node(&victim)?.proc.kill9();
        let fault = Instant::now();
        let mut gaps: BTreeMap<usize, Duration> = BTreeMap::new();
        while fault.elapsed() < self.spec.patience && gaps.len() < hit.len() {
            for &i in &hit {
                if gaps.contains_key(&i) {
                    continue;
                }
                let (rid, key, _) = &self.recordings[i];
                let r = self.recording(rid, key).await?;
                if r["state"] != "recording" || r["node_id"] == victim.as_str() {
                    continue;
                }
                let gap = r["gaps"].as_array().and_then(|g| {
                    g.iter()
                        .filter(|g| g["reason"].as_str().is_some_and(|w| w.contains(&victim)))
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
        // The meetings go on meanwhile: every participant should still have media.
        let waiting = self.waiting_for_media(fault);
        let lost: std::collections::BTreeSet<usize> =
            waiting.iter().map(|&i| self.people[i].meeting).collect();
        Ok(FaultReport {
            fault: format!("kill -9 of recording node {victim}"),
            dead_node: victim,
            meetings: self.meeting_ids.len(),
            participants: self.people.len(),
            rejoined: 0,
            failed_rejoins: 0,
            meetings_lost: lost.len(),
            media_back: Vec::new(),
            stale_placements: 0,
            recordings_hit: hit.len(),
            recordings_lost: hit.len() - gaps.len(),
            recording_gaps: gaps.into_values().collect(),
        })
    }

    /// Starts a killed recording node again and waits until the cluster sees it ready.
    pub async fn restart_recording_node(&mut self, id: &str) -> anyhow::Result<()> {
        self.cluster.recording_node(id)?.proc.restart()?;
        self.cluster.wait_ready(Duration::from_secs(30)).await
    }

    /// Starts a killed media node again and waits until the cluster sees it ready.
    pub async fn restart_media_node(&mut self, id: &str) -> anyhow::Result<()> {
        self.cluster.media_node(id)?.proc.restart()?;
        self.cluster.wait_ready(Duration::from_secs(30)).await
    }

    /// `kill -9` of the oslo media node that hosts the most participants.
    pub async fn kill_media_node(&mut self) -> anyhow::Result<FaultReport> {
        let victim = self
            .busiest_node("oslo")
            .context("no participant in oslo")?;
        let before: Vec<usize> = self.people.iter().map(|p| p.bot.rejoins().len()).collect();
        self.cluster.media_node(&victim)?.proc.kill9();
        let fault = Instant::now();
        let mut back: BTreeMap<usize, Duration> = BTreeMap::new();
        let mut stale = None;
        let until = fault + self.spec.patience.max(Duration::from_secs(11));
        while Instant::now() < until {
            let waiting = self.waiting_for_media(fault);
            for i in 0..self.people.len() {
                if !waiting.contains(&i) {
                    back.entry(i).or_insert_with(|| fault.elapsed());
                }
            }
            if stale.is_none() && fault.elapsed() >= Duration::from_secs(10) {
                let mut n = 0;
                for m in &self.meeting_ids {
                    n += self
                        .cluster
                        .placements(m)
                        .await?
                        .values()
                        .filter(|node| **node == victim)
                        .count();
                }
                stale = Some(n);
            }
            if back.len() == self.people.len() && stale.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // A recording fed by the dead node: does it go on (fed by the meeting's new
        // node)? Those that ended count as lost, and the drill starts them again.
        let mut recordings_lost = 0;
        let base = self.cluster.controllers[0].url();
        for k in 0..self.recordings.len() {
            let (rid, key, meeting) = self.recordings[k].clone();
            if self.recording(&rid, &key).await?["state"] != "recording" {
                recordings_lost += 1;
                let again = start_recording(&self.http, &base, &meeting, &key).await?;
                self.recordings[k].0 = again;
            }
        }
        let fresh: Vec<bot::Rejoin> = self
            .people
            .iter()
            .zip(&before)
            .flat_map(|(p, &n)| p.bot.rejoins().into_iter().skip(n))
            .collect();
        let lost: std::collections::BTreeSet<usize> = (0..self.people.len())
            .filter(|i| !back.contains_key(i))
            .map(|i| self.people[i].meeting)
            .collect();
        Ok(FaultReport {
            fault: format!("kill -9 of media node {victim}"),
            dead_node: victim.clone(),
            meetings: self.meeting_ids.len(),
            participants: self.people.len(),
            rejoined: fresh.len(),
            failed_rejoins: fresh.iter().map(|r| r.failed_attempts).sum(),
            meetings_lost: lost.len(),
            media_back: back.into_values().collect(),
            stale_placements: stale.unwrap_or(usize::MAX),
            recordings_hit: recordings_lost,
            recordings_lost,
            recording_gaps: Vec::new(),
        })
    }
}
