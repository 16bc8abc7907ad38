# Builds the redlimit module and runs it in the official Redis image.
# Not built in CI (no Docker engine there); tests/docker.rs checks its invariants and
# scripts/test.sh lints it with hadolint when installed. See README.md.
#
#   docker build -t redlimit .
#   docker run --rm -p 6379:6379 redlimit
#   redis-cli MODULE LIST   # redlimit, once (next to the image's own modules)

FROM rust:1.95-bookworm AS builder
# bindgen (through redis-module) needs libclang. The version follows the Debian release
# of the Rust image, so it is not pinned.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends libclang-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src

# 1. Dependencies only, cached until a manifest or the lock file changes: every
#    workspace member's manifest (cargo reads them all, even for -p redlimit-module),
#    with empty sources where cargo expects targets.
COPY Cargo.toml Cargo.lock ./
COPY core/Cargo.toml core/
COPY module/Cargo.toml module/
COPY client/Cargo.toml client/
COPY test-support/Cargo.toml test-support/
RUN for member in . core module client test-support; do \
      mkdir -p "$member/src" && touch "$member/src/lib.rs"; \
    done \
 && mkdir -p benches/server \
 && for bench in benches/core.rs benches/server/main.rs benches/client.rs benches/http.rs benches/http_instructions.rs; do touch "$bench"; done \
 && cargo build --release --locked -p redlimit-module

# 2. The module's own sources: a change here rebuilds only core and module. COPY keeps
#    the files' times, which can be older than the placeholders built in step 1, so the
#    crate roots are touched to make cargo rebuild them.
COPY core/ core/
COPY module/ module/
RUN touch core/src/lib.rs module/src/lib.rs \
 && cargo build --release --locked -p redlimit-module

FROM redis:8.2-bookworm
# The official Redis 8 entrypoint (docker-entrypoint.sh) appends `--loadmodule <file>`
# for every executable *.so in /usr/local/lib/redis/modules/ when it starts
# redis-server. A module there AND a --loadmodule of our own would load twice, and the
# server refuses to start. So the module lives outside that directory and is loaded
# explicitly, exactly once; that also works when the entrypoint is replaced, with a
# config file, and on images that do not scan the directory.
COPY --from=builder /src/target/release/libredlimit.so /opt/redlimit/libredlimit.so
EXPOSE 6379
# The image's `redis` user (uid and gid 999 in the official images), numeric so that
# the host can resolve it.
USER 999:999
CMD ["redis-server", "--loadmodule", "/opt/redlimit/libredlimit.so"]
