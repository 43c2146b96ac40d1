#!/usr/bin/env bash
# Installs everything the tests need and runs them all: formatting, lints, unit and
# property tests, and the integration tests against real etcd and real processes.
# The test runner's summary is the last thing printed.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh

# One build from a clean clone gains nothing from incremental caches, which would take
# as much disk again as the build itself (a CI run once failed with the disk full).
export CARGO_INCREMENTAL=0

ensure_packages "${BUILD_PACKAGES[@]}" "${RUN_PACKAGES[@]}" "${TEST_PACKAGES[@]}"
ensure_geckodriver
ensure_python_tools
ensure_node_tools

echo ">> cargo fmt --check"
cargo fmt --all -- --check
echo ">> cargo clippy"
cargo clippy --locked --workspace --all-targets --quiet -- -D warnings
# The integration tests start the binaries as processes, so build them first.
echo ">> cargo build --workspace --bins"
cargo build --locked --workspace --bins --quiet
# The tests run each fuzz target for a short while.
scripts/fuzz.sh build

# str0m as we carry it (third_party/str0m/PATCHES.md): its own library tests and its
# bandwidth estimation tests (probing, loss, delay, recovery: the pacer we patch feeds
# them; four are ours: two at Fjord's pacing factor, one comparing the pacer-only
# timeout with the full walk, one comparing writes through stream_tx_to_write with
# writes through stream_tx), with its own lock file. The four whole-link scenarios
# (simple::, changing::) take two minutes more and run by PATCHES.md's command.
echo ">> str0m's library and BWE tests (patched crate)"
CARGO_TARGET_DIR=target/third_party cargo test --locked --quiet \
  --manifest-path third_party/str0m/Cargo.toml --features _internal_test_exports \
  --lib --test bwe -- --skip simple:: --skip changing::

echo ">> tests"
if cargo nextest --version >/dev/null 2>&1; then
  exec cargo nextest run --locked --workspace --no-fail-fast
else
  exec cargo test --locked --workspace --no-fail-fast
fi
