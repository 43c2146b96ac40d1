#!/usr/bin/env bash
# The SFU core's instructions per datagram it sends, counted by callgrind (repeatable on
# a noisy machine, unlike time): fjord-bench-forward runs one meeting on a virtual clock
# twice, for a short and a longer stretch of media, with only the core's entry points
# collected; the difference between the two runs, over the difference in datagrams,
# leaves out the set-up (ICE, DTLS, negotiation). Arguments go to fjord-bench-forward
# (--publishers, --subscribers); docs/development.md has figures.
#
#   scripts/forward-cost.sh [--publishers 5 --subscribers 50]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
ensure_packages "${BUILD_PACKAGES[@]}" valgrind
for a in "$@"; do
  if [ "$a" = "--seconds" ]; then
    echo "forward-cost: the script chooses --seconds itself (2 and 6)" >&2
    exit 2
  fi
done
cargo build --release --locked -p media-node --features rig --bin fjord-bench-forward --quiet
bin=${CARGO_TARGET_DIR:-target}/release/fjord-bench-forward
# FORWARD_COST_KEEP=<dir> keeps the two profiles there (callgrind_annotate reads them).
if [ -n "${FORWARD_COST_KEEP:-}" ]; then
  out=$FORWARD_COST_KEEP
  mkdir -p "$out"
else
  out=$(mktemp -d)
  trap 'rm -rf "$out"' EXIT
fi

collect=(
  "--toggle-collect=media_node::sfu::drive::<impl media_node::sfu::core::Sfu>::handle_datagram"
  "--toggle-collect=media_node::sfu::drive::<impl media_node::sfu::core::Sfu>::handle_timeout"
  "--toggle-collect=media_node::sfu::drive::<impl media_node::sfu::core::Sfu>::poll_output"
  "--toggle-collect=media_node::sfu::core::Sfu::handle_command"
)

# Runs for $1 virtual seconds: prints "<instructions> <datagrams out> <frames received>".
run() {
  valgrind --tool=callgrind --collect-atstart=no "${collect[@]}" \
    --callgrind-out-file="$out/cg.$1" "$bin" --seconds "$1" "${@:2}" >"$out/run.$1" 2>"$out/vg.$1" || {
    cat "$out/vg.$1" >&2
    exit 1
  }
  local ir fn
  ir=$(sed -n 's/^summary: //p; s/^totals: //p' "$out/cg.$1" | head -1)
  if [ -z "$ir" ]; then
    echo "forward-cost: no instruction total in $out/cg.$1" >&2
    exit 1
  fi
  # Each entry point must have been collected: one the compiler inlined would be left
  # out of the count without a word.
  for fn in handle_datagram handle_timeout poll_output handle_command; do
    grep -q "Sfu.*::$fn\b" "$out/cg.$1" || {
      echo "forward-cost: $fn is not in the profile (inlined?); the count would leave it out" >&2
      exit 1
    }
  done
  echo "$ir $(awk '/^datagrams_out/ {print $2}' "$out/run.$1") $(awk '/^frames_received/ {print $2}' "$out/run.$1")"
}

echo ">> fjord-bench-forward under callgrind, 2 s and 6 s of media (a few minutes)"
read -r ir1 out1 got1 < <(run 2 "$@")
echo "   2 s: $ir1 instructions in the core, $out1 datagrams out, $got1 frames received"
read -r ir2 out2 got2 < <(run 6 "$@")
echo "   6 s: $ir2 instructions in the core, $out2 datagrams out, $got2 frames received"
awk -v i1="$ir1" -v i2="$ir2" -v o1="$out1" -v o2="$out2" 'BEGIN {
  printf "core instructions per datagram out: %.0f\n", (i2 - i1) / (o2 - o1)
}'
