# The student-worker container for ECS Fargate.
#
# Build stage: compiles the release binary with the locked dependency set;
# the dependencies are built first, from the manifests alone (stub sources),
# so that layer is reused until Cargo.toml or Cargo.lock change.
# Runtime stage: distroless "cc" (glibc, libgcc, CA certificates, no shell, no
# package manager), running as the image's unprivileged `nonroot` user
# (uid 65532), holding only the binary. It starts `student-worker run`; ECS
# checks it with `student-worker healthcheck` (exec form: there is no shell).
# The same image serves a Lambda container-image function: the function's
# ImageConfig.Command ["lambda"] replaces `run` (docs/lambda.md). Build it
# for Lambda with `--platform linux/amd64 --provenance=false` (Lambda takes a
# single-platform image manifest).
#
#   docker build -t student-worker:0.1.0 .
#   (see docs/deploy.md for pushing it to ECR)

FROM rust:1.95-bookworm AS build
WORKDIR /src

# 1. Dependencies only: every workspace member's manifest (cargo loads them
# all, even for `-p student-worker`) with stub sources. The stubs of tests/ and
# bench/endpoint/ stay: they are never built, but cargo refuses a member with
# no target.
COPY Cargo.toml Cargo.lock rustfmt.toml ./
COPY shared/Cargo.toml shared/Cargo.toml
COPY worker/Cargo.toml worker/Cargo.toml
COPY tests/Cargo.toml tests/Cargo.toml
COPY bench/endpoint/Cargo.toml bench/endpoint/Cargo.toml
RUN mkdir -p shared/src worker/src tests/src bench/endpoint/src \
    && touch shared/src/lib.rs worker/src/lib.rs tests/src/lib.rs bench/endpoint/src/lib.rs \
    && echo 'fn main() {}' > worker/src/main.rs \
    && echo 'fn main() {}' > bench/endpoint/src/main.rs \
    && cargo build --release --locked -p student-worker \
    && rm -rf shared/src worker/src

# 2. The worker itself. `touch` makes cargo rebuild the two crates whose
# stub outputs are newer than the copied sources.
COPY shared shared
COPY worker worker
RUN touch shared/src/lib.rs worker/src/lib.rs worker/src/main.rs \
    && cargo build --release --locked -p student-worker \
    && cp target/release/student-worker /student-worker

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /student-worker /usr/local/bin/student-worker
# The image's `nonroot` user, by number so ECS and Kubernetes can check it is not root.
USER 65532:65532
# The health file lives on /tmp: with readonlyRootFilesystem the task
# definition mounts a writable volume there.
ENV WORKER_HEALTH_FILE=/tmp/student-worker-health.json
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["/usr/local/bin/student-worker", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/student-worker"]
CMD ["run"]
