# A throwaway Debian with systemd as PID 1, to test parapet.service for real
# (deploy/systemd/test-systemd.sh). busybox: wget for requests, httpd as the
# origin at 127.0.0.1:9001 that deploy/parapet.yaml points at.
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends systemd systemd-sysv busybox \
 && rm -rf /var/lib/apt/lists/*
ENV container=docker
STOPSIGNAL SIGRTMIN+3
CMD ["/lib/systemd/systemd"]
