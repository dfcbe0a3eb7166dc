# Release binaries of the engine and the load generator in a slim runtime image.
#   docker build -t tickcore .            (or: docker compose build)
# Run it with docker-compose.yml: host network, the io_uring seccomp profile, memlock ulimits, a data volume.

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p tickcore -p loadgen --bin tickcore --bin loadgen \
 && install -m 0755 target/release/tickcore target/release/loadgen /usr/local/bin/

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --home-dir /var/lib/tickcore --create-home tickcore \
 && mkdir -p /var/lib/tickcore/data \
 && chown -R tickcore:tickcore /var/lib/tickcore
COPY --from=build /usr/local/bin/tickcore /usr/local/bin/loadgen /usr/local/bin/
USER 10001:10001
WORKDIR /var/lib/tickcore
ENV TICKCORE_LISTEN=0.0.0.0:8080 \
    TICKCORE_DATA_DIR=/var/lib/tickcore/data
EXPOSE 8080
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=5s --timeout=2s --start-period=30s --retries=3 \
  CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${TICKCORE_LISTEN##*:} && printf 'GET /health HTTP/1.0\\r\\n\\r\\n' >&3 && head -n 1 <&3 | grep -q ' 200 '"]
ENTRYPOINT ["tickcore"]
