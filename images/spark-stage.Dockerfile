# syntax=docker/dockerfile:1
# spark-stage: the staging client; in Kubernetes it is the init container that fetches a bundle
# into the driver and executor pods (`spark-stage fetch ...`). It runs as uid 185, Spark's own, so
# the files it writes belong to the Spark user.
#
# Build from the repository root (the build context is the whole workspace):
#   docker build -f images/spark-stage.Dockerfile -t spark-sidecars/spark-stage:0.1.0 .
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
    cargo build --release --locked -p staging-server --bin spark-stage \
 && install -D -m 0755 target/release/spark-stage /out/spark-stage

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/spark-stage /usr/local/bin/spark-stage
USER 185:185
ENTRYPOINT ["/usr/local/bin/spark-stage"]
