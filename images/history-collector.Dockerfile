# syntax=docker/dockerfile:1
# history-collector: event-log and pod-log collection, History-Server-compatible REST API and UI,
# and gRPC ingest for the `history-collector agent` sidecar, all on 18080. The same image runs the
# agent (`history-collector agent ...`).
#
# Build from the repository root (the build context is the whole workspace):
#   docker build -f images/history-collector.Dockerfile -t spark-sidecars/history-collector:0.1.0 .
# The builder compiles one package in release mode; the runtime image holds only that binary
# on distroless/cc (glibc, CA certificates, no shell), as a numeric non-root user.

ARG RUST_VERSION=1
FROM docker.io/library/rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
COPY . .
# The cache mounts keep the crate registry and target dir between builds; the binary is copied
# out of the cached target dir because cache mounts are not part of the image layer.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p history-collector --bin history-collector \
 && install -D -m 0755 target/release/history-collector /out/history-collector

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/history-collector /usr/local/bin/history-collector
USER 65532:65532
EXPOSE 18080 18081
ENTRYPOINT ["/usr/local/bin/history-collector"]
