# Parapet container image: build with the Rust toolchain, run on slim Debian.
#
#   docker build -t parapet .                       # anywhere official images can be pulled
#   deploy/images.sh                                # here: local base images, offline build
#
# PID 1 is the supervisor (`parapet run`): `docker kill -s HUP` validates the
# config and hands the sockets to a new generation with zero downtime; `docker
# stop` (SIGTERM) drains and stops. Give `docker stop` / `docker run
# --stop-timeout` / compose `stop_grace_period` at least 30 s: the drain takes
# grace_period_seconds (10) + graceful_shutdown_timeout_seconds (5).
#
# Only builder-agnostic instructions (no RUN --mount): this builds with the
# legacy builder and with BuildKit alike. Dependencies are cached in their own
# layer instead, rebuilt only when Cargo.toml or Cargo.lock change.
ARG BUILDER_IMAGE=rust:1-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

FROM ${BUILDER_IMAGE} AS build
# zlib-ng needs cmake (rust:1-bookworm lacks it); the vendored OpenSSL needs
# perl + make, which it has. A builder that already has cmake (deploy/images.sh
# makes one) skips apt, so an offline build needs no network here.
RUN if ! command -v cmake >/dev/null; then \
      apt-get update \
      && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends cmake \
      && rm -rf /var/lib/apt/lists/*; \
    fi
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
# Every dependency (OpenSSL from source included), against stub sources.
RUN mkdir src && : > src/lib.rs && echo 'fn main() {}' > src/main.rs \
 && cargo build --release --locked \
 && rm -rf src target/release/parapet target/release/parapet.d \
           target/release/.fingerprint/parapet-* target/release/deps/parapet-* \
           target/release/deps/libparapet-*
COPY src ./src
RUN cargo build --release --locked \
 && strip target/release/parapet \
 && echo "parapet links:" && ldd target/release/parapet

FROM ${RUNTIME_IMAGE}
# Fixed numeric IDs, so that Kubernetes' runAsNonRoot can check them.
RUN groupadd --system --gid 10001 parapet \
 && useradd --system --uid 10001 --gid parapet --home-dir /nonexistent --no-create-home \
      --shell /usr/sbin/nologin parapet \
 && install -d -m 0755 /etc/parapet \
 && install -d -o parapet -g parapet -m 0750 /run/parapet /var/cache/parapet
# The binary links only glibc (OpenSSL is vendored, statically linked). The CA
# bundle is data, not a library: upstream TLS verifies against the system
# roots (OpenSSL finds /etc/ssl/certs/ca-certificates.crt), so it is copied
# from the builder rather than installing ca-certificates with apt.
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /src/target/release/parapet /usr/local/bin/parapet
COPY deploy/parapet.yaml /etc/parapet/parapet.yaml
USER 10001:10001
# deploy/parapet.yaml: public listener 8080, admin listener 9901.
EXPOSE 8080 9901
# Admin port for the health check; set it if your config moves the admin
# listener. The check is bash's /dev/tcp (bash is in every Debian image), so
# the image needs no curl: one GET /healthz, healthy on "HTTP/1.x 200".
ENV PARAPET_ADMIN_PORT=9901
HEALTHCHECK --interval=5s --timeout=3s --start-period=10s --retries=3 \
  CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${PARAPET_ADMIN_PORT} && printf 'GET /healthz HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n' >&3 && read -r -t 2 status <&3 && [[ $status == HTTP/1.?' 200'* ]]"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/parapet"]
# `docker run IMAGE -t -c /etc/parapet/parapet.yaml` checks a config instead.
CMD ["run", "-c", "/etc/parapet/parapet.yaml"]
