#!/usr/bin/env bash
# Zero-downtime reloads under load, as an operator would check them: wrk
# with 64 keep-alive connections plus a client opening a new connection per
# request, while the supervisor (`parapet run`) gets HUPS SIGHUPs (default
# 10) two seconds apart. Prints wrk's socket errors and non-2xx count and the
# new-connection client's failures; all should be 0.
#
#   bench/reload-under-load.sh                 # target/release/parapet
#   PARAPET_BIN=/tmp/old-parapet HUPS=10 bench/reload-under-load.sh
#
# Needs wrk and python3. Not a timed test: it reports counts.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${PARAPET_BIN:-target/release/parapet}
HUPS=${HUPS:-10}
command -v wrk >/dev/null || { echo "needs wrk (apt-get install wrk)" >&2; exit 2; }
[ -n "${PARAPET_BIN:-}" ] || cargo build --release -q
W=$(mktemp -d /tmp/parapet-reload-XXXX)
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ORIGIN=$(port); PROXY=$(port); ADMIN=$(port)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

cat > "$W/origin.py" <<'PY'
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        body = b"x" * 512
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a): pass
class S(http.server.ThreadingHTTPServer):
    request_queue_size = 1024  # the default 5 drops SYNs when a new generation connects
    daemon_threads = True
    def handle_error(self, request, client_address): pass  # a proxy closing idle connections
S(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
PY
cat > "$W/fresh.py" <<'PY'
import socket, sys, time
port, seconds = int(sys.argv[1]), float(sys.argv[2])
ok = failed = 0
end = time.time() + seconds
while time.time() < end:
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(b"GET /fresh HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        s.close()
        if data.startswith(b"HTTP/1.1 200"):
            ok += 1
        else:
            failed += 1
    except OSError:
        failed += 1
print(f"new-connection client: {ok} ok, {failed} failed")
PY
cat > "$W/parapet.yaml" <<YAML
server:
  threads: 2
  pid_file: "$W/parapet.pid"
  upgrade_sock: "$W/upgrade.sock"
  grace_period_seconds: 3
  graceful_shutdown_timeout_seconds: 1
listeners:
  - address: "127.0.0.1:$PROXY"
admin:
  address: "127.0.0.1:$ADMIN"
upstreams:
  o:
    backends: [{address: "127.0.0.1:$ORIGIN"}]
routes:
  - upstream: o
access_log: {enabled: false}
YAML

python3 "$W/origin.py" "$ORIGIN" & pids+=($!)
RUST_LOG=info "$BIN" run -c "$W/parapet.yaml" 2>"$W/parapet.log" & SUP=$!; pids+=($SUP)
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$ADMIN/readyz" >/dev/null && break; sleep 0.1; done
DUR=$((HUPS * 2 + 10))
wrk -t2 -c64 -d${DUR}s "http://127.0.0.1:$PROXY/" > "$W/wrk.out" 2>&1 & WRK=$!
python3 "$W/fresh.py" "$PROXY" "$DUR" > "$W/fresh.out" & FRESH=$!
sleep 3
for i in $(seq "$HUPS"); do kill -HUP "$SUP"; sleep 2; done
wait "$WRK" "$FRESH"
grep -E "requests in|Socket errors|Non-2xx" "$W/wrk.out" || true
grep -q "Socket errors" "$W/wrk.out" || echo "wrk: no socket errors"
grep -q "Non-2xx" "$W/wrk.out" || echo "wrk: no non-2xx responses"
cat "$W/fresh.out"
echo "handoffs: $(grep -c "took over" "$W/parapet.log" || true) (logs in $W)"
