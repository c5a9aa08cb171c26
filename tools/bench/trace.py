#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""tools/bench/trace.py RUNS: the tables of tools/bench/trace.

RUNS has a line per traced run: "TARGET OP OPERATIONS SECONDS FILE", FILE
being `perf script -F tid,time,event,trace` of the kernel's FUSE
tracepoints and (tallyfs) the uprobes probe_tallyfs:FN and FN__return.
Prints one markdown table per operation.
"""
import re
import sys
from collections import defaultdict

LINE = re.compile(r"\s*(\d+)\s+([\d.]+):\s+(\S+?):?\s+(.*)")
SEND = re.compile(r"req (\d+) opcode \d+ \((\w+)\)")
END = re.compile(r"req (\d+)")


def median(v):
    v = sorted(v)
    return v[len(v) // 2] if v else None


def parse(path):
    """Request latencies by kind, reply-to-next-request gaps, and the
    durations of each uprobed function (µs)."""
    sent, reqs, gaps, calls, entered = {}, defaultdict(list), [], \
        defaultdict(list), {}
    last_end = None
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            m = LINE.match(line)
            if not m:
                continue
            tid, t, event, rest = m.groups()
            t = float(t) * 1e6
            name = event.split(":")[-1]
            if name == "fuse_request_send":
                s = SEND.search(rest)
                if s:
                    sent[s.group(1)] = (t, s.group(2).replace("FUSE_", ""))
                    if last_end is not None:
                        gaps.append(t - last_end)
            elif name == "fuse_request_end":
                e = END.search(rest)
                if e and e.group(1) in sent:
                    t0, kind = sent.pop(e.group(1))
                    reqs[kind].append(t - t0)
                last_end = t
            elif name.endswith("__return"):
                fn = name[: -len("__return")]
                t0 = entered.pop((tid, fn), None)
                if t0 is not None:
                    calls[fn].append(t - t0)
            else:
                entered[(tid, name)] = t
    return reqs, gaps, calls


def fmt(x):
    return "-" if x is None else "%.0f" % x


def main():
    runs = defaultdict(list)
    order = []
    with open(sys.argv[1], encoding="utf-8") as f:
        for line in f:
            target, op, nops, secs, path = line.split()
            if op not in runs:
                order.append(op)
            runs[op].append((target, int(nops), float(secs), path))
    for op in order:
        print("### %s\n" % op)
        print("| target | ops/s (traced) | FUSE requests per operation: "
              "kind ×count (median µs, send to reply) | reply to next "
              "request µs | handler µs | commit µs |")
        print("|---|--:|---|--:|--:|--:|")
        for target, nops, secs, path in runs[op]:
            reqs, gaps, calls = parse(path)
            kinds = []
            for kind, v in sorted(reqs.items(), key=lambda kv: -len(kv[1])):
                per = len(v) / nops
                if per >= 0.05:
                    kinds.append("%s ×%.2g (%s)" % (kind, per,
                                                     fmt(median(v))))
            handler = calls.get("tally_" + op)
            commit = calls.get("meta_commit")
            print("| %s | %.0f | %s | %s | %s | %s |" % (
                target, nops / secs if secs else 0, ", ".join(kinds),
                fmt(median(gaps)), fmt(median(handler)) if handler else "-",
                fmt(median(commit)) if commit else "-"))
        print()


if __name__ == "__main__":
    main()
