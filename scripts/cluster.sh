#!/usr/bin/env bash
# Installs what a local cluster needs, builds Fjord and runs, on 127.0.0.1: etcd, two
# controllers, two media nodes in `oslo`, one in `stockholm` and a recording node.
# Prints the URLs; Ctrl-C stops everything. Extra arguments go to fjord-local-cluster.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh

# BOT_PACKAGES too: docs/development.md (Bots) points fjord-bot at this cluster.
ensure_packages "${BUILD_PACKAGES[@]}" "${RUN_PACKAGES[@]}" "${BOT_PACKAGES[@]}"
echo ">> building"
cargo build --locked --workspace --bins --quiet
exec ./target/debug/fjord-local-cluster "$@"
