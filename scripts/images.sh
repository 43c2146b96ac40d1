#!/usr/bin/env bash
# Builds Fjord's container images with Docker: the shared build stage, then one image
# per binary (docker/*.Dockerfile). Usage: scripts/images.sh [registry] [tag]
# e.g. scripts/images.sh ghcr.io/fjord 0.1.0 — the names the chart's values expect.
set -euo pipefail
cd "$(dirname "$0")/.."
registry="${1:-ghcr.io/fjord}"
tag="${2:-$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)}"
command -v docker >/dev/null || { echo "images.sh needs docker (with a running engine)" >&2; exit 1; }
echo ">> build stage fjord-build:$tag"
docker build -f docker/build.Dockerfile -t "fjord-build:$tag" .
for bin in controller media-node recording-node; do
  echo ">> $registry/fjord-$bin:$tag"
  docker build -f "docker/$bin.Dockerfile" --build-arg "BUILDER=fjord-build:$tag" \
    -t "$registry/fjord-$bin:$tag" docker
done
echo ">> $registry/fjord-coturn:$tag"
docker build -f docker/coturn.Dockerfile -t "$registry/fjord-coturn:$tag" docker
echo "built: $registry/fjord-{controller,media-node,recording-node,coturn}:$tag"
