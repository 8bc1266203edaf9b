# Example origin for the compose stack and deploy/test-image.sh: busybox httpd
# (Debian's busybox, ~0.8 MB) serving a page that names the origin, and
# /healthz for the edges' health checks.
#   docker build -f deploy/images/origin.Dockerfile -t parapet/origin deploy/images
# (deploy/images.sh passes BASE_IMAGE=parapet/debian:bookworm.)
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends busybox \
 && rm -rf /var/lib/apt/lists/*
ENV ORIGIN_NAME=origin ORIGIN_PORT=8000
USER 65534:65534
EXPOSE 8000
STOPSIGNAL SIGTERM
CMD ["sh", "-c", "mkdir -p /tmp/www && echo \"hello from $ORIGIN_NAME\" > /tmp/www/index.html && echo ok > /tmp/www/healthz && exec busybox httpd -f -p \"$ORIGIN_PORT\" -h /tmp/www"]
