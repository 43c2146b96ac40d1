# The build stage every Fjord image starts from: the three release binaries, built once
# on Debian bookworm (the runtime images are bookworm-slim, so the libraries match).
# scripts/images.sh builds this first, as fjord-build:<tag>.
FROM rust:1-slim-bookworm
ENV DEBIAN_FRONTEND=noninteractive
# protoc for the gRPC contracts; GStreamer headers for the recording node.
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev protobuf-compiler \
      libprotobuf-dev pkg-config libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked \
      --bin fjord-controller --bin fjord-media-node --bin fjord-recording-node \
 && mkdir -p /out \
 && cp target/release/fjord-controller target/release/fjord-media-node \
       target/release/fjord-recording-node /out/ \
 && rm -rf target
