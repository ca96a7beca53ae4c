# syntax=docker/dockerfile:1
#
# The wxauth image: a release build on the official Rust image, copied into
# a distroless runtime that runs as a non-root user.
#
# NOT BUILT HERE: the machine this was written on runs no Docker engine, so
# this file has been reviewed, not built. Please build it once before
# relying on it:
#
#   docker build -t wxauth .
#   docker run --rm -e WXAUTH_SIMULATOR=true -p 50051:50051 -p 9464:9464 wxauth
#
# The demo above runs the built-in WeChat simulator (fake logins) on a
# SQLite file in /data (mount a volume there to keep it). The image listens
# on 0.0.0.0, so without WXAUTH_APP_SECRET wxauth refuses to start unless
# WXAUTH_SIMULATOR=true says the simulator is wanted: a production container
# that lost its secret fails instead of serving fake logins. To drive the
# simulator's /sim/ API from the host, add
# `-e WXAUTH_SIM_LISTEN=0.0.0.0:8081 -p 8081:8081`. In production, set
# WXAUTH_DATABASE_URL (PostgreSQL), WXAUTH_SERVER_KEY and the app secrets,
# from the environment or `*_FILE` files (never flags), and not
# WXAUTH_SIMULATOR: see deploy/kubernetes/.

# Cargo.toml's rust-version is 1.85, but the locked dependencies need 1.89
# (tonic 1.88, uuid 1.89); the test suite runs on 1.95. Bookworm, so the
# binary links against the same glibc as the distroless runtime below.
ARG RUST_IMAGE=rust:1.95-slim-bookworm

# cargo-chef builds the dependencies from a recipe of the manifests only, so
# a source change rebuilds wxauth and not its ~370 dependencies.
FROM ${RUST_IMAGE} AS chef
RUN cargo install cargo-chef --locked --version 0.1.78
WORKDIR /src

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
COPY --from=planner /src/recipe.json recipe.json
RUN cargo chef cook --release --locked --recipe-path recipe.json
# build.rs compiles the protos with the protoc of the protoc-bin-vendored
# crate: no protoc to install.
COPY . .
RUN cargo build --release --locked --bin wxauth \
 && mkdir /data

# cc: glibc and libgcc, which the Rust binary needs, and nothing else (no
# shell). :nonroot runs as uid 65532. TLS to WeChat uses rustls with
# built-in roots, so the image's CA bundle is not even needed.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=builder /src/target/release/wxauth /usr/local/bin/wxauth
# SQLite's default file and its server key file land in the working
# directory; distroless has no shell to create it, so it is copied.
COPY --from=builder --chown=65532:65532 /data /data
WORKDIR /data
# Both default to 127.0.0.1, which is unreachable from outside a container.
ENV WXAUTH_LISTEN=0.0.0.0:50051 \
    WXAUTH_METRICS_LISTEN=0.0.0.0:9464
# Numeric, so that Kubernetes' runAsNonRoot can verify it.
USER 65532:65532
# gRPC (with health and reflection), then Prometheus /metrics.
EXPOSE 50051 9464
# Asks grpc.health.v1 for wxauth.v1.AuthService on 127.0.0.1:50051: healthy
# while the database answers. Kubernetes ignores this and uses its own
# gRPC probes (deploy/kubernetes/deployment.yaml).
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
  CMD ["/usr/local/bin/wxauth", "check"]
# wxauth drains in-flight calls on SIGTERM (WXAUTH_SHUTDOWN_GRACE, 10s):
# give `docker stop` a longer timeout than that, e.g. `--time 15`.
ENTRYPOINT ["/usr/local/bin/wxauth"]
