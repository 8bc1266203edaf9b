#!/usr/bin/env bash
# End-to-end test of deploy/docker-compose.yml (needs Docker + Compose):
#
#   * promtool: `check config` (with the rules) and `test rules` (alerts_test.yml)
#   * the stack comes up; each edge serves through to BOTH origins, caches /cached/
#   * Prometheus (HTTP API) sees both edges up and has parapet_requests_total for both
#   * `kill -s HUP edge1`: a new generation takes over, edge1 keeps serving
#   * teardown (also on failure or Ctrl-C)
#
# Polls with deadlines, no fixed sleeps. Prints PASS/FAIL lines and
# "N passed, M failed"; exits 1 on any failure. Host ports are picked free on
# 127.0.0.1. Environment: SKIP_IMAGES=1 (use the images as they are),
# COMPOSE ("docker compose" or "docker-compose"; detected).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=/dev/null
source "$here/checks.sh"
project=parapet-ct-$$
tmp=$(mktemp -d /tmp/parapet-test-compose.XXXXXX)


if [ -n "${COMPOSE:-}" ]; then
  read -r -a compose <<<"$COMPOSE"
elif docker compose version >/dev/null 2>&1; then
  compose=(docker compose)
else
  compose=(docker-compose)
fi
dc() { "${compose[@]}" -p "$project" -f "$here/docker-compose.yml" "$@"; }

cleanup() {
  local rc=$?
  if [ "$failed" -gt 0 ]; then
    echo "--- last lines of the stack's logs:"; dc logs --tail 15 2>&1 | tail -60 || true
  fi
  dc down -v --remove-orphans >/dev/null 2>&1 || true
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

# --- Prometheus files ---------------------------------------------------------
promtool() {
  docker run --rm -v "$here/prometheus:/etc/prometheus:ro" -w /etc/prometheus \
    --entrypoint promtool parapet/prometheus:latest "$@"
}
out=$(promtool check config /etc/prometheus/prometheus.yml 2>&1) && ok=1 || ok=0
echo "$out" | sed 's/^/      promtool: /'
check "promtool check config (prometheus.yml + alerts.yml)" test "$ok" = 1
out=$(promtool test rules alerts_test.yml 2>&1) && ok=1 || ok=0
echo "$out" | grep -v '^$' | sed 's/^/      promtool: /'
check "promtool test rules alerts_test.yml (every alert fires on its series)" test "$ok" = 1

# --- the stack ---------------------------------------------------------------
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
EDGE1_PORT=$(free_port); EDGE2_PORT=$(free_port); EDGE1_ADMIN_PORT=$(free_port)
EDGE2_ADMIN_PORT=$(free_port); PROMETHEUS_PORT=$(free_port)
export EDGE1_PORT EDGE2_PORT EDGE1_ADMIN_PORT EDGE2_ADMIN_PORT PROMETHEUS_PORT
echo "ports: edge1 $EDGE1_PORT (admin $EDGE1_ADMIN_PORT), edge2 $EDGE2_PORT (admin $EDGE2_ADMIN_PORT), prometheus $PROMETHEUS_PORT"
t0=$SECONDS
dc up -d 2>&1 | sed 's/^/      compose: /'
check "stack up: edge1 ready" wait_until 90 curl -fsS "http://127.0.0.1:$EDGE1_ADMIN_PORT/readyz"
check "stack up: edge2 ready" wait_until 90 curl -fsS "http://127.0.0.1:$EDGE2_ADMIN_PORT/readyz"
echo "      (both edges ready $((SECONDS - t0)) s after 'up')"

# Each edge reaches both origins (round robin over healthy backends).
reaches_both() { # PORT EDGE
  local seen="" i body
  for i in $(seq 1 20); do
    body=$(curl -fsS -D /dev/stderr "http://127.0.0.1:$1/?n=$i" 2>"$tmp/h") || return 1
    grep -qi "^x-edge: $2" "$tmp/h" || return 1
    seen="$seen $(grep -o 'origin[12]' <<<"$body")"
    if grep -q origin1 <<<"$seen" && grep -q origin2 <<<"$seen"; then return 0; fi
  done
  return 1
}
# Health checks mark the origins healthy within a couple of intervals.
check "edge1 serves through to origin1 and origin2" wait_until 30 reaches_both "$EDGE1_PORT" edge1
check "edge2 serves through to origin1 and origin2" wait_until 30 reaches_both "$EDGE2_PORT" edge2
cache_hit() {
  curl -fsS -o /dev/null "http://127.0.0.1:$EDGE2_PORT/cached/"
  curl -fsS -o /dev/null -D - "http://127.0.0.1:$EDGE2_PORT/cached/" | grep -qi '^cache-status: parapet; hit'
}
check "edge2 /cached/: second request is a cache hit (Cache-Status: parapet; hit)" cache_hit

# --- Prometheus sees both edges ------------------------------------------------
prom_query() { # PROMQL -> prints "instance value" lines
  curl -fsS -G "http://127.0.0.1:$PROMETHEUS_PORT/api/v1/query" --data-urlencode "query=$1" \
    | python3 -c 'import json,sys
d=json.load(sys.stdin)
assert d["status"]=="success"
for r in d["data"]["result"]: print(r["metric"].get("instance","-"), r["value"][1])'
}
both_up() {
  local out; out=$(prom_query 'up{job="parapet"}')
  grep -q '^edge1:9901 1$' <<<"$out" && grep -q '^edge2:9901 1$' <<<"$out"
}
t0=$SECONDS
check "Prometheus: up{job=\"parapet\"} == 1 for edge1 and edge2" wait_until 90 both_up
echo "      (both targets up $((SECONDS - t0)) s after the edges were ready)"
prom_query 'up{job="parapet"}' | sed 's/^/      up: /'
has_requests() {
  local out; out=$(prom_query 'sum by (instance) (parapet_requests_total)')
  grep -q '^edge1:9901 [1-9]' <<<"$out" && grep -q '^edge2:9901 [1-9]' <<<"$out"
}
check "Prometheus: parapet_requests_total scraped from both edges" wait_until 60 has_requests
prom_query 'sum by (instance) (parapet_requests_total)' | sed 's/^/      parapet_requests_total: /'
prom_query 'sum by (instance) (parapet_backend_healthy{upstream="origins"})' | sed 's/^/      healthy backends of pool "origins": /'
rules=$(curl -fsS "http://127.0.0.1:$PROMETHEUS_PORT/api/v1/rules" \
  | python3 -c 'import json,sys; d=json.load(sys.stdin); print(sum(len(g["rules"]) for g in d["data"]["groups"]))')
check "Prometheus: alerts.yml loaded ($rules rules)" test "$rules" -ge 10
# Rules are "unknown" until their group's first evaluation (evaluation_interval 15s).
unhealthy_rules() {
  curl -fsS "http://127.0.0.1:$PROMETHEUS_PORT/api/v1/rules" \
    | python3 -c 'import json,sys; d=json.load(sys.stdin); print(" ".join(r["name"] + "=" + r.get("health", "?") for g in d["data"]["groups"] for r in g["rules"] if r.get("health") != "ok"))'
}
rules_ok() { [ -z "$(unhealthy_rules)" ]; }
wait_until 45 rules_ok || true
bad_rules=$(unhealthy_rules || echo "(rules API failed)")
check "Prometheus: every rule evaluates (health ok)${bad_rules:+; not: $bad_rules}" test -z "$bad_rules"

# Every query of the Grafana dashboard runs on this Prometheus (variables
# filled in with .* and a 1m rate interval).
dashboard_queries() {
  python3 - "$here/grafana/parapet-dashboard.json" "http://127.0.0.1:$PROMETHEUS_PORT" <<'EOF'
import json, sys, urllib.parse, urllib.request
dash = json.load(open(sys.argv[1]))
exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
exprs += [v["query"]["query"] for v in dash["templating"]["list"] if v["type"] == "query"]
bad, empty = [], []
for e in exprs:
    q = e.replace("$__rate_interval", "1m").replace("$job", ".*").replace("$instance", ".*")
    if q.startswith("label_values("):  # a Grafana function: check its selector
        q = q[len("label_values("):].rsplit(",", 1)[0]
    url = sys.argv[2] + "/api/v1/query?" + urllib.parse.urlencode({"query": q})
    try:
        d = json.load(urllib.request.urlopen(url, timeout=10))
        if d["status"] != "success":
            bad.append(e)
        elif not d["data"]["result"]:
            empty.append(e)
    except Exception as ex:
        bad.append(f"{e}: {ex}")
print(f"{len(exprs)} queries, {len(bad)} rejected, {len(empty)} without data yet")
for e in bad:
    print("  rejected:", e)
sys.exit(1 if bad else 0)
EOF
}
out=$(dashboard_queries 2>&1) && ok=1 || ok=0
echo "$out" | sed 's/^/      dashboard: /'
check "Grafana dashboard: every query is accepted by Prometheus" test "$ok" = 1

# --- reload one edge through compose -----------------------------------------
dc kill -s HUP edge1 >/dev/null 2>&1
took_over() { dc logs edge1 2>&1 | grep -q 'took over from pid'; }
check "kill -s HUP edge1: a new generation took over" wait_until 30 took_over
check "edge1 serves after the reload" reaches_both "$EDGE1_PORT" edge1

echo "test-compose: $passed passed, $failed failed"
if [ "$failed" -ne 0 ]; then exit 1; fi
