# Prometheus (and promtool) from Debian's `prometheus` package, for the
# compose stack and for checking deploy/prometheus/*.yml.
#   docker build -f deploy/images/prometheus.Dockerfile -t parapet/prometheus deploy/images
# (deploy/images.sh passes BASE_IMAGE=parapet/debian:bookworm.)
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus \
 && rm -rf /var/lib/apt/lists/* \
 && install -d -o prometheus -g prometheus /prometheus
USER prometheus
WORKDIR /prometheus
EXPOSE 9090
ENTRYPOINT ["/usr/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus", "--web.listen-address=:9090"]
