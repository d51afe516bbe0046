# syntax=docker/dockerfile:1
# staging-server: the Resource Staging Server (HTTP API, metrics, health and gRPC health on
# 10000).
#
# Build from the repository root (the build context is the whole workspace):
#   docker build -f images/staging-server.Dockerfile -t spark-sidecars/staging-server:0.1.0 .
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
    cargo build --release --locked -p staging-server --bin staging-server \
 && install -D -m 0755 target/release/staging-server /out/staging-server

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/staging-server /usr/local/bin/staging-server
USER 65532:65532
EXPOSE 10000
ENTRYPOINT ["/usr/local/bin/staging-server"]
