#!/usr/bin/env python3
"""Small HTTP load loop for the deploy tests (stdlib only).

    loadgen.py URL --workers 4 --max-seconds 60 --max-requests 100000 --stop-file F

Half the workers keep one keep-alive connection (http.client, reconnecting
when the server says `Connection: close`), half open a new connection per
request. Every request must answer 200 with a body; anything else (status,
reset, timeout) is a failure. Runs until the stop file exists, or a bound is
reached, then prints one JSON line: {"requests", "ok", "failures",
"errors": {kind: count}, "seconds", "first_errors": [...]}.

Bounded in time and count; meant for 127.0.0.1 (published container ports).
"""
import argparse
import http.client
import json
import os
import threading
import time
import urllib.parse


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--max-seconds", type=float, default=60)
    ap.add_argument("--max-requests", type=int, default=100_000)
    ap.add_argument("--stop-file", default=None)
    ap.add_argument("--started-file", default=None, help="touched after the first OK response")
    ap.add_argument("--timeout", type=float, default=5)
    a = ap.parse_args()

    u = urllib.parse.urlsplit(a.url)
    host, port = u.hostname, u.port or 80
    path = (u.path or "/") + (("?" + u.query) if u.query else "")
    lock = threading.Lock()
    stats = {"requests": 0, "ok": 0, "failures": 0, "errors": {}, "first_errors": []}
    deadline = time.monotonic() + a.max_seconds
    stop = threading.Event()

    def record(ok, kind=None, detail=None):
        with lock:
            stats["requests"] += 1
            if ok:
                stats["ok"] += 1
                if stats["ok"] == 1 and a.started_file:
                    open(a.started_file, "w").close()
            else:
                stats["failures"] += 1
                stats["errors"][kind] = stats["errors"].get(kind, 0) + 1
                if len(stats["first_errors"]) < 10:
                    stats["first_errors"].append(f"{time.strftime('%H:%M:%S')} {kind}: {detail}")
            if stats["requests"] >= a.max_requests:
                stop.set()

    def worker(keepalive):
        conn = None
        while not stop.is_set():
            if time.monotonic() > deadline or (a.stop_file and os.path.exists(a.stop_file)):
                stop.set()
                break
            try:
                if conn is None or not keepalive:
                    if conn is not None:
                        conn.close()
                    conn = http.client.HTTPConnection(host, port, timeout=a.timeout)
                conn.request("GET", path)
                resp = conn.getresponse()
                body = resp.read()
                if resp.status == 200 and body:
                    record(True)
                else:
                    record(False, f"status {resp.status}", body[:80])
                if resp.will_close:
                    conn.close()
                    conn = None
            except Exception as e:  # reset, refused, timeout, bad status line
                record(False, type(e).__name__, e)
                if conn is not None:
                    conn.close()
                conn = None
        if conn is not None:
            conn.close()

    threads = [threading.Thread(target=worker, args=(i % 2 == 0,)) for i in range(a.workers)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stats["seconds"] = round(time.monotonic() - t0, 2)
    print(json.dumps(stats))


if __name__ == "__main__":
    main()
