#!/usr/bin/env bash
# User-space instructions per 1 KiB cache hit, counted by callgrind: a number
# that repeats to the instruction for the same binary and config, whatever
# else the machine is doing (wall-clock benchmarks here swing by 10%). Use it
# to compare two builds of the hit path; use ../shared/bench/peers.sh for
# req/s against nginx and Varnish. Kernel time is not counted.
#
#   bench/hit-instructions.sh                 # target/release/parapet
#   PARAPET_BIN=/tmp/old-parapet N=5000 bench/hit-instructions.sh
#   ANNOTATE=1 bench/hit-instructions.sh      # also the costliest functions
#   MODE=pass bench/hit-instructions.sh       # pass-through: a route without cache
#
# Needs valgrind and python3. The origin (python, one response) is fetched
# once; the N measured requests are hits on one keep-alive connection.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-3000}
MODE=${MODE:-hit}
case "$MODE" in
  hit) ROUTE_CACHE="    cache: {enabled: true}" ;;
  pass) ROUTE_CACHE="" ;;
  *) echo "MODE is hit or pass" >&2; exit 2 ;;
esac
BIN=${PARAPET_BIN:-target/release/parapet}
W=${BENCH_DIR:-/tmp/parapet-hit-instructions}
command -v valgrind >/dev/null || { echo "needs valgrind (apt-get install valgrind)" >&2; exit 2; }
[ -n "${PARAPET_BIN:-}" ] || cargo build --release -q
rm -rf "$W" && mkdir -p "$W"
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ORIGIN=$(port); PROXY=$(port)

cat > "$W/origin.py" <<'EOF'
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        body = b"x" * 1024
        self.send_response(200)
        self.send_header("Cache-Control", "public, max-age=3600")
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
EOF
cat > "$W/client.py" <<'EOF'
import socket, sys
n, port = int(sys.argv[1]), int(sys.argv[2])
want_hit = sys.argv[3] == "hit"
s = socket.create_connection(("127.0.0.1", port))
req = b"GET /1k HTTP/1.1\r\nHost: bench.test\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n"
buf = b""
for _ in range(n):
    s.sendall(req)
    while True:
        end = buf.find(b"\r\n\r\n")
        if end >= 0:
            length = next(int(l.split(b":")[1]) for l in buf[:end].split(b"\r\n")
                          if l.lower().startswith(b"content-length"))
            if len(buf) >= end + 4 + length:
                if want_hit and b"hit" not in buf[:end].lower():
                    sys.exit("not a cache hit")
                buf = buf[end + 4 + length:]
                break
        data = s.recv(65536)
        if not data:
            sys.exit("connection closed")
        buf += data
EOF
cat > "$W/parapet.yaml" <<EOF
server:
  threads: 1
  pid_file: $W/parapet.pid
  upgrade_sock: $W/upgrade.sock
  grace_period_seconds: 1
  graceful_shutdown_timeout_seconds: 1
listeners:
  - address: 127.0.0.1:$PROXY
upstreams:
  origin:
    backends:
      - address: 127.0.0.1:$ORIGIN
routes:
  - upstream: origin
$ROUTE_CACHE
EOF

python3 "$W/origin.py" "$ORIGIN" & ORIGIN_PID=$!
RUST_LOG=warn,parapet::access=off valgrind --tool=callgrind --instr-atstart=no \
  --callgrind-out-file="$W/callgrind.out.%p" "$BIN" -c "$W/parapet.yaml" > "$W/parapet.log" 2>&1 &
VG_PID=$!
trap 'kill $VG_PID $ORIGIN_PID 2>/dev/null || true' EXIT
ready=0
for _ in $(seq 300); do
  if python3 "$W/client.py" 1 "$PROXY" "$MODE" 2>/dev/null; then ready=1; break; fi
  sleep 0.1  # polling for readiness with a deadline (30 s under valgrind)
done
[ $ready = 1 ] || { echo "parapet did not come up; see $W/parapet.log" >&2; exit 1; }
python3 "$W/client.py" 50 "$PROXY" "$MODE"  # warm (still uninstrumented)
callgrind_control -i on "$VG_PID" >/dev/null 2>&1
python3 "$W/client.py" "$N" "$PROXY" "$MODE"
callgrind_control -i off "$VG_PID" >/dev/null 2>&1
kill "$VG_PID"; wait "$VG_PID" 2>/dev/null || true
total=0
for f in "$W"/callgrind.out.*; do
  t=$(callgrind_annotate "$f" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}' || true)
  total=$((total + ${t:-0}))
done
case "$MODE" in
  hit) echo "instructions per 1 KiB hit: $((total / N))  ($BIN, $N hits)" ;;
  pass) echo "instructions per 1 KiB pass-through request: $((total / N))  ($BIN, $N requests)" ;;
esac
if [ -n "${ANNOTATE:-}" ]; then
  f=$(ls -S "$W"/callgrind.out.* | head -1)
  callgrind_annotate --inclusive=yes "$f" 2>/dev/null | grep "parapet::" | head -20 || true
fi
