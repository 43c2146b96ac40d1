//! The capacity planner behind `fjord-plan`: replays a trace of meetings through the
//! real placement code ([`crate::placement::place`]) against a described fleet, and says
//! per region how many participants were there at the peak, where their joins went
//! (in region, out of region, refused), how many relay links crossed regions, and how
//! many nodes the region needs for all its joins to stay in it.
//!
//! A trace is CSV, one row per meeting and region: `meeting,region,start_s,end_s,participants`
//! (that many participants of `meeting` from `region`, from `start_s` to `end_s`
//! seconds into the trace). A fleet is `region=NODESxCAPACITY,…` (participants per node).
use std::collections::{BTreeMap, BTreeSet, HashMap};

use common::ids::{NodeId, Region};
use common::keyspace::Slot;

use crate::placement::{self, Capacity, Load, NodeSnapshot, Outcome, Placement, Topology};

/// One row of a trace.
#[derive(Clone, Debug, PartialEq)]
pub struct TraceRow {
    pub meeting: String,
    pub region: Region,
    pub start_s: u64,
    pub end_s: u64,
    pub participants: u32,
}

/// Parses a trace (CSV with the header `meeting,region,start_s,end_s,participants`);
/// an error names the line and what is wrong with it.
pub fn parse_trace(text: &str) -> Result<Vec<TraceRow>, String> {
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let Some((_, header)) = lines.next() else {
        return Err("the trace is empty".into());
    };
    let want = ["meeting", "region", "start_s", "end_s", "participants"];
    let got: Vec<&str> = header.split(',').map(str::trim).collect();
    if got != want {
        return Err(format!(
            "line 1: the header must be `{}`, not `{}`",
            want.join(","),
            header.trim()
        ));
    }
    lines
        .map(|(i, line)| {
            let at = |what: String| format!("line {}: {what}", i + 1);
            let f: Vec<&str> = line.split(',').map(str::trim).collect();
            let [meeting, region, start, end, n] = f[..] else {
                return Err(at(format!("expected 5 fields, got {}", f.len())));
            };
            let number = |name: &str, v: &str| {
                v.parse::<u64>()
                    .map_err(|_| at(format!("{name} {v:?} is not a whole number")))
            };
            let row = TraceRow {
                meeting: meeting.to_owned(),
                region: Region::parse(region).map_err(|e| at(format!("region {region:?}: {e}")))?,
                start_s: number("start_s", start)?,
                end_s: number("end_s", end)?,
                participants: u32::try_from(number("participants", n)?)
                    .map_err(|_| at("participants: too many".into()))?,
            };
            if meeting.is_empty() {
                return Err(at("the meeting is empty".into()));
            }
            if row.end_s <= row.start_s {
                return Err(at("end_s must be after start_s".into()));
            }
            Ok(row)
        })
        .collect()
}

/// Nodes per region and the participants each takes.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Fleet {
    pub regions: BTreeMap<Region, (u32, u32)>,
}

impl Fleet {
    /// Parses `oslo=3x200,bergen=2x150`.
    pub fn parse(spec: &str) -> Result<Self, String> {
        let mut regions = BTreeMap::new();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let bad = || format!("fleet {part:?}: expected REGION=NODESxCAPACITY, e.g. oslo=3x200");
            let (region, size) = part.split_once('=').ok_or_else(bad)?;
            let (nodes, cap) = size.split_once('x').ok_or_else(bad)?;
            let region =
                Region::parse(region.trim()).map_err(|e| format!("fleet {part:?}: {e}"))?;
            let nodes: u32 = nodes.trim().parse().map_err(|_| bad())?;
            let cap: u32 = cap.trim().parse().map_err(|_| bad())?;
            if cap == 0 {
                return Err(format!(
                    "fleet {part:?}: a node takes at least one participant"
                ));
            }
            regions.insert(region, (nodes, cap));
        }
        Ok(Self { regions })
    }

    fn snapshots(&self) -> Vec<NodeSnapshot> {
        self.regions
            .iter()
            .flat_map(|(region, (nodes, cap))| {
                (1..=*nodes).filter_map(move |i| {
                    Some(NodeSnapshot {
                        id: NodeId::parse(&format!("{region}-{i}")).ok()?,
                        region: region.clone(),
                        draining: false,
                        capacity: Capacity {
                            participants: *cap,
                            bitrate_kbps: 0,
                            cpu_cores: 0.0,
                        },
                        load: Load::default(),
                        recent_joins: 0,
                    })
                })
            })
            .collect()
    }
}

/// What happened to one region's participants, and to its nodes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RegionReport {
    /// Participants from the region in meetings at the same time, at most.
    pub peak: u32,
    pub joins: u64,
    pub in_region: u64,
    /// Placed on a node of another region (its nodes were full).
    pub out_of_region: u64,
    pub refused: u64,
    /// Relay links between the region's nodes and other regions' at the same time, at
    /// most (one per meeting and pair of nodes).
    pub peak_cross_links: u32,
}

/// Replays `trace` against `fleet`: each region's report.
pub fn simulate(
    trace: &[TraceRow],
    fleet: &Fleet,
    topology: &Topology,
) -> BTreeMap<Region, RegionReport> {
    let mut nodes = fleet.snapshots();
    let mut report: BTreeMap<Region, RegionReport> = BTreeMap::new();
    for row in trace {
        report.entry(row.region.clone()).or_default();
    }
    for r in fleet.regions.keys() {
        report.entry(r.clone()).or_default();
    }
    // Leaves before joins at the same second; then in the trace's order.
    let mut events: Vec<(u64, bool, usize)> = trace
        .iter()
        .enumerate()
        .flat_map(|(i, r)| [(r.start_s, true, i), (r.end_s, false, i)])
        .collect();
    events.sort_by_key(|(t, join, i)| (*t, *join, *i));
    let mut placements: HashMap<&str, BTreeMap<Slot, NodeId>> = HashMap::new();
    let mut open_rows: HashMap<&str, u32> = HashMap::new();
    let mut placed: HashMap<usize, Vec<NodeId>> = HashMap::new();
    let mut present: BTreeMap<Region, u32> = BTreeMap::new();
    // Relay links now: every pair of a meeting's nodes in two regions, counted for each
    // of the two; kept up to date as meetings take nodes and end.
    let mut links: BTreeMap<Region, u32> = BTreeMap::new();
    let mut at = 0;
    while at < events.len() {
        let now = events[at].0;
        while at < events.len() && events[at].0 == now {
            let (_, join, i) = events[at];
            let row = &trace[i];
            let meeting = row.meeting.as_str();
            if join {
                *open_rows.entry(meeting).or_default() += 1;
                *present.entry(row.region.clone()).or_default() += row.participants;
                let r = report.entry(row.region.clone()).or_default();
                r.peak = r.peak.max(present[&row.region]);
                let existing = placements.entry(meeting).or_default();
                for _ in 0..row.participants {
                    r.joins += 1;
                    let req = placement::Request {
                        client_region: &row.region,
                        residency: None,
                        existing,
                    };
                    let (node, region, n, outcome) = match placement::place(&nodes, topology, &req)
                    {
                        Placement::Existing {
                            node,
                            region,
                            n,
                            outcome,
                        }
                        | Placement::New {
                            node,
                            region,
                            n,
                            outcome,
                        } => (node, region, n, outcome),
                        Placement::Refused(_) => {
                            r.refused += 1;
                            continue;
                        }
                    };
                    match outcome {
                        Outcome::InRegion => r.in_region += 1,
                        Outcome::Fallback => r.out_of_region += 1,
                    }
                    if !existing.values().any(|x| *x == node) {
                        for (other, _) in nodes_of(existing).filter(|(r, _)| **r != region) {
                            *links.entry(region.clone()).or_default() += 1;
                            *links.entry(other.clone()).or_default() += 1;
                        }
                    }
                    existing.insert(Slot { region, n }, node.clone());
                    if let Some(x) = nodes.iter_mut().find(|x| x.id == node) {
                        x.load.participants += 1;
                    }
                    placed.entry(i).or_default().push(node);
                }
            } else {
                *present.entry(row.region.clone()).or_default() -= row.participants;
                for node in placed.remove(&i).unwrap_or_default() {
                    if let Some(x) = nodes.iter_mut().find(|x| x.id == node) {
                        x.load.participants -= 1;
                    }
                }
                let open = open_rows.entry(meeting).or_default();
                *open -= 1;
                if *open == 0 {
                    // The meeting ended: its placements go with it, and its links.
                    let gone = placements.remove(meeting).unwrap_or_default();
                    let spans: Vec<_> = nodes_of(&gone).collect();
                    for (i, a) in spans.iter().enumerate() {
                        for b in spans[i + 1..].iter().filter(|b| b.0 != a.0) {
                            *links.entry(a.0.clone()).or_default() -= 1;
                            *links.entry(b.0.clone()).or_default() -= 1;
                        }
                    }
                }
            }
            at += 1;
        }
        for (region, n) in &links {
            let r = report.entry(region.clone()).or_default();
            r.peak_cross_links = r.peak_cross_links.max(*n);
        }
    }
    report
}

/// A meeting's distinct nodes, with their regions.
fn nodes_of(slots: &BTreeMap<Slot, NodeId>) -> impl Iterator<Item = (&Region, &NodeId)> {
    slots
        .iter()
        .map(|(s, n)| (&s.region, n))
        .collect::<BTreeSet<_>>()
        .into_iter()
}

/// The fewest nodes (of the region's size in `fleet`, or `default_capacity`) with which
/// every join from `region` stays in it, the other regions as described; None if even
/// `max` nodes are not enough.
pub fn nodes_needed(
    trace: &[TraceRow],
    fleet: &Fleet,
    topology: &Topology,
    region: &Region,
    default_capacity: u32,
    max: u32,
) -> Option<u32> {
    let cap = fleet.regions.get(region).map_or(default_capacity, |r| r.1);
    let enough = |n: u32| {
        let mut f = fleet.clone();
        f.regions.insert(region.clone(), (n, cap));
        let r = simulate(trace, &f, topology)
            .remove(region)
            .unwrap_or_default();
        r.refused == 0 && r.out_of_region == 0
    };
    if enough(0) {
        return Some(0);
    }
    // Doubling, then halving the gap: more nodes never push a region's joins out.
    let mut hi = 1;
    while !enough(hi) {
        if hi >= max {
            return None;
        }
        hi = (hi * 2).min(max);
    }
    let mut lo = hi / 2;
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if enough(mid) {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    Some(hi)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(r: &str) -> Region {
        Region::parse(r).unwrap()
    }

    fn neighbours() -> Topology {
        Topology {
            neighbours: [
                (region("oslo"), vec![region("bergen")]),
                (region("bergen"), vec![region("oslo")]),
            ]
            .into_iter()
            .collect(),
        }
    }

    const TRACE: &str = "meeting,region,start_s,end_s,participants\n\
                         m1,oslo,0,100,8\n\
                         m2,oslo,10,50,5\n\
                         m3,bergen,20,30,9\n";

    #[test]
    fn a_small_trace_agrees_with_the_hand_computed_plan() {
        let trace = parse_trace(TRACE).unwrap();
        let fleet = Fleet::parse("oslo=1x10, bergen=1x10").unwrap();
        let r = simulate(&trace, &fleet, &neighbours());
        // m1's 8 fill oslo-1 to 8; m2's first 2 fill it, its other 3 go to bergen-1.
        // m3's 9 find bergen-1 at 3: 7 fit, and with oslo full the last 2 are refused.
        let oslo = &r[&region("oslo")];
        assert_eq!(
            (
                oslo.peak,
                oslo.joins,
                oslo.in_region,
                oslo.out_of_region,
                oslo.refused
            ),
            (13, 13, 10, 3, 0)
        );
        let bergen = &r[&region("bergen")];
        assert_eq!(
            (
                bergen.peak,
                bergen.joins,
                bergen.in_region,
                bergen.out_of_region,
                bergen.refused
            ),
            (9, 9, 7, 0, 2)
        );
        // m2 spans oslo-1 and bergen-1: one link between the regions.
        assert_eq!((oslo.peak_cross_links, bergen.peak_cross_links), (1, 1));
        // Oslo needs 2 nodes (m2 on a node of its own); Bergen 2 (m3 beside m2's spill).
        for (name, want) in [("oslo", 2), ("bergen", 2)] {
            let got = nodes_needed(&trace, &fleet, &neighbours(), &region(name), 10, 64);
            assert_eq!(got, Some(want), "{name}");
        }
        // A region the fleet lacks gets nodes of the default size.
        let only_oslo = Fleet::parse("oslo=2x10").unwrap();
        assert_eq!(
            nodes_needed(&trace, &only_oslo, &neighbours(), &region("bergen"), 5, 64),
            Some(2)
        );
        assert_eq!(
            nodes_needed(&trace, &fleet, &neighbours(), &region("oslo"), 10, 1),
            None
        );
    }

    #[test]
    fn bad_traces_and_fleets_are_refused_with_the_line_and_the_reason() {
        assert!(parse_trace("").unwrap_err().contains("empty"));
        assert!(parse_trace("a,b\n").unwrap_err().contains("header"));
        let bad = |row: &str| {
            parse_trace(&format!(
                "meeting,region,start_s,end_s,participants\n{row}\n"
            ))
            .unwrap_err()
        };
        assert!(bad("m1,oslo,5,5,3").contains("line 2"));
        assert!(bad("m1,oslo,0,5").contains("5 fields"));
        assert!(bad("m1,oslo,x,5,3").contains("start_s"));
        assert!(bad("m1,Not A Region!,0,5,3").contains("region"));
        for f in ["oslo", "oslo=3", "oslo=ax2", "oslo=2x0"] {
            assert!(Fleet::parse(f).is_err(), "{f}");
        }
    }
}
