//! What the participants saw of a fault: who waits for whose media, how long until each
//! had media from every publisher of its meeting again, who rejoined, and the
//! placements still naming the dead node.
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::{Drill, FaultReport};

/// What the participants saw of a fault (see [`Drill::follow`]).
pub(super) struct Followed {
    slowest: Option<String>,
    rejoined: usize,
    failed_rejoins: u32,
    meetings_lost: usize,
    media_back: Vec<Duration>,
    stale_placements: usize,
}

impl Followed {
    pub(super) fn fill(self, r: &mut FaultReport) {
        r.rejoined = self.rejoined;
        r.failed_rejoins = self.failed_rejoins;
        r.meetings_lost = self.meetings_lost;
        r.media_back = self.media_back;
        r.stale_placements = self.stale_placements;
        r.slowest = self.slowest;
    }
}

impl Drill {
    /// The participants (by index) that have not had audio from every other publisher
    /// of their meeting since `since`.
    pub(super) fn waiting_for_media(&self, since: Instant) -> Vec<usize> {
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

    /// Follows the participants from `fault` until every one has media again (or the
    /// patience runs out), counting the placements that still name `dead` at `stale_at`
    /// (if given); returns the report's media figures.
    pub(super) async fn follow(
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

    pub(super) fn rejoins_so_far(&self) -> Vec<usize> {
        self.people.iter().map(|p| p.bot.rejoins().len()).collect()
    }
}
