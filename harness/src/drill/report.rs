//! What one fault did, as a report: the participants' losses and recovery times, the
//! prober's joins, leadership, fencing and healing, and recordings; merged over rounds
//! and printed by `fjord-drill`.
use std::time::Duration;

use super::Drill;

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
    pub(super) fn new(fault: String, dead_node: String, drill: &Drill) -> Self {
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
