#!/usr/bin/env bash
# The instruction budget: user-space instructions per request, counted by
# callgrind for Parapet and, in the same run, for the anchors (a naive Pingora
# proxy, examples/naive_proxy.rs, and nginx). Instruction counts repeat to
# within a fraction of a percent for the same binary and config whatever
# else the machine does (wall-clock numbers here swing by 10 %), so they judge
# a change to the hot path; ../shared/bench/peers.sh gives req/s beside nginx,
# HAProxy and Varnish. Kernel time is not counted; the whole proxy process is.
#
#   bench/instructions.sh                  # every scenario, a table at the end
#   SCENARIOS="hit pass" bench/instructions.sh
#   PARAPET_BIN=/tmp/old-parapet NO_BUILD=1 bench/instructions.sh
#   ANNOTATE=1 SCENARIOS=pass bench/instructions.sh   # also the costliest functions
#   KEEP=1 ...; then bench/callgrind.py diff|incl|callees|callers on the
#   scenarios' directories in the work dir (per request; see its --help)
#
# Scenarios (1 KiB bodies; N requests on one HTTP/1.1 keep-alive connection,
# or one h2c connection, after an uncounted warm-up):
#   hit            Parapet, cache hit, HTTP/1.1
#   pass           Parapet, route without cache
#   pass_nostore   Parapet, caching route, the origin answers no-store
#   h2c_hit        Parapet, cache hit, cleartext HTTP/2 (h2load -m 1)
#   h2tls_hit      Parapet, cache hit, HTTP/2 over TLS (h2load -m 1)
#   naive_pass     naive Pingora proxy (no routing, headers, metrics, logs)
#   naive_timeouts_pass  the same with Parapet's default upstream timeouts
#                  (Pingora arms timers for them; the bare proxy has none)
#   naive_hit      the naive proxy answering every request from
#                  request_filter with a copy of one prebuilt 1 KiB response:
#                  the least any hit served through Pingora's session costs
#   nginx_pass     nginx proxy_pass, upstream keepalive
#   nginx_hit      nginx proxy_cache hit
#   nginx_h2tls_hit  nginx proxy_cache hit, HTTP/2 over TLS
# Env: N[3000] WARM[200] SCENARIOS[all] NO_BUILD[0] PARAPET_BIN NAIVE_BIN
#   ANNOTATE[0] KEEP[0] (1: keep the work dir)
# Needs valgrind, python3; nginx (nginx-light) for nginx_*, h2load
# (nghttp2-client) and curl for h2c_hit and the h2tls scenarios; openssl.
# A scenario whose tool is missing is reported as skipped, not counted.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-3000}
WARM=${WARM:-200}
SCENARIOS=${SCENARIOS:-"hit pass pass_nostore h2c_hit h2tls_hit naive_hit naive_pass naive_timeouts_pass nginx_pass nginx_hit nginx_h2tls_hit"}
BIN=${PARAPET_BIN:-target/release/parapet}
NAIVE=${NAIVE_BIN:-target/release/examples/naive_proxy}
command -v valgrind >/dev/null || { echo "needs valgrind (apt-get install valgrind)" >&2; exit 2; }
if [ "${NO_BUILD:-0}" != 1 ]; then
  cargo build --release -q
  cargo build --release -q --example naive_proxy
fi
W=$(mktemp -d /tmp/parapet-instructions.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  [ "${KEEP:-0}" = 1 ] && echo "work dir: $W" >&2 || rm -rf "$W"
}
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

cat > "$W/origin.py" <<'EOF'
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        body = b"x" * 1024
        self.send_response(200)
        cc = "no-store" if self.path.startswith("/nostore") else "public, max-age=3600"
        self.send_header("Cache-Control", cc)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
EOF
# client.py N PORT PATH HIT_RE: N requests on one keep-alive connection; with
# HIT_RE, every response head must match it (a hit), else it exits non-zero.
cat > "$W/client.py" <<'EOF'
import re, socket, sys
n, port, path, hit = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
hit_re = re.compile(hit.encode(), re.I) if hit else None
s = socket.create_connection(("127.0.0.1", port))
req = b"GET " + path.encode() + b" HTTP/1.1\r\nHost: bench.test\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n"
buf = b""
for _ in range(n):
    s.sendall(req)
    while True:
        end = buf.find(b"\r\n\r\n")
        if end >= 0:
            head = buf[:end]
            length = next(int(l.split(b":")[1]) for l in head.split(b"\r\n")
                          if l.lower().startswith(b"content-length"))
            if len(buf) >= end + 4 + length:
                if not head.startswith(b"HTTP/1.1 200"):
                    sys.exit("status: " + head.split(b"\r\n")[0].decode())
                if hit_re and not hit_re.search(head):
                    sys.exit("not a cache hit")
                buf = buf[end + 4 + length:]
                break
        data = s.recv(65536)
        if not data:
            sys.exit("connection closed")
        buf += data
EOF

ORIGIN=$(port)
python3 "$W/origin.py" "$ORIGIN" & PIDS+=($!)
# One ECDSA certificate for both TLS listeners (the same as bench/tls.sh).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -subj /CN=bench.test -addext subjectAltName=DNS:bench.test,IP:127.0.0.1 \
  -keyout "$W/key.pem" -out "$W/cert.pem" 2>/dev/null

parapet_config() { # port cache(0/1) h2c(0/1) tls(0/1)
  cat <<EOF
server:
  threads: 1
  pid_file: $W/parapet.pid
  upgrade_sock: $W/upgrade.sock
  grace_period_seconds: 1
  graceful_shutdown_timeout_seconds: 1
listeners:
  - address: 127.0.0.1:$1
$([ "$3" = 1 ] && echo "    h2c: true")
$([ "${4:-0}" = 1 ] && echo "    tls: {certificates: [{cert: $W/cert.pem, key: $W/key.pem}]}")
upstreams:
  origin:
    backends:
      - address: 127.0.0.1:$ORIGIN
routes:
  - upstream: origin
$([ "$2" = 1 ] && echo "    cache: {enabled: true}")
EOF
}

nginx_config() { # port tls(0/1)
  cat <<EOF
daemon off;
master_process off;
worker_processes 1;
error_log $W/nginx-error.log warn;
pid $W/nginx.pid;
events { worker_connections 1024; }
http {
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path $W/nginx-body;
  proxy_temp_path $W/nginx-proxy;
  fastcgi_temp_path $W/nginx-fcgi;
  uwsgi_temp_path $W/nginx-uwsgi;
  scgi_temp_path $W/nginx-scgi;
  proxy_cache_path $W/nginx-cache keys_zone=c:10m;
  upstream origin { server 127.0.0.1:$ORIGIN; keepalive 16; }
  server {
    listen 127.0.0.1:$1$([ "${2:-0}" = 1 ] && echo " ssl http2");
$([ "${2:-0}" = 1 ] && echo "    ssl_certificate $W/cert.pem; ssl_certificate_key $W/key.pem;")
    location / {
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_cache c;
      add_header Cache-Status \$upstream_cache_status;
    }
    location /pass {
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
EOF
}

# measure NAME PORT DRIVER... : the process under callgrind is $VG_PID; the
# driver runs once uninstrumented as readiness probe and warm-up, then N
# requests instrumented. Prints instructions per request.
wait_ready() { # port path hit_re
  for _ in $(seq 300); do
    python3 "$W/client.py" 1 "$1" "$2" "$3" 2>/dev/null && return 0
    kill -0 "$VG_PID" 2>/dev/null || return 1
    sleep 0.1 # polling for readiness with a deadline (30 s under valgrind)
  done
  return 1
}
total_of() { # dir
  local total=0 t f
  for f in "$1"/callgrind.out.*; do
    t=$(callgrind_annotate "$f" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}' || true)
    total=$((total + ${t:-0}))
  done
  echo "$total"
}
start_vg() { # dir cmd...
  local d=$1; shift
  mkdir -p "$d"
  valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$d/callgrind.out.%p" "$@" >"$d/log" 2>&1 &
  VG_PID=$!
  PIDS+=("$VG_PID")
}
stop_vg() { # SIGINT: Pingora's and nginx's fast shutdown; callgrind writes its counts on exit
  kill -INT "$VG_PID" 2>/dev/null || true
  wait "$VG_PID" 2>/dev/null || true
}

h2load_counted() { # url dir: N requests, one connection, one stream at a time, counted
  callgrind_control -i on "$VG_PID" >/dev/null 2>&1
  h2load -n "$N" -c 1 -m 1 "$1" >"$2/h2load.out"
  callgrind_control -i off "$VG_PID" >/dev/null 2>&1
  grep -q " 0 failed, 0 errored" "$2/h2load.out"
}

run() { # scenario -> echo "scenario instructions"  (or "scenario skipped: why")
  local sc=$1 p d path hit=""
  p=$(port); d="$W/$sc"
  case "$sc" in
    hit | pass | pass_nostore | h2c_hit | h2tls_hit)
      local cache=1 h2c=0 tls=0
      [ "$sc" = pass ] && cache=0
      [ "$sc" = h2c_hit ] && h2c=1
      [ "$sc" = h2tls_hit ] && tls=1
      if [[ $sc = h2* ]] && ! command -v h2load >/dev/null; then echo "$sc skipped: no h2load"; return; fi
      path=/1k; [ "$sc" = pass_nostore ] && path=/nostore
      case "$sc" in hit | h2*) hit='cache-status: *parapet; *hit' ;; esac
      mkdir -p "$d"; parapet_config "$p" "$cache" "$h2c" "$tls" >"$d.yaml"
      RUST_LOG=warn,parapet::access=off start_vg "$d" "$BIN" -c "$d.yaml"
      ;;
    naive_pass | naive_timeouts_pass | naive_hit)
      [ -x "$NAIVE" ] || { echo "$sc skipped: no $NAIVE"; return; }
      path=/1k
      local timeouts=0 respond=0
      [ "$sc" = naive_timeouts_pass ] && timeouts=1
      [ "$sc" = naive_hit ] && respond=1
      NAIVE_TIMEOUTS=$timeouts NAIVE_RESPOND=$respond start_vg "$d" "$NAIVE" "127.0.0.1:$p" "127.0.0.1:$ORIGIN"
      ;;
    nginx_pass | nginx_hit | nginx_h2tls_hit)
      command -v nginx >/dev/null || { echo "$sc skipped: no nginx"; return; }
      local tls=0; [ "$sc" = nginx_h2tls_hit ] && tls=1
      if [ $tls = 1 ] && ! command -v h2load >/dev/null; then echo "$sc skipped: no h2load"; return; fi
      mkdir -p "$d"; nginx_config "$p" "$tls" >"$d.conf"
      path=/pass; [[ $sc = *hit ]] && { path=/1k; hit='cache-status: *hit'; }
      start_vg "$d" nginx -e "$W/nginx-error.log" -c "$d.conf"
      ;;
    *) echo "unknown scenario $sc" >&2; exit 2 ;;
  esac
  if [[ $sc = *h2tls* ]]; then
    # TLS: readiness and warm-up over HTTP/2 (the fill, then WARM hits),
    # then N hits on one new connection; its one handshake is counted,
    # spread over the N requests (a few hundred instructions each at N=3000).
    local url="https://127.0.0.1:$p$path"
    for _ in $(seq 300); do
      curl -sk --http2 -o /dev/null "$url" 2>/dev/null && break
      kill -0 "$VG_PID" 2>/dev/null || break
      sleep 0.1 # polling for readiness with a deadline (30 s under valgrind)
    done
    h2load -n "$WARM" -c 1 -m 1 "$url" >/dev/null
    curl -sk --http2 -o /dev/null -D - "$url" | grep -Eqi "$hit" \
      || { stop_vg; echo "$sc failed: not a hit over TLS"; return; }
    h2load_counted "$url" "$d" || { stop_vg; echo "$sc failed: $(grep requests: "$d/h2load.out")"; return; }
    stop_vg
    echo "$sc $(($(total_of "$d") / N))"
    return
  fi
  # The first request fills the cache (a miss); the hit check applies after it.
  wait_ready "$p" "$path" "" || { echo "$sc failed to start: $(tail -3 "$d/log")" >&2; stop_vg; echo "$sc failed"; return; }
  python3 "$W/client.py" "$WARM" "$p" "$path" "$hit" || { stop_vg; echo "$sc failed"; return; }
  if [ "$sc" = h2c_hit ]; then
    # :authority differs from the HTTP/1 warm-up's Host: its own fill first.
    h2load -n "$WARM" -c 1 -m 1 "http://127.0.0.1:$p$path" >/dev/null
    curl -s --http2-prior-knowledge -o /dev/null -D - "http://127.0.0.1:$p$path" | grep -Eqi "$hit" \
      || { stop_vg; echo "$sc failed: h2c not a hit"; return; }
    h2load_counted "http://127.0.0.1:$p$path" "$d" || { stop_vg; echo "$sc failed: $(grep requests: "$d/h2load.out")"; return; }
  else
    callgrind_control -i on "$VG_PID" >/dev/null 2>&1
    python3 "$W/client.py" "$N" "$p" "$path" "$hit" || { stop_vg; echo "$sc failed"; return; }
    callgrind_control -i off "$VG_PID" >/dev/null 2>&1
  fi
  stop_vg
  echo "$sc $(($(total_of "$d") / N))"
  if [ "${ANNOTATE:-0}" = 1 ]; then
    f=$(ls -S "$d"/callgrind.out.* | head -1)
    callgrind_annotate --inclusive=yes "$f" 2>/dev/null | sed -n '/Ir/,$p' | head -45 >&2 || true
  fi
}

: >"$W/results"
for sc in $SCENARIOS; do
  r=$(run "$sc")
  echo "$r" | tee -a "$W/results" >&2
done

echo
echo "Instructions per request (callgrind, user space, whole proxy process; N=$N after $WARM warm-up; $(date -u +%F))"
echo
awk '
  { v[$1] = $2; order[NR] = $1 }
  END {
    print "| scenario | instructions/request | vs naive Pingora (pass: proxy; hit: responder) | vs naive with timeouts | vs nginx (same kind) |"
    print "|---|--:|--:|--:|--:|"
    for (i = 1; i <= NR; i++) {
      s = order[i]; x = v[s]
      if (x !~ /^[0-9]+$/) { printf "| %s | %s | | | |\n", s, x; continue }
      np = (v["naive_pass"] ~ /^[0-9]+$/ && s ~ /^pass/) ? sprintf("%+d", x - v["naive_pass"]) : ""
      if (v["naive_hit"] ~ /^[0-9]+$/ && s == "hit") np = sprintf("%+d", x - v["naive_hit"])
      nt = (v["naive_timeouts_pass"] ~ /^[0-9]+$/ && s ~ /^pass/) ? sprintf("%+d", x - v["naive_timeouts_pass"]) : ""
      # h2c has no nginx anchor here (nginx-light: no HTTP/2 without TLS in this config)
      peer = (s ~ /h2tls/) ? "nginx_h2tls_hit" : (s ~ /hit/) ? "nginx_hit" : "nginx_pass"
      ng = (v[peer] ~ /^[0-9]+$/ && s !~ /^nginx/ && s !~ /^h2c/) ? sprintf("%.2fx", x / v[peer]) : ""
      printf "| %s | %d | %s | %s | %s |\n", s, x, np, nt, ng
    }
  }' "$W/results"
