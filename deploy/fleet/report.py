#!/usr/bin/env python3
"""The numbers of deploy/fleet/test-fleet.sh, from what it collected in DIR:

  requests.jsonl      one line per client request (fleetload.py)
  events.json         node names, the victim, and when it was killed, left
                      the survivors' rings, was started again and rejoined
  fetches-*.txt       "COUNT NAME" per object from both origins (summed), at
                      `before` (just before the kill), `kill` (after the kill,
                      once every surviving edge's clients had requested every
                      object at least twice) and `rejoin` (same after the rejoin)
  fallbacks.json      parapet_fleet_origin_fallbacks_total per survivor,
                      before the kill and after
  purges.jsonl        one fleet purge's JSON answer per line, with "curl_ms"
                      (a purged object that moved while its owner was dead
                      may have two copies: the old owner's and the stand-in's)

Prints the report, then one `CHECK 0|1 DESCRIPTION` line per goal (the
script turns them into PASS/FAIL). Usage: report.py DIR
"""
import json
import math
import os
import sys
from collections import Counter, defaultdict

d = sys.argv[1]
ev = json.load(open(os.path.join(d, "events.json")))
names = ev["names"]  # node (host name) -> replica name
victim = ev["victim"]
label = lambda node: names.get(node, node)


def fetches(tag):
    c = Counter()
    with open(os.path.join(d, f"fetches-{tag}.txt")) as f:
        for line in f:
            count, name = line.split(None, 1)
            if count != "TOTAL":
                c[name.strip()] += int(count)
    return c


def pct(values, p):
    v = sorted(values)
    if not v:
        return float("nan")
    # Nearest rank.
    return v[max(0, min(len(v) - 1, math.ceil(p / 100 * len(v)) - 1))]


checks = []
check = lambda ok, what: checks.append((1 if ok else 0, what))

reqs = [json.loads(line) for line in open(os.path.join(d, "requests.jsonl"))]
fleet_objs = sorted({r["path"] for r in reqs if "/obj/fleet/" in r["path"]})
shield_objs = sorted({r["path"] for r in reqs if "/obj/shield/" in r["path"]})
name_of = lambda path: path.split("/cgi-bin/obj/", 1)[1]
f_before, f_kill, f_rejoin = fetches("before"), fetches("kill"), fetches("rejoin")

print(f"objects: {len(fleet_objs)} sharded (/cgi-bin/obj/fleet/*), {len(shield_objs)} through the shield "
      f"(/cgi-bin/obj/shield/*); {len(reqs)} client requests in {reqs[-1]['t'] - reqs[0]['t']:.0f} s "
      f"over {len(names)} edges")

# --- origin fetches before the kill ---------------------------------------------
def per_object(counter, objs):
    return [counter.get(name_of(p), 0) for p in objs]

fb = per_object(f_before, fleet_objs)
sb = per_object(f_before, shield_objs)
print(f"origin fetches before the kill: sharded objects {sum(fb)} for {len(fb)} objects "
      f"(per object: min {min(fb)}, max {max(fb)}; {Counter(fb)[1]} fetched exactly once); "
      f"through the shield {sum(sb)} for {len(sb)} (max {max(sb)})")
check(max(fb) <= 1 and min(fb) == 1, f"before the kill: every sharded object fetched from the origins once for the whole fleet (max {max(fb)} per object)")
check(max(sb) <= 1 and min(sb) == 1, f"before the kill: every shielded object fetched once (max {max(sb)})")

# --- owners ----------------------------------------------------------------------
def owners(t0, t1):
    """Object -> owner, from the first member of Cache-Status (the owner's)."""
    seen = defaultdict(Counter)
    for r in reqs:
        if t0 <= r["t"] < t1 and r["err"] is None and r["cs"] and "/obj/fleet/" in r["path"]:
            first = r["cs"].split(",")[0].split(";")[0].strip()
            if first.startswith("parapet-"):
                seen[r["path"]][first[len("parapet-"):]] += 1
    return {p: c.most_common(1)[0][0] for p, c in seen.items()}

t_kill, t_excluded, t_restart, t_rejoined = ev["t_kill"], ev["t_excluded"], ev["t_restart"], ev["t_rejoined"]
# Settled windows: after the ring converged, with a second of margin.
own_before = owners(reqs[0]["t"], t_kill)
own_after = owners(t_excluded + 1, t_restart)
own_rejoin = owners(t_rejoined + 1, float("inf"))
share = Counter(own_before.values())
print("owners before the kill: " + ", ".join(f"{label(n)} {c} ({c / len(own_before):.0%})" for n, c in sorted(share.items(), key=lambda x: label(x[0]))))
dead_share = [p for p, o in own_before.items() if o == victim["node"]]
common = [p for p in fleet_objs if p in own_before and p in own_after]
moved = [p for p in common if own_before[p] != own_after[p]]
moved_not_dead = [p for p in moved if own_before[p] != victim["node"]]
n_nodes = len(names)
print(f"owner changes after the kill: {len(moved)} of {len(common)} keys ({len(moved) / max(1, len(common)):.1%}; "
      f"1/N = {1 / n_nodes:.1%}); the dead node {label(victim['node'])} owned {len(dead_share)} "
      f"({len(dead_share) / max(1, len(own_before)):.1%}); keys of live nodes that moved: {len(moved_not_dead)}")
check(len(own_before) == len(fleet_objs) and len(common) == len(fleet_objs), f"owners known for every sharded object ({len(own_before)} before, {len(own_after)} after)")
check(not moved_not_dead and len(moved) == len(dead_share), "only the dead node's keys changed owner")
check(victim["node"] not in own_after.values(), "no object is owned by the dead node after the kill")

# --- origin fetches after the kill ------------------------------------------------
fk = [a - b for a, b in zip(per_object(f_kill, fleet_objs), fb)]
sk = [a - b for a, b in zip(per_object(f_kill, shield_objs), sb)]
fallbacks = ev.get("fallbacks", {})
fb_delta = sum(fallbacks.get("after", {}).values()) - sum(fallbacks.get("before", {}).values())
refetched_dead = sum(1 for p, x in zip(fleet_objs, fk) if x > 0 and p in dead_share)
refetched_other = sum(1 for p, x in zip(fleet_objs, fk) if x > 0 and p not in dead_share)
print(f"origin fetches after the kill: sharded +{sum(fk)} (objects refetched: {refetched_dead} of the dead node's "
      f"{len(dead_share)}, {refetched_other} others; max +{max(fk)} per object; "
      f"origin fallbacks on the survivors: {fb_delta:g}); through the shield +{sum(sk)}")
total_after = per_object(f_kill, fleet_objs)
# A request whose hop to the dead node failed before its edge dropped it from
# the ring went to the origin without storing (a fallback): one more fetch of
# that object on top of its new owner's.
beyond_one = sum(max(0, x - 1) for x in fk)
check(sum(fk) <= len(dead_share) + fb_delta and refetched_other == 0 and beyond_one <= fb_delta,
      f"after the kill: one more fetch per object of the dead node's share, plus the fallbacks "
      f"(+{sum(fk)} <= {len(dead_share)} + {fb_delta:g}; objects of live nodes refetched: {refetched_other}; "
      f"{max(total_after)} fetches max per object in all)")
check(sum(sk) == 0, f"after the kill: the shield absorbed the moved shielded objects (+{sum(sk)} origin fetches)")

# --- client errors ------------------------------------------------------------------
vict_edge = victim["edge"]
surv = [r for r in reqs if r["edge"] != vict_edge]
surv_err = [r for r in surv if r["err"] is not None]
vict = [r for r in reqs if r["edge"] == vict_edge]
vict_err = [r for r in vict if r["err"] is not None]
window = [r for r in surv if t_kill <= r["t"] <= t_excluded + 1]
slow = sorted(r["ms"] for r in window)
print(f"clients of the surviving edges: {len(surv)} requests, {len(surv_err)} errors"
      + (f" ({dict(Counter(r['err'].split(':')[0] for r in surv_err))}; first: {surv_err[0]['err']})" if surv_err else "")
      + f"; from the kill until the rings excluded it: {len(window)} requests, latency p50 {pct(slow, 50)} ms, "
      f"max {slow[-1] if slow else 'n/a'} ms")
kinds = Counter(r["err"].split(":")[0] for r in vict_err)
vict_ok_after = [r for r in vict if r["t"] > t_rejoined and r["err"] is None]
print(f"clients of the killed edge: {len(vict)} requests, {len(vict_err)} errors ({dict(kinds)}), "
      f"{len(vict_ok_after)} answered after it rejoined")
check(not surv_err, f"no client of a surviving edge saw an error ({len(surv)} requests, {len(surv_err)} errors)")

# --- ring ---------------------------------------------------------------------------
print("rings without the dead node: " + ", ".join(
    f"{label(n)} after {t - t_kill:.2f} s" for n, t in sorted(ev["excluded"].items(), key=lambda x: label(x[0]))))
print(f"rejoin: `docker start` to ring 3 on every edge in {t_rejoined - t_restart:.1f} s; "
      f"owners after the rejoin equal those before: "
      f"{sum(1 for p in own_before if own_rejoin.get(p) == own_before[p])} of {len(own_before)}")
fr = [a - b for a, b in zip(per_object(f_rejoin, fleet_objs), per_object(f_kill, fleet_objs))]
srj = [a - b for a, b in zip(per_object(f_rejoin, shield_objs), per_object(f_kill, shield_objs))]
print(f"origin fetches after the rejoin: sharded +{sum(fr)} (the restarted edge starts with an empty cache and "
      f"owns {sum(1 for o in own_rejoin.values() if o == victim['node'])} keys again), through the shield +{sum(srj)}")
if victim["edge_after_restart"] == victim["edge"]:
    check(sum(1 for p in own_before if own_rejoin.get(p) == own_before[p]) == len(own_before),
          "after the rejoin (same address) every key has its old owner again")
else:  # The ring hashes addresses: a new address is a new set of points.
    print(f"  (the restarted edge came back on {victim['edge_after_restart']}, not {victim['edge']}: "
          f"its keys are a new share, not its old one)")

# --- purges ---------------------------------------------------------------------------
path = os.path.join(d, "purges.jsonl")
if os.path.exists(path):
    purges = [json.loads(line) for line in open(path)]
    ms = [n["ms"] for p in purges for n in p.get("nodes", []) if "ms" in n]
    curl = [p["curl_ms"] for p in purges]
    ok = all(n.get("ok") for p in purges for n in p.get("nodes", []))
    nodes = Counter(len(p.get("nodes", [])) for p in purges)
    found = [p.get("purged", 0) + sum(n.get("purged", 0) for n in p.get("nodes", [])[1:]) for p in purges]
    print(f"fleet purges: {len(purges)} (one object each), nodes per answer {dict(nodes)}, copies purged per "
          f"object {dict(Counter(found))}; peer fan-out ms p50 {pct(ms, 50)} p99 {pct(ms, 99)} "
          f"max {max(ms) if ms else 'n/a'} ({len(ms)} peer calls); whole admin request "
          f"p50 {pct(curl, 50):.1f} ms p99 {pct(curl, 99):.1f} ms")
    check(ok and set(nodes) == {n_nodes}, f"every purge answered ok from all {n_nodes} nodes")
    check(min(found) >= 1, "every purge found its object in the fleet")

for ok, what in checks:
    print(f"CHECK {ok} {what}")
