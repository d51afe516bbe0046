# syntax=docker/dockerfile:1
# shuffle-service: Spark's external shuffle service, run as a DaemonSet (Spark protocol on 7337,
# admin HTTP on 7338). It runs as uid/gid 185, the user of Apache Spark's images, so it can read
# the shuffle files executors write and delete them when the application ends.
#
# Build from the repository root (the build context is the whole workspace):
#   docker build -f images/shuffle-service.Dockerfile -t spark-sidecars/shuffle-service:0.1.0 .
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
    cargo build --release --locked -p shuffle-service --bin shuffle-service \
 && install -D -m 0755 target/release/shuffle-service /out/shuffle-service

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/shuffle-service /usr/local/bin/shuffle-service
USER 185:185
EXPOSE 7337 7338
ENTRYPOINT ["/usr/local/bin/shuffle-service"]
