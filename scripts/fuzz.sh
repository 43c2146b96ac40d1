#!/usr/bin/env bash
# The fuzz targets in fuzz/ (cargo fuzz, libFuzzer, on the stable toolchain):
#
#   scripts/fuzz.sh build                    builds them (scripts/test.sh does: the tests
#                                            run each for a short while)
#   scripts/fuzz.sh run [SECONDS] [TARGET]   runs every target (or TARGET) for SECONDS
#                                            each (default 600), starting from its seed
#                                            corpus in fuzz/corpus/
#   scripts/fuzz.sh list                     names the targets
#
# What a run finds new goes to target/fuzz-corpus/TARGET (not into the repo: merge the
# inputs worth keeping with `cargo fuzz cmin`). A crash stops the run; its input is saved
# under target/fuzz-found/TARGET and replays with `fuzz/target/.../release/TARGET FILE`.
# Fix it, and make the input a regression test in the crate it hit.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh

# cargo fuzz passes rustc flags that stable takes only under RUSTC_BOOTSTRAP.
export RUSTC_BOOTSTRAP=1
# Without a sanitizer: our crates forbid unsafe code, so AddressSanitizer would mostly
# slow the runs down; debug assertions stay on (overflow checks are findings).
BUILD_FLAGS=(--sanitizer none --debug-assertions --fuzz-dir fuzz)

build() {
  ensure_packages "${BUILD_PACKAGES[@]}" "${FUZZ_PACKAGES[@]}"
  ensure_cargo_fuzz
  # Its own build of every dependency, with coverage instrumentation (a few minutes the
  # first time): the output goes to a log, shown when the build fails.
  local log=target/fuzz-build.log
  mkdir -p target
  # Built exactly as locked: cargo fuzz has no --locked of its own, so check first that
  # fuzz/Cargo.lock needs no change (a stale lock would build against whatever
  # resolves that day). Refresh it with `cargo metadata --manifest-path fuzz/Cargo.toml`
  # after changing a dependency, and commit it.
  if ! cargo metadata --locked --manifest-path fuzz/Cargo.toml --format-version 1 >/dev/null; then
    echo "fuzz/Cargo.lock is out of date: run 'cargo metadata --manifest-path fuzz/Cargo.toml --format-version 1 >/dev/null' and commit fuzz/Cargo.lock" >&2
    exit 1
  fi
  echo ">> cargo fuzz build (log: $log)"
  if ! cargo fuzz build "${BUILD_FLAGS[@]}" >"$log" 2>&1; then
    tail -n 60 "$log"
    echo "cargo fuzz build failed; the whole log is $log" >&2
    exit 1
  fi
}

targets() {
  cargo fuzz list --fuzz-dir fuzz
}

run() {
  local seconds="${1:-600}" only="${2:-}"
  build
  local t
  for t in $(targets); do
    if [ -n "$only" ] && [ "$t" != "$only" ]; then
      continue
    fi
    mkdir -p "target/fuzz-corpus/$t" "target/fuzz-found/$t"
    echo ">> $t for $seconds s"
    cargo fuzz run "${BUILD_FLAGS[@]}" "$t" "target/fuzz-corpus/$t" "fuzz/corpus/$t" -- \
      -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
      -artifact_prefix="target/fuzz-found/$t/" -print_final_stats=1
  done
}

case "${1:-}" in
  build) build ;;
  run) shift; run "$@" ;;
  list) targets ;;
  *) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
