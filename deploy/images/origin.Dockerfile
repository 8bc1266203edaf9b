# Example origin for the compose stacks, deploy/test-image.sh and the fleet
# test: busybox httpd (Debian's busybox, ~0.8 MB) under tini (Debian's tini).
#
#   GET /                  "hello from $ORIGIN_NAME" (static file)
#   GET /healthz           "ok" (the edges' health checks)
#   GET /cgi-bin/obj/NAME[?delay=S]  a cacheable object (Cache-Control: public,
#                          max-age=$ORIGIN_MAX_AGE, 600 s by default); each
#                          fetch is counted per NAME
#   GET /cgi-bin/fetches   "COUNT NAME" per object fetched so far (not counted)
#
# Stopping: PID 1 is tini, which forwards SIGTERM/SIGINT to origin.sh and
# reaps orphans. origin.sh stops httpd from accepting (SIGTERM to it), lets the
# requests in flight finish (at most $ORIGIN_DRAIN_SECONDS, 5 s by default)
# and exits 0: `docker stop` returns in well under a second on an idle origin.
# (busybox httpd as PID 1 ignored SIGTERM: the kernel drops signals PID 1 has
# no handler for, so `docker stop` waited 10 s and killed it mid-request.)
#
#   docker build -f deploy/images/origin.Dockerfile -t parapet/origin deploy/images
# (deploy/images.sh passes BASE_IMAGE=parapet/debian:bookworm.)
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends busybox tini \
 && rm -rf /var/lib/apt/lists/* \
 && ln -s /bin/busybox /usr/local/bin/httpd
COPY origin/origin.sh /usr/local/bin/origin.sh
COPY origin/cgi-bin/ /usr/local/share/origin/cgi-bin/
RUN chmod 0755 /usr/local/bin/origin.sh /usr/local/share/origin/cgi-bin/*
ENV ORIGIN_NAME=origin ORIGIN_PORT=8000 ORIGIN_MAX_AGE=600 ORIGIN_DRAIN_SECONDS=5
USER 65534:65534
EXPOSE 8000
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["/usr/local/bin/origin.sh"]
