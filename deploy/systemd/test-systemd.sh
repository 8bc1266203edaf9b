#!/usr/bin/env bash
# Tests deploy/systemd/parapet.service under a real systemd (PID 1 of a
# throwaway container, no privileges needed), installed exactly as
# deploy/README.md says, with deploy/parapet.yaml and a busybox origin on
# 127.0.0.1:9001:
#
#   * systemd-analyze verify, then `systemctl start`: active, serving
#   * `systemctl reload` under load (busybox wget loop inside, a new connection
#     per request): same MainPID, a new generation, zero failed requests
#   * a broken config: `systemctl reload` fails, still active and serving on
#     the same generation
#   * `systemctl stop`: drains, Result=success, exit status 0, < TimeoutStopSec
#
# Needs parapet:latest (deploy/images.sh). The test image is built from
# BASE_IMAGE (default parapet/debian:bookworm, else debian:bookworm-slim).
# Prints PASS/FAIL lines and "N passed, M failed"; exits 1 on failure.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=/dev/null
source "$here/../checks.sh"
deploy=$(cd "$here/.." && pwd)
image=${PARAPET_IMAGE:-parapet:latest}
base=${BASE_IMAGE:-parapet/debian:bookworm}
docker image inspect "$base" >/dev/null 2>&1 || base=debian:bookworm-slim
ct=parapet-systemd-$$
tmp=$(mktemp -d /tmp/parapet-test-systemd.XXXXXX)
in_ct() { docker exec "$ct" bash -c "$1"; }
cleanup() {
  local rc=$?
  if [ "$failed" -gt 0 ]; then
    echo "--- journal:"; in_ct 'journalctl -u parapet --no-pager | grep -v "\"client_ip\"" | tail -30' || true
  fi
  docker rm -f "$ct" >/dev/null 2>&1 || true
  rm -rf "$tmp"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

nice -n 19 docker build -q --build-arg "BASE_IMAGE=$base" -f "$here/test.Dockerfile" \
  -t parapet/systemd-test:latest "$here" >/dev/null 2>"$tmp/build.log" \
  || { cat "$tmp/build.log"; exit 1; }
docker create --name "$ct-cp" "$image" >/dev/null
docker cp "$ct-cp:/usr/local/bin/parapet" "$tmp/parapet"
docker rm "$ct-cp" >/dev/null

docker run -d --name "$ct" -v /sys/fs/cgroup:/sys/fs/cgroup:ro \
  --tmpfs /run --tmpfs /run/lock --tmpfs /tmp parapet/systemd-test:latest >/dev/null
check "systemd boots in the container" \
  wait_until 30 in_ct 'systemctl is-system-running | grep -Eq "running|degraded"'

# Install as deploy/README.md says.
docker cp "$tmp/parapet" "$ct:/usr/local/bin/parapet"
docker cp "$here/parapet.service" "$ct:/etc/systemd/system/parapet.service"
docker cp "$here/parapet.sysusers" "$ct:/usr/lib/sysusers.d/parapet.conf"
in_ct 'mkdir -p /etc/parapet'
docker cp "$deploy/parapet.yaml" "$ct:/etc/parapet/parapet.yaml"
in_ct 'systemd-sysusers >/dev/null 2>&1 &&
       mkdir -p /srv/www && echo "hello from the origin" > /srv/www/index.html &&
       systemd-run --quiet --unit origin busybox httpd -f -p 127.0.0.1:9001 -h /srv/www &&
       systemctl daemon-reload'
check "systemd-analyze verify parapet.service" in_ct 'systemd-analyze verify /etc/systemd/system/parapet.service'
check "systemctl start parapet" in_ct 'systemctl start parapet && systemctl is-active --quiet parapet'
get() { in_ct 'busybox wget -q -O- http://127.0.0.1:8080/' | grep -q 'hello from the origin'; }
check "serving through to the origin" wait_until 20 get

gen() { # the serving generation: the supervisor's child that is not draining
  in_ct 'journalctl -u parapet --no-pager | sed -n "s/.*started generation pid \([0-9]*\).*/\1/p; s/.*reload: generation pid \([0-9]*\) took over.*/\1/p" | tail -1'
}
export -f in_ct gen get; export ct
main0=$(in_ct 'systemctl show -p MainPID --value parapet')
gen0=$(gen)
# Load: a new connection per request, for 20 s around the reload.
in_ct 'rm -f /tmp/load; ( n=0; f=0; end=$((SECONDS + 20));
  while [ $SECONDS -lt $end ]; do
    if busybox wget -q -O /dev/null http://127.0.0.1:8080/; then n=$((n+1)); else f=$((f+1)); fi
  done; echo "$((n + f)) $f" > /tmp/load ) >/dev/null 2>&1 &'
sleep 1 # let the load start before the reload
check "systemctl reload parapet succeeds" in_ct 'systemctl reload parapet'
check "the new generation took over" \
  wait_until 30 in_ct 'journalctl -u parapet --no-pager | grep -q "took over from pid"'
wait_until 40 in_ct 'test -s /tmp/load' || true
read -r requests failures < <(in_ct 'cat /tmp/load 2>/dev/null || echo "0 -1"')
main1=$(in_ct 'systemctl show -p MainPID --value parapet')
gen1=$(gen)
echo "      MainPID $main0 -> $main1, generation $gen0 -> $gen1, load: $requests requests, $failures failed"
check "MainPID unchanged by the reload ($main1)" test "$main0" = "$main1"
check "generation changed ($gen0 -> $gen1)" test -n "$gen1" -a "$gen1" != "$gen0"
check "at least 300 requests during the reload ($requests)" test "$requests" -ge 300
check "zero failed requests during the reload ($failures)" test "$failures" = 0

in_ct 'cp /etc/parapet/parapet.yaml /tmp/good.yaml && echo "bogus_key: 1" >> /etc/parapet/parapet.yaml'
check "broken config: systemctl reload fails" bash -c '! in_ct "systemctl reload parapet 2>/dev/null"'
check "broken config: error with its YAML path in the journal" \
  in_ct 'journalctl -u parapet --no-pager | grep -q "bogus_key: unknown section"'
check "broken config: still active, same generation, serving" \
  bash -c 'in_ct "systemctl is-active --quiet parapet" && [ "$(gen)" = "$1" ] && get' _ "$gen1"
in_ct 'cp /tmp/good.yaml /etc/parapet/parapet.yaml'

limit=$(in_ct 'systemctl show -p TimeoutStopUSec --value parapet')
t0=$(date +%s)
in_ct 'systemctl stop parapet'
took=$(( $(date +%s) - t0 ))
result=$(in_ct 'systemctl show -p Result --value parapet')
status=$(in_ct 'systemctl show -p ExecMainStatus --value parapet')
check "systemctl stop: Result=$result, exit status $status, ${took}s (TimeoutStopSec $limit)" \
  test "$result" = success -a "$status" = 0 -a "$took" -lt 30
check "systemctl stop: SIGTERM went to the supervisor, which forwarded it" \
  in_ct 'journalctl -u parapet --no-pager | grep -q "stopping, forwarding signal 15"'

echo "test-systemd: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
