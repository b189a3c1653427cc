#!/usr/bin/env python3
"""Code footprint of one call: the distinct 64-byte lines of machine code a call runs.

Profile the same loop twice under callgrind, with N calls and with 1:

    R=target/release/examples/read_profile
    valgrind --tool=callgrind --dump-instr=yes --compress-pos=no --compress-strings=no \
        --callgrind-out-file=/tmp/fp.1 $R id 1
    valgrind --tool=callgrind --dump-instr=yes --compress-pos=no --compress-strings=no \
        --callgrind-out-file=/tmp/fp.N $R id 20001
    python3 benches/footprint.py /tmp/fp.1 /tmp/fp.N 20000 [ROWS]

The instruction addresses run at least 20,000 more times in the second profile than in the
first are the code every call runs; their distinct `address // 64` values are its cache
lines. A loop whose lines do not fit the instruction cache (32 KiB on most x86 cores) pays
for it in time that instruction counts do not show. ROWS (default 0) lists the functions
holding the most of those lines.
"""
import collections
import sys


def load(path):
    cost = collections.Counter()
    fn_of = {}
    fn = "?"
    last = 0
    after_calls = False
    with open(path) as f:
        for line in f:
            if line.startswith("fn="):
                fn = line[3:].strip()
                continue
            if line.startswith("calls="):
                after_calls = True
                continue
            if line.startswith("0x") or line[:1] in "+-*":
                parts = line.split()
                a = parts[0]
                if a.startswith("0x"):
                    addr = int(a, 16)
                elif a.startswith("+"):
                    addr = last + int(a[1:])
                elif a.startswith("-"):
                    addr = last - int(a[1:])
                else:
                    addr = last
                last = addr
                if after_calls:
                    # The line after `calls=` is the call's inclusive cost, not this address's.
                    after_calls = False
                    continue
                if len(parts) >= 3:
                    cost[addr] += int(parts[2])
                    fn_of[addr] = fn
            else:
                after_calls = False
    return cost, fn_of


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    once, _ = load(sys.argv[1])
    many, fn_of = load(sys.argv[2])
    calls = int(sys.argv[3])
    rows = int(sys.argv[4]) if len(sys.argv) > 4 else 0
    lines = {}
    for addr, n in many.items():
        if n - once.get(addr, 0) >= calls:
            lines.setdefault(addr // 64, set()).add(fn_of[addr])
    print(f"{len(lines)} lines, {len(lines) * 64 / 1024:.1f} KiB per call")
    share = collections.Counter()
    for fns in lines.values():
        for name in fns:
            share[name] += 1 / len(fns)
    for name, n in share.most_common(rows):
        print(f"{n:6.1f}  {name[:120]}")


if __name__ == "__main__":
    main()
