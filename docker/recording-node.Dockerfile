# fjord-recording-node: GStreamer pipelines, with the plugins they use (the same list
# as RECORDING_PACKAGES in scripts/deps.sh): depayloaders, Ogg and MP4 muxers,
# compositor and audiomixer (base, good), opusparse and h264parse (bad), x264enc (ugly),
# the H.264 decoder (libav) and clockoverlay (x).
ARG BUILDER=fjord-build:latest
FROM ${BUILDER} AS build

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
      gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad \
      gstreamer1.0-plugins-ugly gstreamer1.0-libav gstreamer1.0-x \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --no-create-home fjord \
 && mkdir -p /recordings && chown 10001:10001 /recordings
COPY --from=build /out/fjord-recording-node /usr/local/bin/fjord-recording-node
# GStreamer's registry cache goes to the writable /tmp (the root filesystem is read-only).
ENV GST_REGISTRY=/tmp/gstreamer-registry.bin XDG_CACHE_HOME=/tmp
USER 10001:10001
EXPOSE 7890 7891
ENTRYPOINT ["/usr/local/bin/fjord-recording-node"]
