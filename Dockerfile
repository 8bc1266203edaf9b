# Parapet container image: build with the Rust toolchain, run on slim Debian.
# PID 1 is the supervisor (`parapet run`): `docker kill -s HUP` reloads with
# zero downtime, `docker stop` (SIGTERM) drains and stops.
FROM rust:1-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends cmake && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked && strip target/release/parapet

FROM debian:bookworm-slim
RUN useradd --system --no-create-home --shell /usr/sbin/nologin parapet \
 && mkdir -p /etc/parapet /run/parapet && chown parapet /run/parapet
COPY --from=build /src/target/release/parapet /usr/local/bin/parapet
COPY deploy/parapet.yaml /etc/parapet/parapet.yaml
USER parapet
EXPOSE 8080 9901
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/parapet", "run", "-c", "/etc/parapet/parapet.yaml"]
