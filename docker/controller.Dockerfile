# fjord-controller: the meetings API, the web client, placement. Non-root, read-only.
ARG BUILDER=fjord-build:latest
FROM ${BUILDER} AS build

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --no-create-home fjord
COPY --from=build /out/fjord-controller /usr/local/bin/fjord-controller
USER 10001:10001
EXPOSE 7900
ENTRYPOINT ["/usr/local/bin/fjord-controller"]
