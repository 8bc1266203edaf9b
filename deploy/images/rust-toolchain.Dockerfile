# Local stand-in for `rust:1-bookworm`, for machines that cannot pull images
# (built by deploy/images.sh): the local Debian base + the C build
# dependencies + the host's Rust toolchain, copied in as `rust/` (bin/cargo,
# bin/rustc, bin/rustdoc, lib/). Same CARGO_HOME and PATH as the official
# image.
ARG BASE_IMAGE=parapet/debian:bookworm
FROM ${BASE_IMAGE}
# cmake: zlib-ng; perl + make: the vendored OpenSSL; gcc/g++: every -sys crate
# (mimalloc, zstd, ...); ca-certificates: copied into the runtime image.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      ca-certificates cmake g++ gcc libc6-dev make perl pkg-config \
 && rm -rf /var/lib/apt/lists/*
ENV CARGO_HOME=/usr/local/cargo \
    PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
COPY rust/ /usr/local/rust/
RUN mkdir -p "$CARGO_HOME/bin" \
 && ln -s /usr/local/rust/bin/cargo /usr/local/rust/bin/rustc /usr/local/rust/bin/rustdoc "$CARGO_HOME/bin/" \
 && cargo --version && rustc --version
