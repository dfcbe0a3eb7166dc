# Release binaries of the engine and the load generator in a slim Debian bookworm runtime image.
#   docker build -t tickcore .            (or: docker compose build)   builds from source in a rust: stage
#   docker/build.sh                        where no image can be pulled: a debootstrap base image and the
#                                          binaries built on the host (the `prebuilt` target below)
# Both share the `runtime` stage. Run the image with docker-compose.yml: host network, the io_uring seccomp
# profile, memlock ulimits, a data volume. The stages are in this order so that the legacy builder, which
# builds every stage up to --target, never needs the rust: image for `--target prebuilt`.

# The runtime base: debian:bookworm-slim, or the image docker/build.sh makes with debootstrap.
ARG BASE=debian:bookworm-slim

FROM ${BASE} AS runtime
RUN useradd --system --uid 10001 --home-dir /var/lib/tickcore --create-home tickcore \
 && mkdir -p /var/lib/tickcore/data \
 && chown -R tickcore:tickcore /var/lib/tickcore
USER 10001:10001
WORKDIR /var/lib/tickcore
ENV TICKCORE_LISTEN=0.0.0.0:8080 \
    TICKCORE_DATA_DIR=/var/lib/tickcore/data
EXPOSE 8080
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=5s --timeout=2s --start-period=30s --retries=3 \
  CMD ["bash", "-c", "h=$(printf %s \"${TICKCORE_LISTEN%:*}\" | tr -d '[]') && exec 3<>\"/dev/tcp/$h/${TICKCORE_LISTEN##*:}\" && printf 'GET /health HTTP/1.0\\r\\n\\r\\n' >&3 && head -n 1 <&3 | grep -q ' 200 '"]
ENTRYPOINT ["tickcore"]

# Binaries built on the host (docker/build.sh): the build context is a folder holding just these files
# (nats-server for docker-compose.yml's cluster profile).
FROM runtime AS prebuilt
COPY tickcore loadgen nats-server /usr/local/bin/

# Built from source, for users who can pull rust: (the default target: the last stage).
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p tickcore -p loadgen --bin tickcore --bin loadgen \
 && install -m 0755 target/release/tickcore target/release/loadgen /usr/local/bin/

FROM runtime AS image
COPY --from=build /usr/local/bin/tickcore /usr/local/bin/loadgen /usr/local/bin/
