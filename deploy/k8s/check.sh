#!/usr/bin/env bash
# Checks the Kubernetes manifests without a cluster:
#   1. every file parses as YAML (python3 + PyYAML) and has the expected kinds
#   2. schema validation with kubernetes-validate --strict, if it is installed
#      (pip install kubernetes-validate); otherwise SKIP
#   3. terminationGracePeriodSeconds >= preStop sleep + grace_period_seconds +
#      graceful_shutdown_timeout_seconds + 10 s margin (values read from the files)
#   4. the pod as Docker can imitate it (needs parapet:latest and
#      parapet/origin:latest, see deploy/images.sh): the ConfigMap's config
#      mounted as a kubelet-style directory (..data symlink), read-only root
#      filesystem, emptyDir-like tmpfs for /run/parapet and /tmp, all
#      capabilities dropped, no-new-privileges, uid 10001; the probes' paths
#      answer; a ConfigMap update (atomic ..data swap) + `kill -HUP 1` reloads;
#      SIGTERM drains within terminationGracePeriodSeconds.
# Prints PASS/FAIL/SKIP lines and "N passed, M failed"; exits 1 on failure.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=/dev/null
source "$here/../checks.sh"
id=parapet-k8s-$$
tmp=$(mktemp -d /tmp/parapet-k8s-check.XXXXXX)
skip() { echo "SKIP: $*"; }
cleanup() {
  local rc=$?
  docker rm -f "$id-pod" "$id-app" >/dev/null 2>&1 || true
  docker network rm "$id-net" >/dev/null 2>&1 || true
  rm -rf "$tmp"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- 1. YAML ------------------------------------------------------------------
kinds=$(cd "$here" && python3 - <<'EOF'
import glob, yaml
out = []
for f in sorted(glob.glob("*.yaml")):
    for d in yaml.safe_load_all(open(f)):
        if d:
            out.append(f"{f}:{d['kind']}")
print(" ".join(out))
EOF
) && ok=1 || ok=0
check "YAML parses: $kinds" test "$ok" = 1
for k in ConfigMap Deployment Service PodDisruptionBudget; do
  check "has a $k" grep -q ":$k" <<<"$kinds"
done

# --- 2. schemas ---------------------------------------------------------------
kv=${KUBERNETES_VALIDATE:-$(command -v kubernetes-validate || true)}
if [ -n "$kv" ]; then
  out=$(cd "$here" && "$kv" --strict namespace.yaml configmap.yaml deployment.yaml service.yaml pdb.yaml 2>&1) && ok=1 || ok=0
  echo "$out" | sed 's/^/      /'
  check "kubernetes-validate --strict" test "$ok" = 1
else
  skip "kubernetes-validate not installed (pip install kubernetes-validate)"
fi

# --- 3. termination grace -----------------------------------------------------
python3 - "$here" >"$tmp/grace" <<'EOF'
import sys, yaml
d = sys.argv[1]
dep = yaml.safe_load(open(f"{d}/deployment.yaml"))
cm = yaml.safe_load(open(f"{d}/configmap.yaml"))
conf = yaml.safe_load(cm["data"]["parapet.yaml"])
spec = dep["spec"]["template"]["spec"]
c = spec["containers"][0]
pre = int(c.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", ["sleep", "0"])[-1])
srv = conf.get("server", {})
need = pre + srv.get("grace_period_seconds", 10) + srv.get("graceful_shutdown_timeout_seconds", 5) + 10
print(spec["terminationGracePeriodSeconds"], need, pre)
EOF
read -r tgps need prestop <"$tmp/grace"
check "terminationGracePeriodSeconds $tgps >= preStop + drain + 10 s margin = $need" test "$tgps" -ge "$need"

# --- 4. the pod, imitated with Docker ----------------------------------------
if ! docker image inspect parapet:latest parapet/origin:latest >/dev/null 2>&1; then
  skip "pod imitation: parapet:latest / parapet/origin:latest missing (deploy/images.sh)"
else
  # A kubelet-style ConfigMap volume: parapet.yaml -> ..data/parapet.yaml,
  # ..data -> a timestamped directory swapped atomically on update.
  conf="$tmp/configmap"
  mkdir -p "$conf/..v1"
  python3 -c 'import sys, yaml; sys.stdout.write(yaml.safe_load(open(sys.argv[1]))["data"]["parapet.yaml"])' \
    "$here/configmap.yaml" >"$conf/..v1/parapet.yaml"
  ln -s ..v1 "$conf/..data"
  ln -s ..data/parapet.yaml "$conf/parapet.yaml"
  chmod -R a+rX "$tmp"
  docker network create "$id-net" >/dev/null
  # The ConfigMap's backend, app.default.svc.cluster.local:8080.
  docker run -d --name "$id-app" --network "$id-net" --network-alias app.default.svc.cluster.local \
    -e ORIGIN_NAME=app -e ORIGIN_PORT=8080 parapet/origin:latest >/dev/null
  wait_until 20 docker exec "$id-app" busybox wget -q -O /dev/null http://127.0.0.1:8080/healthz || true
  docker run -d --name "$id-pod" --network "$id-net" --stop-timeout "$((tgps - prestop))" \
    --user 10001:10001 --read-only --cap-drop ALL --security-opt no-new-privileges \
    --tmpfs /run/parapet:uid=10001,gid=10001,mode=0750 --tmpfs /tmp:uid=10001,gid=10001 \
    --tmpfs /var/cache/parapet:uid=10001,gid=10001 \
    -v "$conf:/etc/parapet:ro" -p 127.0.0.1::8080 -p 127.0.0.1::9901 \
    parapet:latest run -c /etc/parapet/parapet.yaml >/dev/null
  port=$(docker port "$id-pod" 8080/tcp | head -1 | sed 's/.*://')
  admin=$(docker port "$id-pod" 9901/tcp | head -1 | sed 's/.*://')
  check "pod: readinessProbe GET /readyz answers 200" wait_until 30 curl -fsS "http://127.0.0.1:$admin/readyz"
  check "pod: livenessProbe GET /healthz answers 200" curl -fsS -o /dev/null "http://127.0.0.1:$admin/healthz"
  check "pod: a request goes through (read-only root, no capabilities)" \
    bash -c 'curl -fsS "$1" | grep -q "hello from app"' _ "http://127.0.0.1:$port/"
  # ConfigMap update: a new version dir and an atomic ..data swap, then HUP.
  mkdir "$conf/..v2"
  sed 's/max_size: 128MiB/max_size: 96MiB/' "$conf/..v1/parapet.yaml" >"$conf/..v2/parapet.yaml"
  chmod -R a+rX "$conf"
  ln -s ..v2 "$conf/..data.tmp" && mv -T "$conf/..data.tmp" "$conf/..data"
  docker exec "$id-pod" bash -c 'kill -HUP 1'
  check "pod: ConfigMap swap + kill -HUP 1: new generation took over" \
    wait_until 30 bash -c 'docker logs "$1" 2>&1 | grep -q "took over from pid"' _ "$id-pod"
  check "pod: serving after the reload" bash -c 'curl -fsS "$1" | grep -q "hello from app"' _ "http://127.0.0.1:$port/"
  t0=$SECONDS
  docker stop "$id-pod" >/dev/null
  code=$(docker inspect -f '{{.State.ExitCode}}' "$id-pod")
  check "pod: SIGTERM drains and exits 0 (code $code) in $((SECONDS - t0)) s < $((tgps - prestop)) s" \
    test "$code" = 0 -a "$((SECONDS - t0))" -lt "$((tgps - prestop))"
fi

echo "k8s check: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
