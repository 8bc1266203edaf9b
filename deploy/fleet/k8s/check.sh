#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Checks the fleet's Kubernetes manifests without a cluster (as
# deploy/k8s/check.sh does for the single-edge ones):
#   1. every file parses as YAML (python3 + PyYAML); the expected kinds are there
#   2. schema validation with kubernetes-validate --strict, if it is installed
#      (pip install kubernetes-validate); otherwise SKIP
#   3. the pieces agree: fleet.discover.dns names the headless Service (its
#      name, the kustomization's namespace, its port, clusterIP None,
#      publishNotReadyAddresses false); every Service selects a Deployment's
#      pods and targets a named container port; the edges' shield pool names
#      the shield's Service; the fleet secret is the same on both (>= 16
#      characters); 3 edge replicas; the PDB selects the edges and allows one
#      down; readiness on /readyz of the admin port, which is the config's
#      admin address; terminationGracePeriodSeconds >= preStop + drain + 10 s
#   4. the pods as Docker can imitate them (needs parapet:latest and
#      parapet/origin:latest, see deploy/images.sh): each config checked with
#      `parapet -t`; an origin as app.default.svc.cluster.local, the shield as
#      parapet-shield.parapet-fleet.svc.cluster.local, three edges that share
#      the network alias of the headless Service (Docker's DNS answers it with
#      the three addresses, as cluster DNS does for ready pods), run like the
#      pod spec (uid 10001, read-only root, tmpfs emptyDirs, no capabilities,
#      no-new-privileges): each sees a ring of 3, an object goes through the
#      owner and the shield, a purge reaches all 3, and SIGTERM to one edge
#      drains it (exit 0) while the others drop it from their rings.
# Prints PASS/FAIL/SKIP lines and "N passed, M failed"; exits 1 on failure.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../../checks.sh
source "$here/../../checks.sh"
id=parapet-fleet-k8s-$$
tmp=$(mktemp -d /tmp/parapet-fleet-k8s.XXXXXX)
skip() { echo "SKIP: $*"; }
containers=("$id-app" "$id-shield" "$id-edge-a" "$id-edge-b" "$id-edge-c")
cleanup() {
  local rc=$?
  docker rm -f "${containers[@]}" >/dev/null 2>&1 || true
  docker network rm "$id-net" >/dev/null 2>&1 || true
  rm -rf "$tmp"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
files=(namespace.yaml configmap.yaml edge.yaml services.yaml shield.yaml pdb.yaml)

# --- 1. YAML ------------------------------------------------------------------
kinds=$(cd "$here" && python3 - "${files[@]}" <<'EOF'
import sys, yaml
out = []
for f in sys.argv[1:]:
    for d in yaml.safe_load_all(open(f)):
        if d:
            out.append(f"{d['kind']}/{d['metadata']['name']}")
print(" ".join(out))
EOF
) && ok=1 || ok=0
check "YAML parses: $kinds" test "$ok" = 1
for k in Namespace/parapet-fleet ConfigMap/parapet-edge-config ConfigMap/parapet-shield-config \
  Deployment/parapet-edge Deployment/parapet-shield Service/parapet-edge-peers Service/parapet-edge \
  Service/parapet-edge-admin Service/parapet-shield PodDisruptionBudget/parapet-edge; do
  check "has $k" grep -qw "$k" <<<"$kinds"
done
listed=$(python3 -c 'import sys, yaml; print(" ".join(yaml.safe_load(open(sys.argv[1]))["resources"]))' "$here/kustomization.yaml")
check "kustomization.yaml lists every manifest ($listed)" test "$listed" = "${files[*]}"

# --- 2. schemas ---------------------------------------------------------------
kv=${KUBERNETES_VALIDATE:-$(command -v kubernetes-validate || true)}
if [ -n "$kv" ]; then
  out=$(cd "$here" && "$kv" --strict "${files[@]}" 2>&1) && ok=1 || ok=0
  echo "$out" | sed 's/^/      /'
  check "kubernetes-validate --strict" test "$ok" = 1
else
  skip "kubernetes-validate not installed (pip install kubernetes-validate)"
fi

# --- 3. the pieces agree ----------------------------------------------------------
python3 - "$here" >"$tmp/consistency" <<'EOF'
import sys, yaml
d = sys.argv[1]
docs = {}
for f in ["namespace.yaml", "configmap.yaml", "edge.yaml", "services.yaml", "shield.yaml", "pdb.yaml"]:
    for x in yaml.safe_load_all(open(f"{d}/{f}")):
        if x:
            docs[(x["kind"], x["metadata"]["name"])] = x
ns = yaml.safe_load(open(f"{d}/kustomization.yaml"))["namespace"]
conf = {c: yaml.safe_load(docs[("ConfigMap", f"parapet-{c}-config")]["data"]["parapet.yaml"]) for c in ("edge", "shield")}
dep = {c: docs[("Deployment", f"parapet-{c}")] for c in ("edge", "shield")}
pod = {c: dep[c]["spec"]["template"] for c in dep}
out = []
def check(ok, what):
    out.append(f"{1 if ok else 0} {what}")

def selects(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())

def port(c, name):
    return {p["name"]: p["containerPort"] for p in pod[c]["spec"]["containers"][0]["ports"]}.get(name)

for c in dep:
    check(selects(dep[c]["spec"]["selector"]["matchLabels"], pod[c]["metadata"]["labels"]),
          f"Deployment parapet-{c}: its selector matches its pod labels")
    vols = {v["name"]: v for v in pod[c]["spec"]["volumes"]}
    check(vols["config"]["configMap"]["name"] == f"parapet-{c}-config", f"parapet-{c} mounts parapet-{c}-config")
check(dep["edge"]["spec"]["replicas"] == 3, f"3 edge replicas ({dep['edge']['spec']['replicas']})")

# Services: each selects exactly one Deployment's pods, on named ports that exist.
for (kind, name), s in docs.items():
    if kind != "Service":
        continue
    sel = s["spec"]["selector"]
    hits = [c for c in pod if selects(sel, pod[c]["metadata"]["labels"])]
    check(len(hits) == 1, f"Service {name} selects the pods of one Deployment ({hits})")
    for p in s["spec"]["ports"]:
        check(bool(hits) and port(hits[0], p["targetPort"]) is not None,
              f"Service {name}: port {p['port']} -> container port {p['targetPort']!r} exists")

# Peer discovery: fleet.discover.dns is the headless Service.
peers = docs[("Service", "parapet-edge-peers")]
dns = conf["edge"]["fleet"]["discover"]["dns"]
want = f"parapet-edge-peers.{ns}.svc.cluster.local:{peers['spec']['ports'][0]['port']}"
check(dns == want, f"fleet.discover.dns {dns!r} is the headless Service ({want!r})")
check(peers["spec"].get("clusterIP") == "None", "parapet-edge-peers is headless (clusterIP: None)")
check(peers["spec"].get("publishNotReadyAddresses") is False, "parapet-edge-peers: publishNotReadyAddresses: false")
listen = int(conf["edge"]["listeners"][0]["address"].rsplit(":", 1)[1])
check(port("edge", peers["spec"]["ports"][0]["targetPort"]) == listen,
      f"peer hops reach the edges' public listener (:{listen})")
check(any((r.get("cache") or {}).get("fleet") == "shard" for r in conf["edge"]["routes"]), "the edges' routes shard the cache (fleet: shard)")

# The shield.
shield_svc = docs[("Service", "parapet-shield")]
want = f"parapet-shield.{ns}.svc.cluster.local:{shield_svc['spec']['ports'][0]['port']}"
got = [b["address"] for b in conf["edge"]["upstreams"]["shield"]["backends"]]
check(got == [want], f"the edges' shield pool is the shield's Service ({got})")
check(all((r.get("cache") or {}).get("parent") in (None, "shield") for r in conf["edge"]["routes"])
      and any((r.get("cache") or {}).get("parent") == "shield" for r in conf["edge"]["routes"]),
      "the edges' misses go to the shield (cache.parent: shield)")
secrets = {c: conf[c]["fleet"]["secret"] for c in conf}
check(secrets["edge"] == secrets["shield"] and len(secrets["edge"]) >= 16, "one fleet secret (>= 16 characters) on edges and shield")
check(bool(conf["edge"]["admin"].get("token")), "the edges have an admin token (purge)")

# PDB.
pdb = docs[("PodDisruptionBudget", "parapet-edge")]
check(selects(pdb["spec"]["selector"]["matchLabels"], pod["edge"]["metadata"]["labels"])
      and not selects(pdb["spec"]["selector"]["matchLabels"], pod["shield"]["metadata"]["labels"]),
      "the PDB selects the edges only")
check(pdb["spec"].get("maxUnavailable") == 1, "the PDB lets one edge go at a time")

# Probes and the drain.
for c in pod:
    spec = pod[c]["spec"]
    ctr = spec["containers"][0]
    admin = int(conf[c]["admin"]["address"].rsplit(":", 1)[1])
    rp = ctr["readinessProbe"]["httpGet"]
    check(rp["path"] == "/readyz" and port(c, rp["port"]) == admin, f"parapet-{c}: readiness GET /readyz on the admin port ({admin})")
    check(ctr["livenessProbe"]["httpGet"]["path"] == "/healthz", f"parapet-{c}: liveness GET /healthz")
    pre = int(ctr.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", ["sleep", "0"])[-1])
    srv = conf[c].get("server", {})
    need = pre + srv.get("grace_period_seconds", 10) + srv.get("graceful_shutdown_timeout_seconds", 5) + 10
    tgps = spec["terminationGracePeriodSeconds"]
    check(tgps >= need, f"parapet-{c}: terminationGracePeriodSeconds {tgps} >= preStop + drain + 10 s = {need}")
    sc = ctr["securityContext"]
    check(sc.get("readOnlyRootFilesystem") and sc.get("allowPrivilegeEscalation") is False
          and sc.get("capabilities", {}).get("drop") == ["ALL"] and spec["securityContext"].get("runAsNonRoot"),
          f"parapet-{c}: non-root, read-only root, no capabilities, no privilege escalation")
print("\n".join(out))
EOF
while read -r ok what; do
  if [ "$ok" = 1 ]; then pass "$what"; else fail "$what"; fi
done <"$tmp/consistency"

# --- 4. the pods, imitated with Docker ----------------------------------------
if ! docker image inspect parapet:latest parapet/origin:latest >/dev/null 2>&1; then
  skip "pod imitation: parapet:latest / parapet/origin:latest missing (deploy/images.sh)"
  echo "fleet k8s check: $passed passed, $failed failed"
  [ "$failed" -eq 0 ]
  exit
fi
ns=parapet-fleet
for c in edge shield; do
  mkdir -p "$tmp/$c"
  python3 -c 'import sys, yaml
for d in yaml.safe_load_all(open(sys.argv[1])):
    if d["metadata"]["name"] == sys.argv[2]: sys.stdout.write(d["data"]["parapet.yaml"])' \
    "$here/configmap.yaml" "parapet-$c-config" >"$tmp/$c/parapet.yaml"
done
chmod -R a+rX "$tmp"
token=$(python3 -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))["admin"]["token"])' "$tmp/edge/parapet.yaml")
docker network create "$id-net" >/dev/null
docker run -d --name "$id-app" --network "$id-net" --network-alias app.default.svc.cluster.local \
  -e ORIGIN_NAME=app -e ORIGIN_PORT=8080 parapet/origin:latest >/dev/null
wait_until 20 docker exec "$id-app" busybox wget -q -O /dev/null http://127.0.0.1:8080/healthz || true
pod() { # NAME CONFIG-DIR ALIAS: a container run as the pod spec runs the pod
  docker run -d --name "$1" --hostname "${1#"$id-"}" --network "$id-net" --network-alias "$3" \
    --stop-timeout 35 --user 10001:10001 --read-only --cap-drop ALL --security-opt no-new-privileges \
    --tmpfs /run/parapet:uid=10001,gid=10001,mode=0750 --tmpfs /tmp:uid=10001,gid=10001 \
    --tmpfs /var/cache/parapet:uid=10001,gid=10001 \
    -v "$2:/etc/parapet:ro" -p 127.0.0.1::8080 -p 127.0.0.1::9901 \
    parapet:latest run -c /etc/parapet/parapet.yaml >/dev/null
}
check_config() { # DIR ALIAS: parapet -t, with the names the config resolves at load present
  docker run --rm --network "$id-net" -v "$1:/etc/parapet:ro" parapet:latest -t -c /etc/parapet/parapet.yaml
}
out=$(check_config "$tmp/shield" 2>&1) && ok=1 || ok=0
echo "$out" | tail -3 | sed 's/^/      shield -t: /'
check "pods: the shield's config passes parapet -t" test "$ok" = 1
pod "$id-shield" "$tmp/shield" "parapet-shield.$ns.svc.cluster.local"
admin_of() { echo "http://127.0.0.1:$(docker port "$1" 9901/tcp | head -1 | sed 's/.*://')"; }
check "pods: the shield is ready" wait_until 30 curl -fsS -o /dev/null "$(admin_of "$id-shield")/readyz"
out=$(check_config "$tmp/edge" 2>&1) && ok=1 || ok=0
echo "$out" | tail -3 | sed 's/^/      edge -t: /'
check "pods: the edges' config passes parapet -t" test "$ok" = 1
for e in a b c; do pod "$id-edge-$e" "$tmp/edge" "parapet-edge-peers.$ns.svc.cluster.local"; done
ring() { curl -fsS -m 2 "$(admin_of "$1")/metrics" | awk '$1 == "parapet_fleet_ring_members" { print $2 }'; }
ring_is() { [ "$(ring "$1")" = "$2" ]; }
for e in a b c; do
  check "pods: edge-$e ready and its ring has 3 members (the headless Service's A records)" \
    wait_until 45 ring_is "$id-edge-$e" 3
done
port_a=$(docker port "$id-edge-a" 8080/tcp | head -1 | sed 's/.*://')
port_b=$(docker port "$id-edge-b" 8080/tcp | head -1 | sed 's/.*://')
# One Host for every edge, as clients of the Service send: one cache key.
get_cs() { curl -fsS -o "$tmp/body" -D - -H 'Host: www.example' "http://127.0.0.1:$1$2" | tr -d '\r' | awk 'tolower($1) == "cache-status:" { sub(/^[^:]*: */, ""); print }'; }
cs1=$(get_cs "$port_a" /cgi-bin/obj/k8s-check)
echo "      first request, Cache-Status: $cs1"
check "pods: an object goes through (owner, then the shield: parapet-shield first)" \
  bash -c 'grep -q "object k8s-check from app" "$1" && grep -q "^parapet-shield; " <<<"$2"' _ "$tmp/body" "$cs1"
cs2=$(get_cs "$port_b" /cgi-bin/obj/k8s-check)
echo "      through another edge, Cache-Status: $cs2"
check "pods: through another edge it is a hit at its owner" grep -q '; hit' <<<"$cs2"
purge=$(curl -fsS -X POST -H "Authorization: Bearer $token" \
  "$(admin_of "$id-edge-a")/purge?prefix=http%3A%2F%2Fwww.example%2F" 2>&1 || true)
echo "      purge: $purge"
check "pods: a purge on one edge reaches all 3 (ok on each)" python3 -c 'import json, sys
d = json.loads(sys.argv[1]); n = d["nodes"]
sys.exit(0 if len(n) == 3 and all(x["ok"] for x in n) else 1)' "$purge"
t0=$SECONDS
docker stop "$id-edge-c" >/dev/null
code=$(docker inspect -f '{{.State.ExitCode}}' "$id-edge-c")
check "pods: SIGTERM drains an edge, exit 0 (code $code) in $((SECONDS - t0)) s < 35 s" \
  test "$code" = 0 -a "$((SECONDS - t0))" -lt 35
others_dropped_it() { ring_is "$id-edge-a" 2 && ring_is "$id-edge-b" 2; }
check "pods: the other edges' rings drop it (2 members)" wait_until 15 others_dropped_it
echo "fleet k8s check: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
