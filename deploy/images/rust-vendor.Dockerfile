# The builder image `parapet/rust:bookworm` (built by deploy/images.sh): the
# toolchain image + every crate of Cargo.lock, vendored on the host, with
# cargo told to use them and never the network. This is what lets the
# unchanged top-level Dockerfile run `cargo build --locked` offline; on a
# machine with `rust:1-bookworm`, cargo fetches from crates.io as usual.
ARG TOOLCHAIN_IMAGE=parapet/rust:bookworm-toolchain
FROM ${TOOLCHAIN_IMAGE}
COPY vendor/ /usr/local/cargo/vendor/
COPY config.toml /usr/local/cargo/config.toml
ARG CARGO_LOCK_SHA256=unknown
LABEL org.parapet.cargo-lock-sha256=${CARGO_LOCK_SHA256}
