#!/usr/bin/env bash
# Load steering benchmark: one of three backends is 10x slower.
#
# Three origins on 127.0.0.1 (bench/delay-origin.py, kernel-chosen ports):
# two answer after FAST_MS (2 ms), one after SLOW_MS (20 ms); 1 KiB body,
# HTTP/1.1 keep-alive; each counts the requests it served. The same closed-
# loop hey load (CONNS connections, DURATION s) goes through, in one run:
#   parapet_rr / parapet_lc / parapet_p2c   selection: round_robin /
#                                           least_connections / p2c_ewma
#   nginx_rr / nginx_lc                     (default) / least_conn
#   haproxy_rr / haproxy_lc                 balance roundrobin / leastconn
# Each proxy runs one worker pinned to SERVER_CPU; hey and the origins are
# pinned to CLIENT_CPU. Before each measurement: a WARM s warm-up (pools and
# latency estimates fill up), then the origin counters are reset.
#
# Why hey and not wrk: wrk --latency "corrects" for coordinated omission by
# adding synthetic samples for every response slower than 2x the mean
# interval; with a 2 ms / 20 ms mix that invents a mode at ~(20 - mean) ms
# (round robin at -c1: true p50 2.9 ms, wrk says 11.8 ms). hey reports the
# measured latencies.
#
# Reading the table: slow% = share of the requests the slow origin served
# (round robin: ~33%). A steering policy that works sends it much less, and
# req/s rises (closed loop: faster answers = more requests). p99 only falls
# below ~SLOW_MS once slow% is under ~1%; p50 stays near FAST_MS + ~1.5 ms
# (asyncio timer rounding, two hops) whatever the policy.
# xp50 / xp99 / xrps = that column / the same column of parapet_rr (the first
# scenario run if parapet_rr is not in SCENARIOS). proxy% / origin% / client% = CPU
# used by the proxy process tree / the origin process / hey, % of one core;
# origin% + client% near 100 means CLIENT_CPU, not the policy, limits the result
# (on 2 cores that happens from CONNS=16 on). More CONNS also weakens p2c_ewma's
# steering by design: its cost is latency x (in flight + 1), so once the fast
# backends hold ~10 requests each, the idle slow one looks cheaper.
#
#   DURATION=10 bench/steering.sh
# Env: DURATION[10] WARM[2] CONNS[8] FAST_MS[2] SLOW_MS[20]
#   SERVER_CPU[1] CLIENT_CPU[0] NICE[0] (e.g. -10 on a busy box you own)
#   SCENARIOS["parapet_rr parapet_lc parapet_p2c nginx_rr nginx_lc haproxy_rr haproxy_lc"]
#   NO_BUILD[0] (1: use the existing target/release/parapet)  KEEP[0] (1: keep the temp dir)
# Needs (Debian): nginx (or nginx-light), haproxy, hey, curl, util-linux
# (taskset), python3 (stdlib only); builds parapet with `cargo build --release`.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10}; WARM=${WARM:-2}; CONNS=${CONNS:-8}
FAST_MS=${FAST_MS:-2}; SLOW_MS=${SLOW_MS:-20}
SERVER_CPU=${SERVER_CPU:-1}; CLIENT_CPU=${CLIENT_CPU:-0}; NICE=${NICE:-0}
SCENARIOS=${SCENARIOS:-"parapet_rr parapet_lc parapet_p2c nginx_rr nginx_lc haproxy_rr haproxy_lc"}
PY=${PYTHON:-python3}

missing=()
for t in nginx:nginx haproxy:haproxy hey:hey curl:curl taskset:util-linux "$PY":python3 cargo:cargo; do
  command -v "${t%%:*}" >/dev/null || missing+=("${t#*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "missing tools; install with: apt-get install -y ${missing[*]}" >&2; exit 1
fi

W=$(mktemp -d /tmp/parapet-steering.XXXXXX)
pids=()
cleanup() {
  local rc=$?
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ "$rc" = 0 ] && [ "${KEEP:-0}" != 1 ]; then rm -rf "$W"; else echo "files kept in $W" >&2; fi
}
trap cleanup EXIT
die() { echo "FATAL: $*" >&2; exit 1; }
port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# Simple commands (no function/subshell), so that $! is the server itself.
SRV=(nice -n "$NICE" taskset -c "$SERVER_CPU"); CLI=(nice -n "$NICE" taskset -c "$CLIENT_CPU")
ticks() { # utime+stime of a pid and its children
  local t=0 p
  for p in "$1" $(pgrep -P "$1" || true); do
    t=$((t + $(awk '{sub(/^[0-9]+ \(.*\) /, ""); print $12 + $13}' "/proc/$p/stat" 2>/dev/null || echo 0)))
  done
  echo "$t"
}
wait_http() { # port pid name: poll until a GET through it answers 200 (deadline 30 s)
  local deadline=$((SECONDS + 30))
  until curl -sf -o /dev/null --max-time 1 "http://127.0.0.1:$1/"; do
    kill -0 "$2" 2>/dev/null || { tail -20 "$W/$3.log" >&2; die "$3 exited"; }
    [ $SECONDS -lt $deadline ] || { tail -20 "$W/$3.log" >&2; die "$3 not ready on :$1"; }
    sleep 0.05
  done
}

if [ "${NO_BUILD:-0}" != 1 ]; then nice -n 19 cargo build --release -q; fi
[ -x target/release/parapet ] || die "target/release/parapet not built"

# Origins (pinned with the client: the proxy core measures only the proxy).
"${CLI[@]}" "$PY" bench/delay-origin.py "$W/ports" "$FAST_MS" "$FAST_MS" "$SLOW_MS" >"$W/origin.log" 2>&1 &
ORIGIN_PID=$!; pids+=("$ORIGIN_PID")
deadline=$((SECONDS + 20))
until [ -s "$W/ports" ]; do
  kill -0 "$ORIGIN_PID" 2>/dev/null || { cat "$W/origin.log" >&2; die "origin exited"; }
  [ $SECONDS -lt $deadline ] || die "origin did not start"
  sleep 0.05
done
read -r CTL O1 O2 O3 <"$W/ports"   # O3 is the slow one
ctl() { curl -sf --max-time 2 "http://127.0.0.1:$CTL/$1"; }

parapet_conf() { # selection port admin
  cat <<CONF
server: {threads: 1, pid_file: $W/parapet-$1.pid, upgrade_sock: $W/parapet-$1.sock}
listeners: [{address: "127.0.0.1:$2"}]
upstreams:
  app:
    selection: $1
    backends: [{address: "127.0.0.1:$O1"}, {address: "127.0.0.1:$O2"}, {address: "127.0.0.1:$O3"}]
routes: [{match: {path_prefix: /}, upstream: app}]
access_log: {enabled: false}
admin: {address: "127.0.0.1:$3"}
CONF
}
nginx_conf() { # directive port name
  cat <<CONF
worker_processes 1; pid $W/$3.pid; error_log $W/$3.err; daemon off;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 10000000;
  upstream app { $1 server 127.0.0.1:$O1; server 127.0.0.1:$O2; server 127.0.0.1:$O3; keepalive 64; }
  server { listen 127.0.0.1:$2;
    location / { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection ""; } } }
CONF
}
haproxy_conf() { # balance port name
  cat <<CONF
global
  nbthread 1
  maxconn 4096
  pidfile $W/$3.pid
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  http-reuse always
frontend f
  bind 127.0.0.1:$2
  default_backend app
backend app
  balance $1
  server s1 127.0.0.1:$O1
  server s2 127.0.0.1:$O2
  server s3 127.0.0.1:$O3
CONF
}

start_proxy() { # scenario port -> sets PROXY_PID
  local sc=$1 p=$2 f=$W/$1.conf sel
  case $sc in
    parapet_*)
      case $sc in parapet_rr) sel=round_robin ;; parapet_lc) sel=least_connections ;;
                  parapet_p2c) sel=p2c_ewma ;; *) die "unknown scenario $sc" ;; esac
      parapet_conf "$sel" "$p" "$(port)" >"$f"
      ./target/release/parapet -t -c "$f" >"$W/$sc.log" 2>&1 || { cat "$W/$sc.log" >&2; die "$sc: config rejected"; }
      RUST_LOG=warn "${SRV[@]}" ./target/release/parapet -c "$f" >"$W/$sc.log" 2>&1 & ;;
    nginx_rr | nginx_lc)
      nginx_conf "$([ "$sc" = nginx_lc ] && echo 'least_conn;')" "$p" "$sc" >"$f"
      "${SRV[@]}" nginx -c "$f" >"$W/$sc.log" 2>&1 & ;;
    haproxy_rr | haproxy_lc)
      haproxy_conf "$([ "$sc" = haproxy_lc ] && echo leastconn || echo roundrobin)" "$p" "$sc" >"$f"
      "${SRV[@]}" haproxy -db -f "$f" >"$W/$sc.log" 2>&1 & ;;
    *) die "unknown scenario $sc" ;;
  esac
  PROXY_PID=$!; pids+=("$PROXY_PID")
  wait_http "$p" "$PROXY_PID" "$sc"
}

load() { # seconds port
  "${CLI[@]}" hey -c "$CONNS" -z "$1s" -t 5 "http://127.0.0.1:$2/"
}

lat() { awk -v q="$1%" '$1 == q && $2 == "in" { print $3 * 1000 }' <<<"$out"; } # percentile -> ms (hey output in $out)
kids() { awk '{sub(/^[0-9]+ \(.*\) /, ""); print $14 + $15}' /proc/$$/stat; } # CPU ticks of our waited-for children
cpu() { awk -v d=$(($2 - $1)) -v hz="$(getconf CLK_TCK)" -v s="$DURATION" 'BEGIN {printf "%.0f", 100 * d / hz / s}'; }

echo "loadavg $(cut -d" " -f1-3 /proc/loadavg); origins :$O1 :$O2 (${FAST_MS} ms) :$O3 (${SLOW_MS} ms); hey -c $CONNS -z ${DURATION}s;" \
     "proxy on cpu$SERVER_CPU, hey+origins on cpu$CLIENT_CPU" >&2
: >"$W/results"
for sc in $SCENARIOS; do
  p=$(port)
  start_proxy "$sc" "$p"
  load "$WARM" "$p" >/dev/null
  ctl reset >/dev/null
  pt1=$(ticks "$PROXY_PID"); ot1=$(ticks "$ORIGIN_PID"); ct1=$(kids)
  out=$(load "$DURATION" "$p")
  pt2=$(ticks "$PROXY_PID"); ot2=$(ticks "$ORIGIN_PID"); ct2=$(kids)
  read -r n1 n2 n3 < <(ctl count)
  echo "$out" >"$W/$sc.hey"
  kill "$PROXY_PID"; wait "$PROXY_PID" 2>/dev/null || true
  rps=$(awk '$1 == "Requests/sec:" {print $2}' <<<"$out")
  errs=$(awk '/^Error distribution/ {e = 1} e && /^ *\[[0-9]+\]/ {gsub(/[][]/, "", $1); n += $1}
              /^ *\[[0-9]+\][ \t]+[0-9]+ responses/ && $1 != "[200]" {n += $2} END {print n + 0}' <<<"$out")
  tot=$((n1 + n2 + n3))
  slow=$(awk -v s="$n3" -v t="$tot" 'BEGIN {printf "%.1f", t ? 100 * s / t : 0}')
  echo "$sc $rps $(lat 50) $(lat 99) $slow $(cpu "$pt1" "$pt2") $(cpu "$ot1" "$ot2") $(cpu "$ct1" "$ct2") $errs $n1/$n2/$n3" | tee -a "$W/results" >&2
done

echo
echo "Steering with one slow backend: ${FAST_MS}/${FAST_MS}/${SLOW_MS} ms origins, hey -c $CONNS -z ${DURATION}s, one proxy worker ($(date -u +%FT%TZ))"
echo
awk '
  NR == 1 { base = $1 } $1 == "parapet_rr" { base = $1 }
  { rps[$1] = $2; p50[$1] = $3; p99[$1] = $4; row[NR] = $0 }
  END {
    print "| scenario | req/s | p50 ms | p99 ms | slow% | xp50 | xp99 | xrps | proxy% | origin% | client% | errors | requests fast/fast/slow |"
    print "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"
    for (i = 1; i <= NR; i++) {
      split(row[i], f, " "); s = f[1]
      printf "| %s | %.0f | %.1f | %.1f | %s | %.2f | %.2f | %.2f | %s | %s | %s | %s | %s |\n", s, f[2], f[3], f[4], f[5],
        p50[s] / p50[base], p99[s] / p99[base], rps[s] / rps[base], f[6], f[7], f[8], f[9], f[10]
    }
    print ""; print "ratios (x...) are relative to " base
  }' "$W/results"
