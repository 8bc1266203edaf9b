#!/usr/bin/env python3
"""Steady load on every edge of a fleet, over a set of objects (stdlib only).

    fleetload.py --edges edge:8080 --set fleet=/cgi-bin/obj/fleet/{i}:300 \\
                 --rate 180 --workers-per-edge 2 --out /out

Resolves --edges (name:port, or a comma-separated list of host:port) once,
at start, to every A record: one record per edge, fixed for the whole run, so
a client of an edge that dies keeps trying it (its errors are reported
apart). Each edge gets --workers-per-edge workers with one keep-alive
connection each (reconnecting after `Connection: close` or an error); the
workers of an edge split the objects between them and go through their part
over and over, each in its own shuffled order, together at --rate requests
per second (spread evenly over the workers, never faster to catch up).

Every request sends `Host: --host` (so that every edge computes the same
cache key) and must answer 200 with a body; anything else (status, reset,
refused, timeout) is an error. One JSON line per request goes to
OUT/requests.jsonl: {"t", "edge", "path", "status" (0 on error), "err",
"cs" (Cache-Status), "ms"}. OUT/cycles has one "EDGE N" line per edge: the
full passes over their part that the slowest of its workers has completed
(clients of a dead edge stall; the others go on). OUT/started appears after
the first 200. Runs until OUT/stop exists or --max-seconds, then prints a
JSON summary per edge. Bounded in time and in rate; meant for a private
network of the caller's own containers.
"""
import argparse
import http.client
import json
import os
import random
import socket
import threading
import time


def resolve(spec):
    edges = []
    for item in spec.split(","):
        host, port = item.rsplit(":", 1)
        addrs = sorted({a[4][0] for a in socket.getaddrinfo(host, int(port), socket.AF_INET, socket.SOCK_STREAM)})
        edges += [(a, int(port)) for a in addrs]
    return edges


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--edges", default="edge:8080")
    ap.add_argument("--set", action="append", default=[], metavar="NAME=TEMPLATE:COUNT",
                    help="objects TEMPLATE.format(i=0..COUNT-1); repeatable")
    ap.add_argument("--host", default="www.example", help="Host header of every request")
    ap.add_argument("--rate", type=float, default=180, help="requests per second, all workers together")
    ap.add_argument("--workers-per-edge", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=5)
    ap.add_argument("--max-seconds", type=float, default=300)
    ap.add_argument("--out", default="/out")
    a = ap.parse_args()

    paths = []
    for s in a.set or ["fleet=/cgi-bin/obj/fleet/{i}:300"]:
        _, rest = s.split("=", 1)
        template, count = rest.rsplit(":", 1)
        paths += [template.format(i=i) for i in range(int(count))]
    edges = resolve(a.edges)
    if not edges:
        raise SystemExit(f"no address for {a.edges}")
    os.makedirs(a.out, exist_ok=True)
    log = open(os.path.join(a.out, "requests.jsonl"), "w", buffering=1 << 16)
    stop_file = os.path.join(a.out, "stop")
    lock = threading.Lock()
    stop = threading.Event()
    nworkers = len(edges) * a.workers_per_edge
    interval = nworkers / a.rate  # seconds between two requests of one worker
    cycles = [0] * nworkers
    summary = {f"{h}:{p}": {"requests": 0, "ok": 0, "errors": {}} for h, p in edges}
    started = [False]
    deadline = time.monotonic() + a.max_seconds

    def record(edge, path, status, err, cs, ms):
        key = f"{edge[0]}:{edge[1]}"
        line = json.dumps({"t": round(time.time(), 3), "edge": key, "path": path, "status": status,
                           "err": err, "cs": cs, "ms": ms})
        with lock:
            log.write(line + "\n")
            s = summary[key]
            s["requests"] += 1
            if err is None:
                s["ok"] += 1
                if not started[0]:
                    started[0] = True
                    open(os.path.join(a.out, "started"), "w").close()
            else:
                s["errors"][err.split(":")[0]] = s["errors"].get(err.split(":")[0], 0) + 1

    def worker(n, edge, part):
        rng = random.Random(n)
        conn = None
        next_at = time.monotonic() + rng.random() * interval
        while not stop.is_set():
            order = part[:]
            rng.shuffle(order)
            for path in order:
                if stop.is_set():
                    break
                now = time.monotonic()
                if next_at > now:
                    time.sleep(next_at - now)
                next_at = max(next_at + interval, time.monotonic() - interval)
                t0 = time.monotonic()
                status, err, cs = 0, None, None
                try:
                    if conn is None:
                        conn = http.client.HTTPConnection(edge[0], edge[1], timeout=a.timeout)
                    conn.request("GET", path, headers={"Host": a.host})
                    resp = conn.getresponse()
                    body = resp.read()
                    status, cs = resp.status, resp.getheader("Cache-Status")
                    if status != 200 or not body:
                        err = f"status {status}: {body[:60]!r}"
                    if resp.will_close:
                        conn.close()
                        conn = None
                except Exception as e:  # refused, reset, timeout, bad status line
                    err = f"{type(e).__name__}: {e}"
                    if conn is not None:
                        conn.close()
                    conn = None
                record(edge, path, status, err, cs, round((time.monotonic() - t0) * 1000, 1))
            else:
                with lock:
                    cycles[n] += 1
                    per_edge = {}
                    for (h, p), c in zip(worker_edges, cycles):
                        per_edge[f"{h}:{p}"] = min(c, per_edge.get(f"{h}:{p}", c))
                    with open(os.path.join(a.out, "cycles.tmp"), "w") as f:
                        f.writelines(f"{e} {c}\n" for e, c in per_edge.items())
                    os.replace(os.path.join(a.out, "cycles.tmp"), os.path.join(a.out, "cycles"))

    def watchdog():
        while not stop.is_set():
            if os.path.exists(stop_file) or time.monotonic() > deadline:
                stop.set()
            time.sleep(0.1)

    threads = [threading.Thread(target=watchdog)]
    worker_edges = []
    for edge in edges:
        for w in range(a.workers_per_edge):
            part = paths[w::a.workers_per_edge]
            threads.append(threading.Thread(target=worker, args=(len(worker_edges), edge, part)))
            worker_edges.append(edge)
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    log.close()
    print(json.dumps({"edges": summary, "objects": len(paths), "workers": nworkers,
                      "seconds": round(time.monotonic() - t0, 1)}))


if __name__ == "__main__":
    main()
