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
//! [`Gate`]: crate::partition::Gate
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
    /// The participant that took longest to have media again (over half a second), where
    /// it was and whose media it waited for last.
    pub slowest: Option<String>,
    /// Recordings the fault hit, and of those: the ones that never went on recording on
    /// another node within the patience.
    pub recordings_hit: usize,
    pub recordings_lost: usize,
    /// The gap each moved recording shows for the fault.
    pub recording_gaps: Vec<Duration>,
    /// The prober's joins during the fault: tried, failed, and the longest time in a
    /// row that none succeeded.
    pub joins_tried: usize,
    pub joins_failed: usize,
    pub join_outage: Duration,
    /// Controller faults: from the fault until a controller led the cluster again.
    pub leader_back: Option<Duration>,
    /// Partitions of a media node: from the cut until the node fenced itself (its
    /// readiness and its signaling answer 503).
    pub fenced_after: Option<Duration>,
    /// Partitions: from the heal until the process served again (registered and ready).
    pub healed_after: Option<Duration>,
}

impl FaultReport {
    fn new(fault: String, dead_node: String, drill: &Drill) -> Self {
        Self {
            fault,
            dead_node,
            meetings: drill.meeting_ids.len(),
            participants: drill.people.len(),
            rejoined: 0,
            failed_rejoins: 0,
            meetings_lost: 0,
            media_back: Vec::new(),
            stale_placements: 0,
            slowest: None,
            recordings_hit: 0,
            recordings_lost: 0,
            recording_gaps: Vec::new(),
            joins_tried: 0,
            joins_failed: 0,
            join_outage: Duration::ZERO,
            leader_back: None,
            fenced_after: None,
            healed_after: None,
        }
    }

    /// The rounds of one kind of fault as one report: sums of what was lost, every
    /// figure of the rest, and the worst of the times.
    pub fn merge(fault: String, rounds: &[FaultReport]) -> Self {
        let max = |f: fn(&FaultReport) -> Option<Duration>| {
            rounds
                .iter()
                .map(f)
                .try_fold(Duration::ZERO, |m, d| d.map(|d| m.max(d)))
        };
        let some = |f: fn(&FaultReport) -> Option<Duration>| rounds.iter().any(|r| f(r).is_some());
        Self {
            fault,
            dead_node: String::new(),
            meetings: rounds.first().map_or(0, |r| r.meetings),
            participants: rounds.first().map_or(0, |r| r.participants),
            rejoined: rounds.iter().map(|r| r.rejoined).sum(),
            failed_rejoins: rounds.iter().map(|r| r.failed_rejoins).sum(),
            meetings_lost: rounds.iter().map(|r| r.meetings_lost).sum(),
            media_back: rounds.iter().flat_map(|r| r.media_back.clone()).collect(),
            stale_placements: rounds.iter().map(|r| r.stale_placements).sum(),
            slowest: rounds
                .iter()
                .filter(|r| r.slowest.is_some())
                .max_by_key(|r| r.percentile(1.0))
                .and_then(|r| r.slowest.clone()),
            recordings_hit: rounds.iter().map(|r| r.recordings_hit).sum(),
            recordings_lost: rounds.iter().map(|r| r.recordings_lost).sum(),
            recording_gaps: rounds
                .iter()
                .flat_map(|r| r.recording_gaps.clone())
                .collect(),
            joins_tried: rounds.iter().map(|r| r.joins_tried).sum(),
            joins_failed: rounds.iter().map(|r| r.joins_failed).sum(),
            join_outage: rounds
                .iter()
                .map(|r| r.join_outage)
                .max()
                .unwrap_or_default(),
            // None (never) if any round never got there.
            leader_back: if some(|r| r.leader_back) {
                max(|r| r.leader_back)
            } else {
                None
            },
            fenced_after: if some(|r| r.fenced_after) {
                max(|r| r.fenced_after)
            } else {
                None
            },
            healed_after: if some(|r| r.healed_after) {
                max(|r| r.healed_after)
            } else {
                None
            },
        }
    }

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
            let kind = self.fault.to_lowercase();
            let from = if kind.contains("partition") && kind.contains("media") {
                " (from the fence)"
            } else {
                ""
            };
            println!(
                "  media back at every participant{from}: max {:.2} s, p99 {:.2} s, p50 {:.2} s",
                self.percentile(1.0).as_secs_f64(),
                self.percentile(0.99).as_secs_f64(),
                self.percentile(0.5).as_secs_f64()
            );
            if kind.contains("media") {
                println!(
                    "  placements naming the dead node after 10 s: {}",
                    self.stale_placements
                );
            }
            if let Some(s) = &self.slowest {
                println!("  slowest: {s}");
            }
        }
        if self.joins_tried > 0 {
            println!(
                "  joins during the fault: {} tried, {} failed, longest outage {:.2} s",
                self.joins_tried,
                self.joins_failed,
                self.join_outage.as_secs_f64()
            );
        }
        let secs =
            |d: Option<Duration>| d.map_or("never".into(), |d| format!("{:.2} s", d.as_secs_f64()));
        // What a kind of fault must show, by its name ("never" if it did not happen).
        let kind = self.fault.to_lowercase();
        if kind.contains("leader") || kind.contains("controller") {
            println!(
                "  a controller leads again after {}",
                secs(self.leader_back)
            );
        }
        if kind.contains("partition") && kind.contains("media") {
            println!("  the node fenced itself after {}", secs(self.fenced_after));
        }
        if kind.contains("partition") {
            println!(
                "  serving again after the heal: {}",
                secs(self.healed_after)
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
    name: String,
    region: &'static str,
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

/// Joins a meeting every 250 ms through the controllers, as a client behind a load
/// balancer would (the next controller when one does not answer within 2 s, or answers
/// an error), and keeps what happened.
struct JoinProber {
    stop: tokio_util::sync::CancellationToken,
    task: tokio::task::JoinHandle<Vec<(Instant, bool)>>,
}

impl JoinProber {
    fn start(controllers: Vec<String>, meeting: String) -> Self {
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
    async fn finish(self, r: &mut FaultReport) -> anyhow::Result<()> {
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

/// What the participants saw of a fault (see [`Drill::follow`]).
struct Followed {
    slowest: Option<String>,
    rejoined: usize,
    failed_rejoins: u32,
    meetings_lost: usize,
    media_back: Vec<Duration>,
    stale_placements: usize,
}

impl Followed {
    fn fill(self, r: &mut FaultReport) {
        r.rejoined = self.rejoined;
        r.failed_rejoins = self.failed_rejoins;
        r.meetings_lost = self.meetings_lost;
        r.media_back = self.media_back;
        r.stale_placements = self.stale_placements;
        r.slowest = self.slowest;
    }
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
                    .json(&json!({ "title": title, "waiting_room": false })),
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

    /// The participants (by index) that have not had audio from every other publisher
    /// of their meeting since `since`.
    fn waiting_for_media(&self, since: Instant) -> Vec<usize> {
        self.missing_media(since).into_keys().collect()
    }

    /// For each participant that has not had audio from every other publisher of its
    /// meeting since `since`: the publishers (by index) it has not had audio from (all
    /// of them while it is between sessions).
    fn missing_media(&self, since: Instant) -> BTreeMap<usize, Vec<usize>> {
        let current: Vec<Option<String>> =
            self.people.iter().map(|p| p.bot.participant_id()).collect();
        let mut waiting = BTreeMap::new();
        for (i, p) in self.people.iter().enumerate() {
            let got = p.bot.received();
            let missing: Vec<usize> = (0..self.people.len())
                .filter(|&j| {
                    let q = &self.people[j];
                    if j == i || !q.publishes || q.meeting != p.meeting {
                        return false;
                    }
                    let Some(id) = &current[j] else {
                        return true;
                    };
                    got.get(&(id.clone(), "audio"))
                        .and_then(|c| c.last_arrival())
                        .is_none_or(|at| at <= since)
                })
                .collect();
            if !missing.is_empty() || current[i].is_none() {
                waiting.insert(i, missing);
            }
        }
        waiting
    }

    /// Who participant `i` is and where, for a report.
    fn describe(&self, i: usize) -> String {
        let p = &self.people[i];
        format!(
            "{} ({} in {}, on {})",
            p.name,
            if p.publishes {
                "publisher"
            } else {
                "subscriber"
            },
            p.region,
            p.bot.node_id().unwrap_or_else(|| "no node".into())
        )
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

    /// Follows the participants from `fault` until every one has media again (or the
    /// patience runs out), counting the placements that still name `dead` at `stale_at`
    /// (if given); returns the report's media figures.
    async fn follow(
        &self,
        fault: Instant,
        before: &[usize],
        dead: &str,
        stale_at: Option<Instant>,
    ) -> anyhow::Result<Followed> {
        let mut back: BTreeMap<usize, Duration> = BTreeMap::new();
        // What each participant still missed when last seen waiting.
        let mut last_missing: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        let mut stale = None;
        let until = fault + self.spec.patience.max(Duration::from_secs(11));
        while Instant::now() < until {
            let waiting = self.missing_media(fault);
            for i in 0..self.people.len() {
                match waiting.get(&i) {
                    Some(m) if !back.contains_key(&i) => {
                        last_missing.insert(i, m.clone());
                    }
                    Some(_) => {}
                    None => {
                        back.entry(i).or_insert_with(|| fault.elapsed());
                    }
                }
            }
            if stale.is_none() && stale_at.is_some_and(|at| Instant::now() >= at) {
                let mut n = 0;
                for m in &self.meeting_ids {
                    let on = self.cluster.placements(m).await?;
                    n += on.values().filter(|node| **node == dead).count();
                }
                stale = Some(n);
            }
            let staled = stale_at.is_none() || stale.is_some();
            if back.len() == self.people.len() && staled {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let fresh: Vec<bot::Rejoin> = self
            .people
            .iter()
            .zip(before)
            .flat_map(|(p, &n)| p.bot.rejoins().into_iter().skip(n))
            .collect();
        let lost: std::collections::BTreeSet<usize> = (0..self.people.len())
            .filter(|i| !back.contains_key(i))
            .map(|i| self.people[i].meeting)
            .collect();
        let slowest = back
            .iter()
            .max_by_key(|(_, d)| **d)
            .filter(|(_, d)| **d > Duration::from_millis(500))
            .map(|(&i, d)| {
                let waited: Vec<String> = last_missing
                    .get(&i)
                    .into_iter()
                    .flatten()
                    .map(|&j| self.describe(j))
                    .collect();
                format!(
                    "{} after {:.2} s; it last waited for {}",
                    self.describe(i),
                    d.as_secs_f64(),
                    if waited.is_empty() {
                        "a session of its own".into()
                    } else {
                        waited.join(", ")
                    }
                )
            });
        Ok(Followed {
            slowest,
            rejoined: fresh.len(),
            failed_rejoins: fresh.iter().map(|r| r.failed_attempts).sum(),
            meetings_lost: lost.len(),
            media_back: back.into_values().collect(),
            stale_placements: match stale_at {
                Some(_) => stale.unwrap_or(usize::MAX),
                None => 0,
            },
        })
    }

    fn rejoins_so_far(&self) -> Vec<usize> {
        self.people.iter().map(|p| p.bot.rejoins().len()).collect()
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
    async fn no_recording_ended(&mut self, r: &mut FaultReport) -> anyhow::Result<()> {
        let ended = self.restart_ended_recordings().await?;
        r.recordings_hit += ended;
        r.recordings_lost += ended;
        Ok(())
    }

    /// The running recordings (by index) by the node in their `field` (`node_id`: the
    /// recording node, `media_node_id`: the media node feeding them).
    async fn recordings_by(&self, field: &str) -> anyhow::Result<BTreeMap<String, Vec<usize>>> {
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
    async fn recordings_moved(
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
    async fn count_recordings(
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

    /// `kill -9` of the recording node that holds the most recordings: each must go on
    /// recording on the other node, with a gap that the recording shows.
    pub async fn kill_recording_node(&mut self) -> anyhow::Result<FaultReport> {
        let (victim, hit) = self
            .recordings_by("node_id")
            .await?
            .into_iter()
            .max_by_key(|(_, v)| v.len())
            .context("no recording running")?;
        let prober = self.prober();
        self.cluster.recording_node(&victim)?.proc.kill9();
        let fault = Instant::now();
        let gaps = self
            .recordings_moved(&hit, "node_id", &victim, fault)
            .await?;
        let mut r = FaultReport::new(
            format!("kill -9 of recording node {victim}"),
            victim.clone(),
            self,
        );
        prober.finish(&mut r).await?;
        // The meetings go on meanwhile: every participant should still have media.
        let waiting = self.waiting_for_media(fault);
        let lost: std::collections::BTreeSet<usize> =
            waiting.iter().map(|&i| self.people[i].meeting).collect();
        r.meetings_lost = lost.len();
        self.count_recordings(&mut r, &hit, gaps).await?;
        Ok(r)
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

    /// Follows media node `victim`'s participants from `gone` (its death or its fence)
    /// until they have media again, counts the placements still naming it 10 s later,
    /// stops the prober, and follows the recordings it fed (`hit`) to the meetings' new
    /// nodes.
    async fn media_node_gone(
        &mut self,
        r: &mut FaultReport,
        victim: &str,
        gone: Instant,
        before: &[usize],
        hit: &[usize],
        prober: JoinProber,
    ) -> anyhow::Result<()> {
        let stale_at = gone + Duration::from_secs(10);
        self.follow(gone, before, victim, Some(stale_at))
            .await?
            .fill(r);
        prober.finish(r).await?;
        let gaps = self
            .recordings_moved(hit, "media_node_id", victim, gone)
            .await?;
        self.count_recordings(r, hit, gaps).await
    }

    /// `kill -9` of the oslo media node that hosts the most participants.
    pub async fn kill_media_node(&mut self) -> anyhow::Result<FaultReport> {
        let victim = self
            .busiest_node("oslo")
            .context("no participant in oslo")?;
        let hit = self
            .recordings_by("media_node_id")
            .await?
            .remove(&victim)
            .unwrap_or_default();
        let before = self.rejoins_so_far();
        let prober = self.prober();
        self.cluster.media_node(&victim)?.proc.kill9();
        let fault = Instant::now();
        let mut r = FaultReport::new(
            format!("kill -9 of media node {victim}"),
            victim.clone(),
            self,
        );
        self.media_node_gone(&mut r, &victim, fault, &before, &hit, prober)
            .await?;
        Ok(r)
    }

    /// Follows a fault of controller `leader` from `fault`: until another leads, and what
    /// the participants saw meanwhile.
    async fn hand_over(
        &self,
        r: &mut FaultReport,
        leader: &str,
        fault: Instant,
        before: &[usize],
    ) -> anyhow::Result<()> {
        let (back, followed) = tokio::join!(
            self.leader_other_than(leader, fault),
            self.follow(fault, before, leader, None)
        );
        r.leader_back = back;
        followed?.fill(r);
        Ok(())
    }

    /// `kill -9` of the controller that leads: the other must take over, joins go on
    /// through it, and the meetings do not notice.
    pub async fn kill_controller_leader(&mut self) -> anyhow::Result<FaultReport> {
        let leader = self.leader().await?;
        let before = self.rejoins_so_far();
        let prober = self.prober();
        let c = self
            .cluster
            .controllers
            .iter_mut()
            .find(|c| c.id == leader)
            .context("the leader")?;
        c.proc.kill9();
        let fault = Instant::now();
        let mut r = FaultReport::new(
            format!("kill -9 of controller leader {leader}"),
            leader.clone(),
            self,
        );
        self.hand_over(&mut r, &leader, fault, &before).await?;
        prober.finish(&mut r).await?;
        self.no_recording_ended(&mut r).await?;
        Ok(r)
    }

    /// Starts a killed controller again and waits until it is ready.
    pub async fn restart_controller(&mut self, id: &str) -> anyhow::Result<()> {
        let c = self
            .cluster
            .controllers
            .iter_mut()
            .find(|c| c.id == id)
            .context("no such controller")?;
        c.proc.restart()?;
        self.cluster.wait_ready(Duration::from_secs(30)).await
    }

    /// `kill -9` of the etcd member that leads the raft: the other two elect a leader,
    /// every process's client moves to them, and nothing above notices.
    pub async fn kill_etcd_member(&mut self) -> anyhow::Result<FaultReport> {
        let i = self.cluster.etcd.leader().await?;
        let name = self.cluster.etcd.members[i].name.clone();
        let before = self.rejoins_so_far();
        let prober = self.prober();
        self.cluster.etcd.kill_member(i);
        let fault = Instant::now();
        let mut r = FaultReport::new(
            format!("kill -9 of etcd member {name}, the raft's leading one"),
            name,
            self,
        );
        // Long enough for every lease to have run out, had any gone unrenewed.
        let settle = fault + Duration::from_secs(self.spec.lease_ttl_secs + 1);
        self.follow(fault, &before, "", None).await?.fill(&mut r);
        tokio::time::sleep_until(settle.into()).await;
        prober.finish(&mut r).await?;
        self.no_recording_ended(&mut r).await?;
        Ok(r)
    }

    /// Starts a killed etcd member again and waits until it answers.
    pub async fn restart_etcd_member(&mut self, name: &str) -> anyhow::Result<()> {
        let i = self
            .cluster
            .etcd
            .members
            .iter()
            .position(|m| m.name == name)
            .context("no such etcd member")?;
        self.cluster.etcd.restart_member(i).await
    }

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
