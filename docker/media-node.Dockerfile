# fjord-media-node: the SFU (one UDP port for all peers) and the QUIC relay.
ARG BUILDER=fjord-build:latest
FROM ${BUILDER} AS build

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --no-create-home fjord
COPY --from=build /out/fjord-media-node /usr/local/bin/fjord-media-node
USER 10001:10001
EXPOSE 7880 7881 7882/udp 7883/udp
ENTRYPOINT ["/usr/local/bin/fjord-media-node"]
