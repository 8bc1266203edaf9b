#!/usr/bin/env python3
"""Reads the callgrind profiles bench/instructions.sh keeps (KEEP=1), per request.

  bench/callgrind.py incl    DIR N [REGEX]   inclusive and self cost of functions
  bench/callgrind.py callees DIR N REGEX     what the matching functions call
  bench/callgrind.py callers DIR N REGEX     who calls the matching functions
  bench/callgrind.py diff    DIR_A N_A DIR_B N_B
                                             self cost per function, B minus A

DIR is one scenario's directory in the work dir (it holds callgrind.out.*),
N the number of counted requests (the script's N). `diff` with the naive
anchor as A and Parapet as B shows where Parapet's own instructions go.
Costs are instructions per request; inclusive costs of recursive functions
are approximate.
"""

import collections
import glob
import os
import re
import sys


def parse(directory):
    """Self cost per function and call cost per (caller, callee)."""
    own = collections.Counter()
    calls = collections.Counter()
    for path in glob.glob(os.path.join(directory, "callgrind.out*")):
        names = {}
        fn = cfn = None
        pending = False

        def name(text):
            m = re.match(r"\((\d+)\)(?:\s+(.*))?$", text.strip())
            if not m:
                return text.strip()
            if m.group(2) is not None:
                names[m.group(1)] = m.group(2)
            return names.get(m.group(1), m.group(1))

        with open(path, errors="replace") as f:
            for line in f:
                if line.startswith("fn="):
                    fn = name(line[3:])
                elif line.startswith("cfn="):
                    cfn = name(line[4:])
                elif line.startswith("calls="):
                    pending = True
                elif line[:1] in "0123456789+-*":
                    parts = line.split()
                    if len(parts) < 2 or not parts[-1].isdigit():
                        continue
                    if pending:
                        calls[(fn, cfn)] += int(parts[-1])
                        pending = False
                    else:
                        own[fn] += int(parts[-1])
    return own, calls


def inclusive(own, calls):
    total = collections.Counter(own)
    for (caller, callee), cost in calls.items():
        if caller != callee:
            total[caller] += cost
    return total


def main(argv):
    if len(argv) < 4:
        sys.exit(__doc__)
    cmd = argv[1]
    if cmd == "diff":
        if len(argv) != 6:
            sys.exit(__doc__)
        own_a, _ = parse(argv[2])
        own_b, _ = parse(argv[4])
        n_a, n_b = float(argv[3]), float(argv[5])
        rows = [(own_b[k] / n_b - own_a[k] / n_a, k) for k in set(own_a) | set(own_b)]
        print(f"{sum(d for d, _ in rows):+9.0f}  total")
        for d, k in sorted(rows, key=lambda r: -abs(r[0]))[:60]:
            print(f"{d:+9.0f}  {own_a[k] / n_a:8.0f} {own_b[k] / n_b:8.0f}  {k}")
        return
    own, calls = parse(argv[2])
    n = float(argv[3])
    rx = re.compile(argv[4] if len(argv) > 4 else "")
    if cmd == "incl":
        for f, c in inclusive(own, calls).most_common():
            if rx.search(f or ""):
                print(f"{c / n:10.0f} {own[f] / n:8.0f}  {f}")
    elif cmd == "callees":
        total = inclusive(own, calls)
        for f in [f for f in total if rx.search(f or "")]:
            print(f"{total[f] / n:10.0f} incl {own[f] / n:8.0f} self  {f}")
            out = sorted(((c, b) for (a, b), c in calls.items() if a == f and b != f), reverse=True)
            for c, b in out[:25]:
                print(f"    {c / n:10.0f}  {b}")
    elif cmd == "callers":
        rows = sorted(((c, b, a) for (a, b), c in calls.items() if b and rx.search(b)), reverse=True)
        for c, b, a in rows[:40]:
            print(f"{c / n:10.0f}  {b}  <-  {a}")
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    try:
        main(sys.argv)
    except BrokenPipeError:
        pass
