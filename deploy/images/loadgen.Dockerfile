# Python 3 (Debian's, standard library only) for the load generators of the
# deploy tests, run on the stacks' private networks (deploy/fleet/fleetload.py).
#   docker build -f deploy/images/loadgen.Dockerfile -t parapet/loadgen deploy/images
# (deploy/images.sh passes BASE_IMAGE=parapet/debian:bookworm.)
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 \
 && rm -rf /var/lib/apt/lists/*
USER 65534:65534
ENTRYPOINT ["python3"]
