//! `fjord-plan`: how many media nodes each region needs for a trace of meetings, found
//! by replaying it through the controller's own placement code (see
//! `controller::capacity`).
use std::collections::BTreeMap;
use std::process::ExitCode;

use clap::Parser;
use common::ids::Region;
use controller::capacity::{self, Fleet};
use controller::placement::Topology;

/// Replays a trace of meetings (CSV: meeting,region,start_s,end_s,participants) through
/// Fjord's placement against a fleet, and prints per region the peak of concurrent
/// participants, the nodes needed, joins kept in region, sent out of region or refused,
/// and relay links across regions.
#[derive(Parser)]
#[command(name = "fjord-plan", version)]
struct Args {
    /// The trace, a CSV file.
    #[arg(long)]
    trace: std::path::PathBuf,
    /// The fleet: REGION=NODESxCAPACITY, comma-separated (e.g. oslo=3x200,bergen=2x200).
    #[arg(long, default_value = "")]
    fleet: String,
    /// A region's neighbours, nearest first: REGION:NEIGHBOUR,NEIGHBOUR (repeatable), as
    /// in the controller's configuration.
    #[arg(long = "near")]
    near: Vec<String>,
    /// Participants per node in regions the fleet does not list.
    #[arg(long, default_value_t = 200)]
    node_capacity: u32,
    /// The most nodes a region is tried with.
    #[arg(long, default_value_t = 10_000)]
    max_nodes: u32,
}

fn topology(near: &[String]) -> Result<Topology, String> {
    let mut neighbours = BTreeMap::new();
    for n in near {
        let (r, list) = n
            .split_once(':')
            .ok_or_else(|| format!("--near {n:?}: expected REGION:NEIGHBOUR,NEIGHBOUR"))?;
        let parse = |x: &str| Region::parse(x.trim()).map_err(|e| format!("--near {n:?}: {e}"));
        let list = list
            .split(',')
            .filter(|x| !x.trim().is_empty())
            .map(parse)
            .collect::<Result<Vec<_>, _>>()?;
        neighbours.insert(parse(r)?, list);
    }
    Ok(Topology { neighbours })
}

fn run(args: &Args) -> Result<(), String> {
    let text = std::fs::read_to_string(&args.trace)
        .map_err(|e| format!("cannot read {}: {e}", args.trace.display()))?;
    let trace = capacity::parse_trace(&text)?;
    let fleet = Fleet::parse(&args.fleet)?;
    let topology = topology(&args.near)?;
    let report = capacity::simulate(&trace, &fleet, &topology);
    println!(
        "{:<16} {:>6} {:>6} {:>7} {:>8} {:>10} {:>14} {:>8} {:>12}",
        "region",
        "peak",
        "nodes",
        "needed",
        "joins",
        "in_region",
        "out_of_region",
        "refused",
        "cross_links"
    );
    for (region, r) in &report {
        let nodes = fleet.regions.get(region).map_or(0, |f| f.0);
        let needed = capacity::nodes_needed(
            &trace,
            &fleet,
            &topology,
            region,
            args.node_capacity,
            args.max_nodes,
        )
        .map_or_else(|| format!(">{}", args.max_nodes), |n| n.to_string());
        println!(
            "{:<16} {:>6} {:>6} {:>7} {:>8} {:>10} {:>14} {:>8} {:>12}",
            region.as_str(),
            r.peak,
            nodes,
            needed,
            r.joins,
            r.in_region,
            r.out_of_region,
            r.refused,
            r.peak_cross_links
        );
    }
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fjord-plan: {e}");
            ExitCode::from(2)
        }
    }
}
