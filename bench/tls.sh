#!/usr/bin/env bash
# TLS benchmark: Parapet next to nginx with the same certificate, in one run.
#
#   handshake  new TLS connection per request (wrk, Connection: close);
#              wrk keeps each connection's session, so after the first these
#              are resumed handshakes (plus one request each)
#   full       `openssl s_time -new`: full handshakes/s, one client process
#   resumed    `openssl s_time -reuse`: resumed (session ticket) handshakes/s;
#              both s_time figures are bound by the one client on 2 cores
#   h2_hit     HTTP/2 over TLS (ALPN), 1 KiB cache hits (h2load)
#
# Then, Parapet alone under its supervisor: the share of sessions taken
# from generation 1 that resume with generation 2 after a reload (SIGHUP),
# next to the share that resume before it.
#
# Both proxies: one worker, pinned to SERVER_CPU, caching in front of an
# nginx origin; clients pinned to CLIENT_CPU. Rounds alternate the order;
# medians and Parapet/nginx ratios are printed. Needs nginx-light, wrk,
# nghttp2-client (h2load), openssl; builds parapet in release mode.
#
#   ROUNDS=3 DUR=5 bench/tls.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
DUR=${DUR:-5}
CONNS=${CONNS:-16}
SERVER_CPU=${SERVER_CPU:-1}
CLIENT_CPU=${CLIENT_CPU:-0}
W=${BENCH_DIR:-/tmp/parapet-tls-bench}
rm -rf "$W" && mkdir -p "$W/www/static" "$W/nginx-cache"
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ORIGIN=$(port); NGINX=$(port); PARAPET=$(port); ADMIN=$(port)

cargo build --release -q
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -subj /CN=bench.test -addext subjectAltName=DNS:bench.test,IP:127.0.0.1 \
  -keyout "$W/key.pem" -out "$W/cert.pem" 2>/dev/null
head -c 1024 /dev/urandom > "$W/www/static/1k.bin"

cat > "$W/origin.conf" <<CONF
worker_processes 1; pid $W/origin.pid; error_log $W/origin.err; daemon off;
events { worker_connections 4096; }
http { access_log off;
  server { listen 127.0.0.1:$ORIGIN; root $W/www;
    location /static/ { add_header Cache-Control "max-age=3600"; } } }
CONF
cat > "$W/nginx.conf" <<CONF
worker_processes 1; pid $W/nginx.pid; error_log $W/nginx.err; daemon off;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 10000000; http2_max_requests 10000000;
  proxy_cache_path $W/nginx-cache keys_zone=c:10m max_size=256m;
  upstream o { server 127.0.0.1:$ORIGIN; keepalive 64; }
  server { listen 127.0.0.1:$NGINX ssl http2;
    ssl_certificate $W/cert.pem; ssl_certificate_key $W/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3;
    location / { proxy_pass http://o; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_cache c; } } }
CONF
cat > "$W/parapet.yaml" <<CONF
server: {threads: 1, pid_file: $W/parapet.pid, upgrade_sock: $W/parapet.sock}
listeners:
  - address: "127.0.0.1:$PARAPET"
    tls: {certificates: [{cert: $W/cert.pem, key: $W/key.pem}]}
upstreams: {o: {backends: [{address: "127.0.0.1:$ORIGIN"}]}}
routes: [{upstream: o, cache: {enabled: true}}]
cache: {memory: {max_size: 256MiB}}
access_log: {enabled: false}
admin: {address: "127.0.0.1:$ADMIN"}
CONF

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
taskset -c "$SERVER_CPU" nginx -c "$W/origin.conf" & pids+=($!)
taskset -c "$SERVER_CPU" nginx -c "$W/nginx.conf" & pids+=($!)
RUST_LOG=warn taskset -c "$SERVER_CPU" ./target/release/parapet -c "$W/parapet.yaml" 2>"$W/parapet.err" & pids+=($!)
for p in $ORIGIN $NGINX $PARAPET; do
  for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null && break; sleep 0.1; done
done
# Warm both caches.
for p in $NGINX $PARAPET; do
  for _ in 1 2 3; do curl -sk -o /dev/null "https://127.0.0.1:$p/static/1k.bin"; done
done
curl -sk -D - -o /dev/null "https://127.0.0.1:$PARAPET/static/1k.bin" | grep -i '^cache-status' || true

declare -A results
run() { # name port scenario
  local out rps
  case $3 in
    handshake)
      out=$(taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNS" -d"${DUR}s" -H 'Connection: close' \
              "https://127.0.0.1:$2/static/1k.bin" 2>&1)
      rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
      if grep -q 'Non-2xx\|Socket errors' <<<"$out"; then echo "  ($1 $3: $(grep -E 'Non-2xx|Socket errors' <<<"$out"))" >&2; fi ;;
    full|resumed)
      local flag=-new; [ "$3" = resumed ] && flag=-reuse
      out=$(taskset -c "$CLIENT_CPU" openssl s_time -connect "127.0.0.1:$2" $flag -time "$DUR" \
              -www /static/1k.bin 2>&1)
      # "N connections in T real seconds" (the last such line: the timed run)
      rps=$(awk '/connections in .* real seconds/ {n=$1; t=$4} END {if (t > 0) printf "%.0f", n/t}' <<<"$out") ;;
    h2_hit)
      out=$(taskset -c "$CLIENT_CPU" h2load -c"$CONNS" -m10 -D "$DUR" \
              "https://127.0.0.1:$2/static/1k.bin" 2>&1)
      rps=$(awk '/^finished in/ {gsub(",","",$4); print $4}' <<<"$out")
      grep -q 'h2' <<<"$(grep -i 'Application protocol' <<<"$out")" || echo "  ($1: no h2 negotiated)" >&2 ;;
  esac
  results["$1 $3"]+="${rps:-0} "
  printf '  %-8s %-10s %10s req/s\n' "$1" "$3" "${rps:-0}"
}
for r in $(seq "$ROUNDS"); do
  echo "round $r"
  for sc in handshake full resumed h2_hit; do
    if (( r % 2 )); then run parapet $PARAPET $sc; run nginx $NGINX $sc
    else run nginx $NGINX $sc; run parapet $PARAPET $sc; fi
  done
done
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print (NR%2)? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
echo
printf '%-10s %12s %12s %8s\n' scenario parapet nginx ratio
for sc in handshake full resumed h2_hit; do
  p=$(median <<<"${results[parapet $sc]}"); n=$(median <<<"${results[nginx $sc]}")
  printf '%-10s %12.0f %12.0f %8.2f\n' "$sc" "$p" "$n" "$(echo "$p / $n" | bc -l)"
done

# Resumption across a zero-downtime reload (Parapet's supervisor, shared
# ticket keys by default): SESSIONS clients each save a session from
# generation 1, then come back to generation 2.
SESSIONS=${SESSIONS:-50}
cleanup
pids=()
taskset -c "$SERVER_CPU" nginx -c "$W/origin.conf" & pids+=($!)
sed -i "s|upgrade_sock: $W/parapet.sock|upgrade_sock: $W/run.sock|" "$W/parapet.yaml"
RUST_LOG=warn ./target/release/parapet run -c "$W/parapet.yaml" 2>"$W/run.err" & pids+=($!)
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$PARAPET) 2>/dev/null && break; sleep 0.1; done
visit() { # port session-file in|out -> "Reused" or "New"
  printf 'GET /static/1k.bin HTTP/1.1\r\nHost: bench.test\r\nConnection: close\r\n\r\n' |
    timeout 5 openssl s_client -connect "127.0.0.1:$1" -servername bench.test -ign_eof \
      "-sess_$3" "$2" 2>/dev/null | awk '/^(Reused|New),/ {print $1; exit}' | tr -d ,
}
for i in $(seq "$SESSIONS"); do visit $PARAPET "$W/s$i" out >/dev/null; done
before=0; for i in $(seq "$SESSIONS"); do [ "$(visit $PARAPET "$W/s$i" in)" = Reused ] && before=$((before+1)); done
kill -HUP "${pids[-1]}"
# The old generation accepts for ~5 s after the handoff, then drains.
sleep 8
after=0; for i in $(seq "$SESSIONS"); do [ "$(visit $PARAPET "$W/s$i" in)" = Reused ] && after=$((after+1)); done
echo
echo "resumed before a reload: $before/$SESSIONS; right after it (generation 2): $after/$SESSIONS"
