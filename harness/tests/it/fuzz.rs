//! Each fuzz target (`fuzz/`, libFuzzer) runs for a short while on its seed corpus, kept
//! in the repo, and finds nothing. `scripts/fuzz.sh build` builds the targets first
//! (scripts/test.sh does); `scripts/fuzz.sh run` is the long run.
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// How long each target runs here. The long run is `scripts/fuzz.sh run`.
const SHORT_RUN: Duration = Duration::from_secs(20);

fn target_binary(target: &str) -> PathBuf {
    let path = harness::repo_root()
        .join("fuzz/target/x86_64-unknown-linux-gnu/release")
        .join(target);
    assert!(
        path.exists(),
        "{} is missing: build the fuzz targets first (scripts/fuzz.sh build)",
        path.display()
    );
    path
}

/// Runs `target` for [`SHORT_RUN`] on a copy of its seed corpus and fails with what it
/// found: the input that crashed, saved for replay, and the fuzzer's report.
fn short_run(target: &str) {
    let binary = target_binary(target);
    let seeds = harness::repo_root().join("fuzz/corpus").join(target);
    let seed_count = std::fs::read_dir(&seeds)
        .map(|d| d.count())
        .unwrap_or_else(|e| panic!("the seed corpus {}: {e}", seeds.display()));
    assert!(seed_count > 0, "{} holds no seeds", seeds.display());
    let work = tempfile::tempdir().unwrap();
    let corpus = work.path().join("corpus");
    std::fs::create_dir(&corpus).unwrap();
    let found = harness::repo_root().join("target/fuzz-found").join(target);
    std::fs::create_dir_all(&found).unwrap();
    let out = Command::new(&binary)
        .arg(format!("-max_total_time={}", SHORT_RUN.as_secs()))
        // An input that takes this long is a hang, and a finding.
        .arg("-timeout=10")
        .arg("-rss_limit_mb=2048")
        .arg(format!("-artifact_prefix={}/", found.display()))
        .arg("-print_final_stats=1")
        .arg(&corpus)
        .arg(&seeds)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stderr);
    let tail: Vec<&str> = report.lines().rev().take(60).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    assert!(
        out.status.success(),
        "fuzz target {target} found a failure (inputs saved in {}; replay one with \
         `{} <file>`):\n{}",
        found.display(),
        binary.display(),
        tail.join("\n")
    );
    // It really ran: libFuzzer reports the inputs it executed.
    let runs: u64 = report
        .lines()
        .find_map(|l| l.strip_prefix("stat::number_of_executed_units:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    assert!(
        runs >= seed_count as u64,
        "{target} ran {runs} inputs, fewer than its {seed_count} seeds:\n{}",
        tail.join("\n")
    );
    eprintln!(
        "{target}: {runs} inputs in {} s, nothing found",
        SHORT_RUN.as_secs()
    );
}

#[test]
fn the_signaling_parsers_survive_a_short_fuzz_run() {
    short_run("signaling");
}

#[test]
fn the_relay_wire_format_and_rtp_views_survive_a_short_fuzz_run() {
    short_run("relay_wire");
}

#[test]
fn the_recording_nodes_audio_file_writer_survives_a_short_fuzz_run() {
    short_run("audio_file");
}

#[test]
fn the_config_loader_survives_a_short_fuzz_run() {
    short_run("config");
}

#[test]
fn the_sfu_core_survives_a_short_fuzz_run_of_operations_and_garbage_packets() {
    short_run("sfu_ops");
}

#[test]
fn the_sip_gateways_sip_sdp_rtp_and_dial_parsing_survives_a_short_fuzz_run() {
    short_run("sip");
}
