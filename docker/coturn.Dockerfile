# fjord-coturn: Debian's coturn, the TURN server of a region (the chart's turn.enabled).
# The chart passes every option on the command line; nothing is configured here.
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends coturn \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --no-create-home fjord
USER 10001:10001
EXPOSE 3478 3478/udp
ENTRYPOINT ["/usr/bin/turnserver"]
