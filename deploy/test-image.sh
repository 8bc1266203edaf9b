#!/usr/bin/env bash
# End-to-end test of the container image (not part of `cargo test`: it needs
# Docker). Builds the images (deploy/images.sh, idempotent; SKIP_IMAGES=1 to
# use parapet:latest as it is), then on a private Docker network:
#
#   * a broken / missing config: the container exits 1 with every error in its log
#   * origin container + parapet container: a request goes through, /healthz,
#     /readyz, /metrics answer, the Docker HEALTHCHECK turns healthy
#   * `docker kill -s HUP` with a broken config: refused, still serving
#   * `docker kill -s HUP` under load (tools/loadgen.py from the host to the
#     published 127.0.0.1 port): a new generation takes over, zero failed requests
#   * `docker stop`: drains and exits 0 within the stop timeout
#
# Prints PASS/FAIL lines and "N passed, M failed"; exits 1 on any failure.
# Environment: PARAPET_IMAGE (default parapet:latest), ORIGIN_IMAGE
# (parapet/origin:latest), SKIP_IMAGES=1, LOAD_WORKERS (4).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=/dev/null
source "$here/checks.sh"
image=${PARAPET_IMAGE:-parapet:latest}
origin_image=${ORIGIN_IMAGE:-parapet/origin:latest}
stop_timeout=30 # > grace_period_seconds (10) + graceful_shutdown_timeout_seconds (5)
id=parapet-it-$$
net=$id-net
origin=$id-origin
edge=$id-edge
tmp=$(mktemp -d /tmp/parapet-test-image.XXXXXX)
load_pid=

cleanup() {
  local rc=$?
  [ -z "$load_pid" ] || kill "$load_pid" 2>/dev/null || true
  if [ "$failed" -gt 0 ] && docker container inspect "$edge" >/dev/null 2>&1; then
    echo "--- last lines of the parapet container's log:"; docker logs --tail 40 "$edge" 2>&1 || true
  fi
  docker rm -f "$edge" "$origin" "$id-bad" >/dev/null 2>&1 || true
  docker network rm "$net" >/dev/null 2>&1 || true
  rm -rf "$tmp"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
set -E
trap 'fail "unexpected error at line $LINENO: $BASH_COMMAND"' ERR

if [ "${SKIP_IMAGES:-0}" != 1 ]; then
  "$here/images.sh"
fi

# --- a bad config makes the container exit with the errors ------------------
printf 'server:\n  threads: many\nlisteners: []\nupstreams: {}\nroutes: []\nnot_a_key: 1\n' >"$tmp/broken.yaml"
mkdir -p "$tmp/emptydir"
chmod -R a+rX "$tmp"
bad_run() { # mount-args... : runs the image, prints its exit code (or "running") then its log
  docker rm -f "$id-bad" >/dev/null 2>&1 || true
  docker run -d --name "$id-bad" "$@" "$image" >/dev/null 2>&1 || true
  # It must exit on its own; one still running after 30 s reports "running".
  if timeout 30 docker wait "$id-bad" >/dev/null 2>&1; then
    docker inspect -f '{{.State.ExitCode}}' "$id-bad"
  else
    echo running
  fi
  docker logs "$id-bad" 2>&1
  docker rm -f "$id-bad" >/dev/null 2>&1
}
out=$(bad_run -v "$tmp/broken.yaml:/etc/parapet/parapet.yaml:ro")
check "broken config: container exits 1 and logs each error with its YAML path" \
  grep -q 'server.threads' <<<"$out"
check "broken config: exit code 1 (got $(head -1 <<<"$out"))" test "$(head -1 <<<"$out")" = 1
out=$(bad_run -v "$tmp/emptydir:/etc/parapet:ro")
check "missing config: exit code 1 with 'cannot read config file' (got $(head -1 <<<"$out"))" \
  bash -c '[ "$(head -1 <<<"$1")" = 1 ] && grep -q "cannot read config file" <<<"$1"' _ "$out"

# --- origin + edge on a private network -------------------------------------
cat >"$tmp/parapet.yaml" <<'EOF'
server:
  pid_file: /run/parapet/parapet.pid
  upgrade_sock: /run/parapet/upgrade.sock
  grace_period_seconds: 10
  graceful_shutdown_timeout_seconds: 5
listeners:
  - address: "0.0.0.0:8080"
admin:
  address: "0.0.0.0:9901"
upstreams:
  origin:
    backends:
      - address: "origin:8000"
    health_check: {kind: http, path: /healthz, interval: 1s}
routes:
  - upstream: origin
EOF
cp "$tmp/parapet.yaml" "$tmp/good.yaml"
chmod a+r "$tmp"/*.yaml

docker network create "$net" >/dev/null
docker run -d --name "$origin" --network "$net" --network-alias origin \
  -e ORIGIN_NAME=origin-a "$origin_image" >/dev/null
# The origin's name must resolve when the edge loads its config.
wait_until 20 docker exec "$origin" busybox wget -q -O /dev/null http://127.0.0.1:8000/healthz \
  || fail "origin did not start"
docker run -d --name "$edge" --network "$net" --stop-timeout "$stop_timeout" \
  -e RUST_LOG=info,parapet::access=off \
  -v "$tmp/parapet.yaml:/etc/parapet/parapet.yaml:ro" \
  -p 127.0.0.1::8080 -p 127.0.0.1::9901 "$image" >/dev/null
port=$(docker port "$edge" 8080/tcp | head -1 | sed 's/.*://')
admin=$(docker port "$edge" 9901/tcp | head -1 | sed 's/.*://')
echo "edge: http://127.0.0.1:$port (admin :$admin)"

check "edge ready (/readyz 200) within 30 s" wait_until 30 curl -fsS "http://127.0.0.1:$admin/readyz"
body=$(curl -sS -D "$tmp/headers" "http://127.0.0.1:$port/" || true)
check "request goes through to the origin (body: ${body%%$'\n'*})" grep -q 'hello from origin-a' <<<"$body"
check "origin Server header hidden" bash -c '! grep -qi "^server:.*busybox" "$1"' _ "$tmp/headers"
check "/healthz answers 200" curl -fsS -o /dev/null "http://127.0.0.1:$admin/healthz"
check "/metrics lists parapet_requests_total" \
  bash -c 'curl -fsS "$1" | grep -q "^parapet_requests_total"' _ "http://127.0.0.1:$admin/metrics"
health() { [ "$(docker inspect -f '{{.State.Health.Status}}' "$edge")" = healthy ]; }
t0=$SECONDS
check "Docker HEALTHCHECK turns healthy" wait_until 60 health
echo "      (healthy after $((SECONDS - t0)) s)"

# The serving generation, from the supervisor's log ("started generation pid
# N", then "reload: generation pid M took over from pid N").
gen_pid() {
  docker logs "$edge" 2>&1 \
    | sed -n 's/.*started generation pid \([0-9]*\).*/\1/p; s/.*reload: generation pid \([0-9]*\) took over.*/\1/p' \
    | tail -1
}
alive() { docker exec "$edge" test -d "/proc/$1"; }
export -f alive; export edge
pid0=$(gen_pid || true)
pid1_cmd=$(docker exec "$edge" cat /proc/1/cmdline | tr '\0' ' ' || true)
check "PID 1 is the supervisor: $pid1_cmd" grep -q 'parapet run -c' <<<"$pid1_cmd"
check "serving generation: pid $pid0, alive" alive "${pid0:-none}"

# --- a reload with a broken config is refused --------------------------------
cat "$tmp/broken.yaml" >"$tmp/parapet.yaml" # same inode: the bind mount sees it
docker kill -s HUP "$edge" >/dev/null
check "HUP with a broken config: reload refused (logged)" \
  wait_until 15 bash -c 'docker logs "$1" 2>&1 | grep -q "reload refused"' _ "$edge"
check "still serving after the refused reload" \
  bash -c 'curl -fsS "$1" | grep -q "hello from origin-a"' _ "http://127.0.0.1:$port/"
check "same generation after the refused reload (pid $pid0)" test -n "$pid0" -a "$(gen_pid)" = "$pid0"
cat "$tmp/good.yaml" >"$tmp/parapet.yaml"

# --- zero-downtime reload under load ----------------------------------------
python3 "$here/tools/loadgen.py" "http://127.0.0.1:$port/" --workers "${LOAD_WORKERS:-4}" \
  --max-seconds 90 --max-requests 200000 --stop-file "$tmp/stop" --started-file "$tmp/started" \
  >"$tmp/load.json" &
load_pid=$!
wait_until 10 test -e "$tmp/started" || fail "load did not start"
t0=$SECONDS
docker kill -s HUP "$edge" >/dev/null
took_over() { docker logs "$edge" 2>&1 | grep -q "took over from pid"; }
drained() { docker logs "$edge" 2>&1 | grep -q "old generation pid .* finished draining"; }
check "HUP: a new generation took over" wait_until 30 took_over
check "HUP: the old generation finished draining" wait_until 60 drained
reload_s=$((SECONDS - t0))
touch "$tmp/stop"
wait "$load_pid" || true
load_pid=
pid1=$(gen_pid || true)
{ docker logs "$edge" 2>&1 | grep -E 'reload|took over|finished draining' | sed 's/^/      log: /'; } || true
echo "      load: $(cat "$tmp/load.json" 2>/dev/null)"
requests=0 failures=-1
read -r requests failures < <(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["requests"], d["failures"])' "$tmp/load.json" 2>/dev/null) || true
check "reload happened: generation pid $pid0 -> $pid1" \
  bash -c '[ -n "$2" ] && [ "$2" != "$1" ]' _ "$pid0" "$pid1"
check "old generation $pid0 gone, new generation $pid1 alive" bash -c '! alive "$1" && alive "$2"' _ "$pid0" "$pid1"
check "at least 300 requests spanned the reload ($requests in ${reload_s}s of handoff + drain)" test "$requests" -ge 300
check "zero failed requests during the reload ($failures of $requests)" test "$failures" -eq 0
check "serving after the reload" bash -c 'curl -fsS "$1" | grep -q "hello from origin-a"' _ "http://127.0.0.1:$port/"

# --- docker stop drains and exits 0 -------------------------------------------
t0=$(date +%s.%N)
docker stop -t "$stop_timeout" "$edge" >/dev/null
stop_s=$(python3 -c "import sys; print(round($(date +%s.%N) - $t0, 1))")
code=$(docker inspect -f '{{.State.ExitCode}}' "$edge")
check "docker stop: exit code 0 (got $code)" test "$code" = 0
check "docker stop: took ${stop_s}s, under the ${stop_timeout}s stop timeout" \
  python3 -c "import sys; sys.exit(0 if $stop_s < $stop_timeout else 1)"
check "docker stop: the supervisor forwarded SIGTERM" \
  bash -c 'docker logs "$1" 2>&1 | grep -q "stopping, forwarding signal 15"' _ "$edge"

echo "test-image: $passed passed, $failed failed"
if [ "$failed" -ne 0 ]; then exit 1; fi
