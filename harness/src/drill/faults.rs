//! The kills: `kill -9` of the busiest media node, of the recording node holding the
//! most recordings, of the controller leader and of the etcd raft leader, what each did,
//! and starting each again.
use std::time::{Duration, Instant};

use anyhow::Context;

use super::probe::JoinProber;
use super::{Drill, FaultReport};

impl Drill {
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
    pub(super) async fn media_node_gone(
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
    pub(super) async fn hand_over(
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
}
