#!/usr/bin/env bash
# Like ../shared/bench/parapet-subject.sh (pass-through, no cache), with every
# request filter, the size limits, a global rate limit and concurrency limits
# configured, to measure what the protection layer costs per request:
#   SUBJECT_NAME=plain SUBJECT_CACHE=0 SUBJECT_CMD='exec ../shared/bench/parapet-subject.sh' \
#   SUBJECT2_NAME=filters SUBJECT2_CACHE=0 SUBJECT2_CMD='exec bench/parapet-filters-subject.sh' \
#   PEERS="direct" SCENARIOS="pass_1k" ../shared/bench/peers.sh main
set -eu
: "${SUBJECT_PORT:?} ${ORIGIN_ADDR:?} ${SUBJECT_WORKDIR:?}"
bin=${PARAPET_BIN:-./target/release/parapet}
conf=$SUBJECT_WORKDIR/parapet-filters.yaml
cat > "$conf" <<YAML
server:
  threads: ${BENCH_THREADS:-1}
  pid_file: $SUBJECT_WORKDIR/parapet-filters.pid
  upgrade_sock: $SUBJECT_WORKDIR/upgrade-filters.sock
  grace_period_seconds: 1
  graceful_shutdown_timeout_seconds: 1
listeners:
  - address: 127.0.0.1:$SUBJECT_PORT
security:
  allow: [127.0.0.0/8, "::1"]
  deny: [10.0.0.0/8, 192.168.0.0/16, "2001:db8::/32"]
  methods: [GET, HEAD, POST]
  deny_paths: [/admin, /.git, /.env, /wp-admin]
  deny_path_patterns: ['(?i)\.(php|asp|cgi)$', '\.\./']
  deny_headers:
    - {name: User-Agent, pattern: '(?i)(sqlmap|nikto|masscan)'}
limits:
  max_uri_length: 8KiB
  max_header_count: 100
  max_header_bytes: 32KiB
  max_body_size: 10MiB
  max_in_flight_per_client: 10000
rate_limit: {rate: 10000000, burst: 10000000}
upstreams:
  origin:
    max_in_flight: 100000
    backends:
      - address: $ORIGIN_ADDR
routes:
  - match: {path_prefix: /}
    upstream: origin
    security: {methods: [GET, HEAD]}
YAML
exec "$bin" -c "$conf"
