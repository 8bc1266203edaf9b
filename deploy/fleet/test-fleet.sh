#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# End-to-end test of the compose fleet (deploy/fleet/docker-compose.yml):
#
#   * promtool check config of the fleet's prometheus.yml
#   * the stack comes up on its own network: 3 edge replicas, the shield, two
#     origins, Prometheus; every edge's ring has 3 members (DNS discovery)
#   * Prometheus finds the 3 edges by DNS (dns_sd_configs) and the shield
#   * a load generator container (fleetload.py) requests 300 sharded objects
#     and 60 shielded ones through every edge at a steady rate (LOAD_RATE)
#   * origin fetches per object before the kill (goal: 1 per object per fleet)
#   * `docker kill` of one edge mid-load: how long until the survivors' rings
#     drop it (polling parapet_fleet_ring_members), errors seen by clients of
#     the surviving edges (goal 0), the share of keys that changed owner
#     (vs 1/N), origin fetches per object after (goal: at most one more, only
#     for the dead node's share; the shield absorbs its shielded objects)
#   * `docker start`: it rejoins (ring back to 3 everywhere) and owns its keys again
#   * 50 fleet purges on one edge: fan-out latency p50/p99 (the answers' `ms`)
#   * `docker stop` of an origin with a 2 s request in flight: it completes,
#     the origin exits 0 well before Docker's 10 s timeout
#   * teardown (`down -v`, also on failure or Ctrl-C)
#
# Prints PASS/FAIL lines, the numbers, and "N passed, M failed"; exits 1 on
# any failure. Polls with deadlines, no fixed sleeps as synchronisation.
# Environment: SKIP_IMAGES=1 (use the images as they are; otherwise
# deploy/images.sh --no-parapet keeps the base images current and
# deploy/images.sh runs only if parapet:latest is missing), LOAD_RATE
# (requests/s, 180), PURGES (50), COMPOSE ("docker compose" or
# "docker-compose"; detected), KEEP_OUT=DIR (copy the raw data there).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
deploy=$(cd "$here/.." && pwd)
# shellcheck source=../checks.sh
source "$deploy/checks.sh"
project=parapet-fleet-$$
tmp=$(mktemp -d /tmp/parapet-test-fleet.XXXXXX)
out=$tmp/out
mkdir -p "$out"
chmod 0777 "$out" # the load generator runs as nobody
rate=${LOAD_RATE:-180}
purges=${PURGES:-50}
token=fleet-admin-token-change-me # edge.yaml's admin.token
loadgen=$project-loadgen

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
    echo "--- last lines of the stack's logs:"; dc logs --tail 10 2>&1 | tail -60 || true
  fi
  docker rm -f "$loadgen" >/dev/null 2>&1 || true
  if [ -n "${KEEP_OUT:-}" ]; then mkdir -p "$KEEP_OUT" && cp -a "$out/." "$KEEP_OUT/" || true; fi
  dc down -v --remove-orphans >/dev/null 2>&1 || true
  rm -rf "$tmp"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
set -E
trap 'fail "unexpected error at line $LINENO: $BASH_COMMAND"' ERR

# --- images ---------------------------------------------------------------------
if [ "${SKIP_IMAGES:-0}" != 1 ]; then
  "$deploy/images.sh" --no-parapet
  docker image inspect parapet:latest >/dev/null 2>&1 || "$deploy/images.sh"
fi
for image in parapet:latest parapet/origin:latest parapet/prometheus:latest parapet/loadgen:latest; do
  docker image inspect "$image" >/dev/null 2>&1 || { fail "image $image missing (deploy/images.sh)"; exit 1; }
done

# --- helpers ----------------------------------------------------------------------
# Edge containers, ordered by replica number: "ID NAME" lines.
edges() {
  docker ps -a --filter "label=com.docker.compose.project=$project" \
    --filter label=com.docker.compose.service=edge --format '{{.ID}} {{.Names}}' \
    | awk '{ n = $2; sub(/.*[-_]/, "", n); print n, $0 }' | sort -n | cut -d' ' -f2-
}
host_port() { docker port "$1" "$2/tcp" 2>/dev/null | head -1 | sed 's/.*://'; } # CONTAINER PORT
admin_url() { echo "http://127.0.0.1:$(host_port "$1" 9901)"; }
metric() { # CONTAINER NAME: the value of an unlabelled metric
  curl -fsS -m 2 "$(admin_url "$1")/metrics" 2>/dev/null | awk -v m="$2" '$1 == m { print $2 }'
}
ring_is() { [ "$(metric "$1" parapet_fleet_ring_members)" = "$2" ]; } # CONTAINER N
ready() { curl -fsS -m 2 -o /dev/null "$(admin_url "$1")/readyz"; }
fetches() { # the origins' per-object fetch counts, summed: "COUNT NAME"
  local o
  for o in origin1 origin2; do
    dc exec -T "$o" busybox wget -q -O - http://127.0.0.1:8000/cgi-bin/fetches
  done | awk '$1 != "TOTAL" { c[$2] += $1 } END { for (n in c) print c[n], n }' | sort -k2
}
# Full passes over every object completed by the clients of every edge but
# SKIP (an edge's address:8080, or nothing).
cycles() { # [SKIP]
  awk -v skip="${1:-}" 'BEGIN { m = -1 } $1 != skip && (m < 0 || $2 < m) { m = $2 } END { print (m < 0 ? 0 : m) }' \
    "$out/cycles" 2>/dev/null || echo 0
}
now() { date +%s.%N; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# --- Prometheus config ----------------------------------------------------------------
out_=$(docker run --rm -v "$here/prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro" \
  -v "$deploy/prometheus/alerts.yml:/etc/prometheus/alerts.yml:ro" \
  --entrypoint promtool parapet/prometheus:latest check config /etc/prometheus/prometheus.yml 2>&1) && ok=1 || ok=0
echo "$out_" | grep -v '^$' | sed 's/^/      promtool: /'
check "promtool check config (fleet prometheus.yml: dns_sd_configs + alerts.yml)" test "$ok" = 1

# --- the stack --------------------------------------------------------------------
PROMETHEUS_PORT=$(free_port)
export PROMETHEUS_PORT
t0=$SECONDS
dc up -d 2>&1 | sed 's/^/      compose: /'
mapfile -t rows < <(edges)
check "compose: 3 edge replicas (${#rows[@]})" test "${#rows[@]}" = 3
ids=(); declare -A node_name=() ip_of=() name_of=()
for row in "${rows[@]}"; do
  id=${row%% *}; ids+=("$id")
  name_of[$id]=${row#* }
  node=$(docker inspect -f '{{.Config.Hostname}}' "$id")
  ip_of[$id]=$(docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$id")
  node_name[$node]=${name_of[$id]}
done
for id in "${ids[@]}"; do
  check "${name_of[$id]} ready" wait_until 90 ready "$id"
done
echo "      (edges ready $((SECONDS - t0)) s after 'up')"
t0=$SECONDS
for id in "${ids[@]}"; do
  check "${name_of[$id]}: ring of 3 (found its peers as the A records of 'edge')" wait_until 60 ring_is "$id" 3
done
echo "      (rings complete $((SECONDS - t0)) s later)"
fleet_json=$(curl -fsS -H "Authorization: Bearer $token" "$(admin_url "${ids[0]}")/api/fleet")
echo "$fleet_json" | python3 -c 'import json,sys
d=json.load(sys.stdin)
ms = ["%s %s%s" % (m["name"], m["address"], " (self)" if m["self"] else "") for m in d["members"]]
print("      /api/fleet on", d["node"] + ":", d["ring_size"], "live;", ", ".join(ms))'

# One object through every edge: the owner is the first member of Cache-Status.
port0=$(host_port "${ids[0]}" 8080)
cs() { curl -fsS -o /dev/null -D - -H 'Host: www.example' "http://127.0.0.1:$1$2" | tr -d '\r' | awk 'tolower($1) == "cache-status:" { sub(/^[^:]*: */, ""); print }'; }
echo "      Cache-Status of /cgi-bin/obj/probe: $(cs "$port0" /cgi-bin/obj/probe) | then $(cs "$port0" /cgi-bin/obj/probe)"
via_shield=$(cs "$port0" /cgi-bin/obj/shield/probe)
echo "      Cache-Status of /cgi-bin/obj/shield/probe: $via_shield"
check "shielded route: the shield's member (parapet-shield) comes first" grep -q '^parapet-shield; ' <<<"$via_shield"

# --- Prometheus ---------------------------------------------------------------------
prom_query() { # PROMQL -> "instance role value" lines
  curl -fsS -G "http://127.0.0.1:$PROMETHEUS_PORT/api/v1/query" --data-urlencode "query=$1" \
    | python3 -c 'import json,sys
d=json.load(sys.stdin)
for r in d["data"]["result"]: print(r["metric"].get("instance","-"), r["metric"].get("role","-"), r["value"][1])'
}
prom_sees_all() {
  local q; q=$(prom_query 'up{job="parapet"} == 1')
  [ "$(grep -c ' edge 1$' <<<"$q")" = 3 ] && grep -q '^shield:9901 shield 1$' <<<"$q"
}
t0=$SECONDS
check "Prometheus: 3 edges (dns_sd_configs A records of 'edge') and the shield up" wait_until 90 prom_sees_all
echo "      (all targets up $((SECONDS - t0)) s after the rings were complete)"
prom_query 'parapet_fleet_ring_members' | sed 's/^/      parapet_fleet_ring_members: /'

# --- load ----------------------------------------------------------------------------
dc run -d --name "$loadgen" -v "$out:/out" loadgen /tools/fleetload.py --edges edge:8080 \
  --set 'fleet=/cgi-bin/obj/fleet/{i}:300' --set 'shield=/cgi-bin/obj/shield/{i}:60' \
  --rate "$rate" --workers-per-edge 2 --max-seconds 900 --out /out >/dev/null 2>&1
check "load generator started (first 200)" wait_until 60 test -e "$out/started"
cycles_at_least() { [ "$(cycles "${2:-}")" -ge "$1" ]; } # N [SKIP]
check "load: every edge's clients requested every object twice" wait_until 120 cycles_at_least 2
fetches >"$out/fetches-before.txt"

# --- kill one edge mid-load ------------------------------------------------------------
victim=${ids[2]}
survivors=("${ids[0]}" "${ids[1]}")
victim_node=$(docker inspect -f '{{.Config.Hostname}}' "$victim")
fallbacks() {
  local id
  for id in "${survivors[@]}"; do
    printf '"%s": %s,' "$(docker inspect -f '{{.Config.Hostname}}' "$id")" \
      "$(metric "$id" parapet_fleet_origin_fallbacks_total || echo 0)"
  done | sed 's/,$//'
}
fb_before=$(fallbacks)
t_kill=$(now)
docker kill "$victim" >/dev/null
echo "      killed ${name_of[$victim]} (node ${victim_node}, ${ip_of[$victim]}) at cycle $(cycles)"
declare -A excluded=()
deadline=$((SECONDS + 30))
while [ "${#excluded[@]}" -lt 2 ] && [ "$SECONDS" -lt "$deadline" ]; do
  for id in "${survivors[@]}"; do
    if [ -z "${excluded[$id]:-}" ] && ring_is "$id" 2; then excluded[$id]=$(now); fi
  done
  sleep 0.05
done
check "both survivors' rings dropped the dead edge (ring 2) within 30 s" test "${#excluded[@]}" = 2
t_excluded=$t_kill
for id in "${survivors[@]}"; do
  t=${excluded[$id]:-$t_kill}
  t_excluded=$(python3 -c "print(max($t_excluded, $t))")
  echo "      ${name_of[$id]}: ring 2 after $(python3 -c "print(round($t - $t_kill, 2))") s"
done
check "the killed edge stays down (restart policy does not bring it back)" \
  test "$(docker inspect -f '{{.State.Running}}' "$victim")" = false
c=$(cycles "${ip_of[$victim]}:8080")
check "load: the survivors' clients requested every object twice more after the kill" \
  wait_until 120 cycles_at_least $((c + 2)) "${ip_of[$victim]}:8080"
fetches >"$out/fetches-kill.txt"
fb_after=$(fallbacks)

# --- start it again: it rejoins ----------------------------------------------------------
t_restart=$(now)
docker start "$victim" >/dev/null
check "${name_of[$victim]} ready again" wait_until 60 ready "$victim"
all_three() { local id; for id in "${ids[@]}"; do ring_is "$id" 3 || return 1; done; }
check "rejoined: every edge's ring has 3 members again" wait_until 60 all_three
t_rejoined=$(now)
new_ip=$(docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$victim")
echo "      ${name_of[$victim]} rejoined $(python3 -c "print(round($t_rejoined - $t_restart, 1))") s after docker start (address ${new_ip}, was ${ip_of[$victim]})"
c=$(cycles "${ip_of[$victim]}:8080")
check "load: the survivors' clients requested every object twice more after the rejoin" \
  wait_until 120 cycles_at_least $((c + 2)) "${ip_of[$victim]}:8080"
fetches >"$out/fetches-rejoin.txt"
touch "$out/stop"
wait_until 30 bash -c '[ "$(docker inspect -f "{{.State.Running}}" "$1")" = false ]' _ "$loadgen" || true
docker logs "$loadgen" 2>&1 | tail -3 | sed 's/^/      loadgen: /'

# --- fleet purges ------------------------------------------------------------------------------
admin0=$(admin_url "${ids[0]}")
: >"$out/purges.jsonl"
for i in $(seq 0 $((purges - 1))); do
  body=$(curl -sS -X POST -H "Authorization: Bearer $token" -w '\n%{time_total}' \
    "$admin0/purge?url=http%3A%2F%2Fwww.example%2Fcgi-bin%2Fobj%2Ffleet%2F$i")
  python3 -c 'import json,sys
lines = sys.argv[1].strip().split("\n")
d = json.loads("\n".join(lines[:-1]))
d["curl_ms"] = float(lines[-1]) * 1000
print(json.dumps(d))' "$body" >>"$out/purges.jsonl"
done
head -1 "$out/purges.jsonl" | sed 's/^/      first purge answer: /'

# --- an origin stops promptly, finishing the request in flight ---------------------------------
o1=$(docker ps -q --filter "label=com.docker.compose.project=$project" --filter label=com.docker.compose.service=origin1)
dc exec -T origin2 busybox wget -q -O - 'http://origin1:8000/cgi-bin/obj/stop-test?delay=2' >"$tmp/inflight" 2>&1 &
client=$!
wait_until 5 bash -c 'docker exec "$1" busybox pidof httpd | grep -q " "' _ "$o1" || true # a child serves it
t0=$(now)
docker stop -t 10 "$o1" >/dev/null
took=$(python3 -c "print(round($(now) - $t0, 1))")
wait "$client" && client_ok=1 || client_ok=0
code=$(docker inspect -f '{{.State.ExitCode}}' "$o1")
echo "      docker stop origin1 with a 2 s request in flight: $took s, exit $code; the client got: $(head -c 60 "$tmp/inflight")"
check "origin: docker stop finishes the request in flight and exits 0 before the 10 s timeout" \
  bash -c '[ "$1" = 1 ] && grep -q "object stop-test from origin1" "$2" && [ "$3" = 0 ] && python3 -c "import sys; sys.exit(0 if $4 < 9 else 1)"' \
  _ "$client_ok" "$tmp/inflight" "$code" "$took"

# --- report ------------------------------------------------------------------------------------
names_json=$(for n in "${!node_name[@]}"; do printf '"%s": "%s",' "$n" "${node_name[$n]}"; done | sed 's/,$//')
excl_json=$(for id in "${survivors[@]}"; do
  printf '"%s": %s,' "$(docker inspect -f '{{.Config.Hostname}}' "$id")" "${excluded[$id]:-$t_kill}"; done | sed 's/,$//')
cat >"$out/events.json" <<EOF
{"names": {$names_json},
 "victim": {"node": "$victim_node", "name": "${name_of[$victim]}", "edge": "${ip_of[$victim]}:8080",
            "edge_after_restart": "$new_ip:8080"},
 "t_kill": $t_kill, "excluded": {$excl_json}, "t_excluded": $t_excluded,
 "t_restart": $t_restart, "t_rejoined": $t_rejoined,
 "fallbacks": {"before": {$fb_before}, "after": {$fb_after}}}
EOF
echo "--- report"
report=$(python3 "$here/report.py" "$out") || { echo "$report"; fail "report.py failed"; exit 1; }
grep -v '^CHECK ' <<<"$report" | sed 's/^/      /'
while read -r _ ok what; do
  if [ "$ok" = 1 ]; then pass "$what"; else fail "$what"; fi
done < <(grep '^CHECK ' <<<"$report")

echo "test-fleet: $passed passed, $failed failed"
if [ "$failed" -ne 0 ]; then exit 1; fi
