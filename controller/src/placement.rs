//! Placement (DESIGN §4): which media node hosts a meeting's participants from a region,
//! and which recording node records a meeting. Pure functions of a snapshot of the
//! cluster and the request; the caller commits the answer with a store transaction. They
//! never choose a draining node or one that is not in the snapshot (dead), and never
//! leave a residency pin.
use std::collections::BTreeMap;

use common::ids::{NodeId, Region};
use common::keyspace::Slot;

pub use crate::model::Capacity;
use crate::model::NodeState;
use crate::view::ClusterView;

/// One media node as placement sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeSnapshot {
    pub id: NodeId,
    pub region: Region,
    pub draining: bool,
    pub capacity: Capacity,
    pub load: Load,
    /// Joins sent to this node recently that its load report may not show yet.
    pub recent_joins: u32,
}

#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Load {
    pub participants: u32,
    pub bitrate_kbps: u64,
    pub cpu_cores: f64,
}

impl NodeSnapshot {
    /// Utilisation after one more participant: the most used dimension, used/capacity.
    pub fn utilisation_with_one_more(&self) -> f64 {
        let p = if self.capacity.participants == 0 {
            f64::INFINITY
        } else {
            f64::from(self.load.participants + self.recent_joins + 1)
                / f64::from(self.capacity.participants)
        };
        let b = if self.capacity.bitrate_kbps == 0 {
            0.0
        } else {
            self.load.bitrate_kbps as f64 / self.capacity.bitrate_kbps as f64
        };
        let c = if self.capacity.cpu_cores <= 0.0 {
            0.0
        } else {
            self.load.cpu_cores / self.capacity.cpu_cores
        };
        p.max(b).max(c)
    }
    pub fn has_room(&self) -> bool {
        self.utilisation_with_one_more() <= 1.0
    }
    fn usable(&self) -> bool {
        !self.draining && self.has_room()
    }
}

/// Which regions are near which: `neighbours[r]` lists r's neighbours, nearest first.
#[derive(Clone, Debug, Default)]
pub struct Topology {
    pub neighbours: BTreeMap<Region, Vec<Region>>,
}

impl Topology {
    /// Regions to try for a client in `home`: home, its neighbours in order, then every
    /// other region that has nodes, by name.
    pub fn search_order(&self, home: &Region, nodes: &[NodeSnapshot]) -> Vec<Region> {
        let mut order = vec![home.clone()];
        for r in self.neighbours.get(home).into_iter().flatten() {
            if !order.contains(r) {
                order.push(r.clone());
            }
        }
        let mut rest: Vec<Region> = nodes
            .iter()
            .map(|n| n.region.clone())
            .filter(|r| !order.contains(r))
            .collect();
        rest.sort();
        rest.dedup();
        order.extend(rest);
        order
    }
}

#[derive(Clone, Debug)]
pub struct Request<'a> {
    pub client_region: &'a Region,
    pub residency: Option<&'a Region>,
    /// The meeting's current placements: each region's nodes, by slot.
    pub existing: &'a BTreeMap<Slot, NodeId>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    InRegion,
    Fallback,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::InRegion => "in_region",
            Outcome::Fallback => "fallback",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Placement {
    /// The meeting already has this usable node in `region` (in its slot `n`).
    Existing {
        node: NodeId,
        region: Region,
        n: u32,
        outcome: Outcome,
    },
    /// Place the meeting's participants of `region` on `node`, in slot `n` of the region:
    /// the first, the slot of a node that died, or the next one when the region's nodes
    /// of the meeting are full or draining (spill-over: they keep their participants).
    New {
        node: NodeId,
        region: Region,
        n: u32,
        outcome: Outcome,
    },
    Refused(Refusal),
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the meeting is pinned to region {0} and no media node there has free capacity")]
    PinnedRegionFull(Region),
    #[error("no media node in any region has free capacity")]
    NoCapacity,
}

pub fn place(nodes: &[NodeSnapshot], topology: &Topology, req: &Request<'_>) -> Placement {
    let regions = match req.residency {
        Some(pin) => vec![pin.clone()],
        None => topology.search_order(req.client_region, nodes),
    };
    for region in regions {
        let outcome = if &region == req.client_region {
            Outcome::InRegion
        } else {
            Outcome::Fallback
        };
        let mine: Vec<(u32, &NodeId)> = req
            .existing
            .iter()
            .filter(|(s, _)| s.region == region)
            .map(|(s, n)| (s.n, n))
            .collect();
        // The meeting's first node of the region with room (meeting affinity).
        if let Some((n, current)) = mine.iter().find(|(_, id)| {
            nodes
                .iter()
                .any(|x| &x.id == *id && x.region == region && x.usable())
        }) {
            return Placement::Existing {
                node: (*current).clone(),
                region,
                n: *n,
                outcome,
            };
        }
        let best = nodes
            .iter()
            .filter(|n| n.region == region && n.usable())
            .min_by(|a, b| {
                a.utilisation_with_one_more()
                    .total_cmp(&b.utilisation_with_one_more())
                    .then_with(|| a.id.cmp(&b.id))
            });
        if let Some(best) = best {
            // A dead node's slot is taken over; otherwise the next one (spill-over).
            let dead = mine
                .iter()
                .find(|(_, id)| !nodes.iter().any(|x| &x.id == *id))
                .map(|(n, _)| *n);
            let next = (0..)
                .find(|n| !mine.iter().any(|(m, _)| m == n))
                .unwrap_or(0);
            return Placement::New {
                node: best.id.clone(),
                region,
                n: dead.unwrap_or(next),
                outcome,
            };
        }
    }
    match req.residency {
        Some(pin) => Placement::Refused(Refusal::PinnedRegionFull(pin.clone())),
        None => Placement::Refused(Refusal::NoCapacity),
    }
}

/// The recording node for a meeting whose media is in `region`: the least busy active
/// node of that region with storage for `classification` and a free slot; else, unless
/// `residency` pins the meeting, of any region. `Err` says why there is none.
pub fn place_recording(
    view: &ClusterView,
    region: &Region,
    residency: Option<&Region>,
    classification: &str,
) -> Result<NodeId, String> {
    let busy = |n: &NodeId| {
        view.recordings
            .values()
            .filter(|r| &r.node == n && r.holds_slot())
            .count() as u32
    };
    let candidates = |in_region: &dyn Fn(&Region) -> bool| {
        view.recording
            .iter()
            .filter(|(_, r)| r.state == NodeState::Active && in_region(&r.region))
            .filter(|(_, r)| r.storage_classes.iter().any(|c| c == classification))
            .filter_map(|(id, r)| {
                let used = busy(id);
                (used < r.slots).then(|| (used as f64 / f64::from(r.slots.max(1)), id.clone()))
            })
            .min_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.cmp(&b.1)))
            .map(|(_, id)| id)
    };
    if let Some(n) = candidates(&|r| r == region) {
        return Ok(n);
    }
    if let Some(pin) = residency {
        return Err(format!(
            "no recording node with a free slot and {classification:?} storage in {pin}, and the \
             meeting's residency keeps its recordings there"
        ));
    }
    candidates(&|_| true).ok_or_else(|| {
        format!("no recording node with a free slot and {classification:?} storage in any region")
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const REGIONS: [&str; 4] = ["oslo", "stockholm", "helsinki", "reykjavik"];

    fn region(i: usize) -> Region {
        Region::parse(REGIONS[i % REGIONS.len()]).unwrap()
    }

    fn topology() -> Topology {
        let mut t = Topology::default();
        t.neighbours.insert(region(0), vec![region(1), region(2)]);
        t.neighbours.insert(region(1), vec![region(0), region(2)]);
        t
    }

    prop_compose! {
        fn node()(i in 0usize..1000, r in 0usize..4, draining in prop::bool::weighted(0.2),
                  cap in 0u32..20, used in 0u32..25, recent in 0u32..3,
                  bcap in prop::option::of(1u64..10_000), bused in 0u64..12_000) -> NodeSnapshot {
            NodeSnapshot {
                id: NodeId::parse(&format!("n{i}")).unwrap(),
                region: region(r),
                draining,
                capacity: Capacity { participants: cap, bitrate_kbps: bcap.unwrap_or(0), cpu_cores: 0.0 },
                load: Load { participants: used, bitrate_kbps: bused, cpu_cores: 0.0 },
                recent_joins: recent,
            }
        }
    }

    fn nodes() -> impl Strategy<Value = Vec<NodeSnapshot>> {
        prop::collection::vec(node(), 0..12).prop_map(|mut v| {
            v.sort_by(|a, b| a.id.cmp(&b.id));
            v.dedup_by(|a, b| a.id == b.id);
            v
        })
    }

    fn existing() -> impl Strategy<Value = BTreeMap<Slot, NodeId>> {
        prop::collection::btree_map(
            (0usize..4, 0u32..3).prop_map(|(r, n)| Slot {
                region: region(r),
                n,
            }),
            (0usize..1000).prop_map(|i| NodeId::parse(&format!("n{i}")).unwrap()),
            0..5,
        )
    }

    proptest! {
        #[test]
        fn never_a_draining_full_or_dead_node(ns in nodes(), home in 0usize..4, ex in existing()) {
            let home = region(home);
            let req = Request { client_region: &home, residency: None, existing: &ex };
            if let Placement::New { node, region, .. } | Placement::Existing { node, region, .. } = place(&ns, &topology(), &req) {
                let n = ns.iter().find(|n| n.id == node).expect("chosen node is in the snapshot (alive)");
                prop_assert!(!n.draining);
                prop_assert!(n.has_room());
                prop_assert_eq!(&n.region, &region);
            }
        }

        #[test]
        fn never_outside_the_residency_pin(ns in nodes(), home in 0usize..4, pin in 0usize..4, ex in existing()) {
            let (home, pin) = (region(home), region(pin));
            let req = Request { client_region: &home, residency: Some(&pin), existing: &ex };
            match place(&ns, &topology(), &req) {
                Placement::New { region, .. } | Placement::Existing { region, .. } => prop_assert_eq!(region, pin),
                Placement::Refused(r) => {
                    prop_assert_eq!(r, Refusal::PinnedRegionFull(pin.clone()));
                    prop_assert!(!ns.iter().any(|n| n.region == pin && !n.draining && n.has_room()));
                }
            }
        }

        #[test]
        fn home_region_first_then_neighbours_in_order(ns in nodes(), home in 0usize..4) {
            let home = region(home);
            let none = BTreeMap::new();
            let topo = topology();
            let req = Request { client_region: &home, residency: None, existing: &none };
            let usable_in = |r: &Region| ns.iter().any(|n| &n.region == r && !n.draining && n.has_room());
            let expected = topo.search_order(&home, &ns).into_iter().find(|r| usable_in(r));
            match place(&ns, &topo, &req) {
                Placement::New { region, outcome, .. } => {
                    prop_assert_eq!(Some(&region), expected.as_ref());
                    prop_assert_eq!(outcome == Outcome::InRegion, region == home);
                }
                Placement::Existing { .. } => prop_assert!(false, "no existing placement was given"),
                Placement::Refused(r) => {
                    prop_assert_eq!(r, Refusal::NoCapacity);
                    prop_assert!(expected.is_none());
                }
            }
        }

        #[test]
        fn least_utilised_node_of_the_region(ns in nodes(), home in 0usize..4) {
            let home = region(home);
            let none = BTreeMap::new();
            let req = Request { client_region: &home, residency: None, existing: &none };
            if let Placement::New { node, region, .. } = place(&ns, &topology(), &req) {
                let chosen = ns.iter().find(|n| n.id == node).unwrap().utilisation_with_one_more();
                for n in ns.iter().filter(|n| n.region == region && !n.draining && n.has_room()) {
                    prop_assert!(chosen <= n.utilisation_with_one_more());
                }
            }
        }

        #[test]
        fn meeting_affinity_within_a_region(ns in nodes(), home in 0usize..4) {
            let home = region(home);
            // Pick any usable node of the home region as the meeting's current node.
            if let Some(cur) = ns.iter().find(|n| n.region == home && !n.draining && n.has_room()) {
                let ex = BTreeMap::from([(Slot::first(home.clone()), cur.id.clone())]);
                let req = Request { client_region: &home, residency: None, existing: &ex };
                prop_assert_eq!(place(&ns, &topology(), &req), Placement::Existing { node: cur.id.clone(), region: home.clone(), n: 0, outcome: Outcome::InRegion });
            }
        }

        #[test]
        fn a_new_node_takes_a_dead_nodes_slot_or_the_next_free_one(ns in nodes(), home in 0usize..4, ex in existing()) {
            let home = region(home);
            let req = Request { client_region: &home, residency: None, existing: &ex };
            if let Placement::New { region, n, .. } = place(&ns, &topology(), &req) {
                let slot = Slot { region: region.clone(), n };
                match ex.get(&slot) {
                    // Only a dead node's slot is reused: a live one keeps its participants.
                    Some(old) => prop_assert!(!ns.iter().any(|x| &x.id == old)),
                    None => {
                        let taken: Vec<u32> = ex.keys().filter(|s| s.region == region).map(|s| s.n).collect();
                        prop_assert!((0..n).all(|m| taken.contains(&m)), "slot {} skips a free one: {:?}", n, taken);
                    }
                }
            }
        }
    }

    #[test]
    fn a_full_node_keeps_its_slot_and_the_region_spills_over_to_the_next() {
        let mk = |id: &str, used: u32| NodeSnapshot {
            id: NodeId::parse(id).unwrap(),
            region: region(0),
            draining: false,
            capacity: Capacity {
                participants: 4,
                ..Default::default()
            },
            load: Load {
                participants: used,
                ..Default::default()
            },
            recent_joins: 0,
        };
        let home = region(0);
        let ex = BTreeMap::from([(Slot::first(home.clone()), NodeId::parse("a").unwrap())]);
        let req = Request {
            client_region: &home,
            residency: None,
            existing: &ex,
        };
        let ns = [mk("a", 4), mk("b", 0)];
        assert_eq!(
            place(&ns, &topology(), &req),
            Placement::New {
                node: NodeId::parse("b").unwrap(),
                region: home.clone(),
                n: 1,
                outcome: Outcome::InRegion
            }
        );
        // Once `a` has room again, joins go back to it: the first node with room.
        let ns = [mk("a", 3), mk("b", 0)];
        assert!(matches!(
            place(&ns, &topology(), &req),
            Placement::Existing { n: 0, .. }
        ));
    }

    /// Joins one by one into one meeting from `region`, each counted on its node as the
    /// load report would; returns the slots' nodes and how many each took.
    fn fill(ns: &mut [NodeSnapshot], joins: usize) -> BTreeMap<Slot, (NodeId, u32)> {
        let home = region(0);
        let mut placed: BTreeMap<Slot, (NodeId, u32)> = BTreeMap::new();
        for j in 0..joins {
            let existing: BTreeMap<Slot, NodeId> = placed
                .iter()
                .map(|(s, (n, _))| (s.clone(), n.clone()))
                .collect();
            let req = Request {
                client_region: &home,
                residency: None,
                existing: &existing,
            };
            let (node, slot) = match place(ns, &topology(), &req) {
                Placement::Existing {
                    node, region, n, ..
                }
                | Placement::New {
                    node, region, n, ..
                } => (node, Slot { region, n }),
                Placement::Refused(r) => panic!("join {j} refused: {r}"),
            };
            ns.iter_mut()
                .find(|x| x.id == node)
                .unwrap()
                .load
                .participants += 1;
            placed.entry(slot).or_insert((node, 0)).1 += 1;
        }
        placed
    }

    #[test]
    fn a_webinar_of_1000_and_a_meeting_of_300_fit_on_nodes_of_the_default_capacity() {
        let mk = |i: usize| NodeSnapshot {
            id: NodeId::parse(&format!("media-oslo-{i}")).unwrap(),
            region: region(0),
            draining: false,
            capacity: Capacity {
                participants: 300,
                ..Default::default()
            },
            load: Load::default(),
            recent_joins: 0,
        };
        let mut ns: Vec<NodeSnapshot> = (1..=4).map(mk).collect();
        let webinar = fill(&mut ns, 1_000);
        let counts: Vec<u32> = webinar.values().map(|(_, n)| *n).collect();
        // The first node fills up, then the next: four slots, 0..=3, none over capacity.
        assert_eq!(counts, vec![300, 300, 300, 100], "{webinar:?}");
        assert_eq!(
            webinar.keys().map(|s| s.n).collect::<Vec<_>>(),
            vec![0, 1, 2, 3]
        );
        let mut ns: Vec<NodeSnapshot> = (1..=4).map(mk).collect();
        let meeting = fill(&mut ns, 300);
        assert_eq!(meeting.len(), 1, "300 fit on one node: {meeting:?}");
    }

    #[test]
    fn recent_joins_count_against_capacity() {
        let mk = |id: &str, used: u32, recent: u32| NodeSnapshot {
            id: NodeId::parse(id).unwrap(),
            region: region(0),
            draining: false,
            capacity: Capacity {
                participants: 10,
                ..Default::default()
            },
            load: Load {
                participants: used,
                ..Default::default()
            },
            recent_joins: recent,
        };
        let none = BTreeMap::new();
        let home = region(0);
        let req = Request {
            client_region: &home,
            residency: None,
            existing: &none,
        };
        // a reports less load, but has had a burst of joins it has not reported yet.
        let ns = [mk("a", 2, 6), mk("b", 5, 0)];
        assert!(
            matches!(place(&ns, &topology(), &req), Placement::New { node, .. } if node.as_str() == "b")
        );
        let full = [mk("a", 9, 1)];
        assert_eq!(
            place(&full, &topology(), &req),
            Placement::Refused(Refusal::NoCapacity)
        );
    }

    fn busy(v: &mut ClusterView, node: &str, n: usize) {
        for i in 0..n {
            let r = crate::testing::recording(&format!("{node}-r{i}"), node, "media-1");
            v.recordings.insert(r.id.clone(), r);
        }
    }

    #[test]
    fn recordings_go_to_a_free_node_of_the_region_and_never_cross_a_pin() {
        let mut v = ClusterView::default();
        for (id, region, slots) in [
            ("rec-oslo-1", "oslo", 1),
            ("rec-oslo-2", "oslo", 2),
            ("rec-sthlm-1", "stockholm", 4),
        ] {
            let n = crate::testing::recording_node(id, region, slots);
            v.recording.insert(n.id.clone(), n);
        }
        let oslo = Region::parse("oslo").unwrap();
        let placed = |v: &ClusterView| place_recording(v, &oslo, None, "internal").unwrap();
        assert_eq!(
            placed(&v).as_str(),
            "rec-oslo-1",
            "both free: the first by name"
        );
        busy(&mut v, "rec-oslo-1", 1);
        assert_eq!(placed(&v).as_str(), "rec-oslo-2");
        busy(&mut v, "rec-oslo-2", 2);
        assert_eq!(
            placed(&v).as_str(),
            "rec-sthlm-1",
            "region full, no pin: another region"
        );
        let err = place_recording(&v, &oslo, Some(&oslo), "internal").unwrap_err();
        assert!(err.contains("residency"), "{err}");
        assert!(
            place_recording(&v, &oslo, None, "secret").is_err(),
            "no such storage"
        );
    }
}
