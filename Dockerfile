# Builds the redlimit module and runs it in the official Redis image.
# Not built in CI (no Docker engine there): see README.md.

FROM rust:1.95-bookworm AS builder
RUN apt-get update \
 && apt-get install -y --no-install-recommends libclang-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p redlimit-module

FROM redis:8.2-bookworm
COPY --from=builder /src/target/release/libredlimit.so /usr/local/lib/redis/modules/libredlimit.so
EXPOSE 6379
USER redis
CMD ["redis-server", "--loadmodule", "/usr/local/lib/redis/modules/libredlimit.so"]
