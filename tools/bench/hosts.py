#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The measuring half of tools/bench/hosts (which starts PostgreSQL and
the S3 server, mounts, and unmounts and stops everything whatever
happens; run that, not this). Its helpers (run, log, median, fmt_rate,
fmt_secs, fmt_count) are those of bench.py.

meta      the metadata operations of one process in a loop (benchtool),
          on a store whose metadata is in SQLite and on one whose metadata
          is in PostgreSQL, the engines taking turns, RUNS rounds; then
          the round trips to PostgreSQL per operation (the daemon's
          sendto() calls, counted by strace -c over TRIPS_OPS of each).
nodes     creates by 1..NODES mounts of one PostgreSQL store at once,
          each in its own directory (a start barrier: their loops overlap).
converge  a create, then a rename, on node A, polled for on node B.

Medians (and p99) go to stdout as markdown tables, every sample to
stderr.
"""

import argparse
import datetime
import math
import os
import platform
import signal
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402 (the helpers of tools/bench/run)
from bench import fmt_count, fmt_rate, fmt_secs, log, median  # noqa: E402

# JuiceFS's "Golang Benchmark" of its metadata engines, PostgreSQL 15.3
# column, µs per operation: docs/en/benchmark/metadata_engines_benchmark.md
# in juicedata/juicefs (JuiceFS 1.1.0-beta1, the engine on its own
# c5d.xlarge, the client a c5.xlarge; calls into its metadata layer, no
# FUSE). readdir is readdir_1k: a listing of 1000 entries.
JUICEFS_PG_US = {
    "create": 844,
    "stat": 350,      # getattr (lookup: 375)
    "readdir": 18414,  # readdir_1k
    "link": 1375,
    "unlink": 1280,
    "mkdir": 1076,
    "rmdir": 1697,
}


TRIPS_OPS = 200  # operations of each kind whose round trips are counted


def daemon_pid(mnt):
    """The pid of the tallyfs daemon serving mountpoint @mnt."""
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % d, "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"tallyfs") and mnt.encode() in argv:
            return int(d)
    raise RuntimeError("no tallyfs daemon serves %s" % mnt)


def p99(xs):
    """Nearest rank: the smallest sample with 99 % of them at or below."""
    if not xs:
        return None
    s = sorted(xs)
    return s[max(0, math.ceil(0.99 * len(s)) - 1)]


def fmt_ms(s):
    if s is None:
        return "–"
    ms = s * 1e3
    if ms >= 100:
        return "%.0f ms" % ms
    if ms >= 10:
        return "%.1f ms" % ms
    return "%.2f ms" % ms


def fmt_us(s):
    if s is None:
        return "–"
    us = s * 1e6
    return "%.0f" % us if us >= 100 else "%.1f" % us


class Hosts:
    def __init__(self, a):
        self.a = a
        self.samples = {}  # key -> [values]
        self.out = []      # markdown, printed at the end
        self.notes = []
        self.load = os.getloadavg()  # at the start: the machine's noise

    # -- helpers

    def add(self, key, value):
        self.samples.setdefault(key, []).append(value)

    def med(self, key):
        return median(self.samples.get(key, []))

    def tool(self, *args):
        f = bench.run([self.a.tool] + [str(x) for x in args]).split()
        return int(f[0]), float(f[1])

    def ctl(self, mnt, command):
        fd = os.open(os.path.join(mnt, ".tally", "ctl"), os.O_RDWR)
        try:
            os.write(fd, (command + "\n").encode())
        finally:
            os.close(fd)

    def settle(self, mnts, drop):
        """What the mounts buffer committed, dirty pages written back,
        and (drop) the page, dentry and inode caches emptied."""
        for m in mnts:
            self.ctl(m, "drain")
        os.sync()
        if drop:
            with open("/proc/sys/vm/drop_caches", "w") as f:
                f.write("3\n")

    @staticmethod
    def rotate(xs, r):
        k = r % len(xs)
        return xs[k:] + xs[:k]

    def wait_visible(self, path, timeout=30):
        end = time.monotonic() + timeout
        while not os.path.exists(path):
            if time.monotonic() > end:
                raise RuntimeError("%s did not appear in %d s" % (path, timeout))
            time.sleep(0.01)

    def remove_trees(self, dirs, via, names):
        """Empty each directory through the mount that filled it, all at
        once, then remove them, via/bench/NAME, through the mount `via`
        alone (untimed)."""
        procs = [subprocess.Popen(["find", d, "-mindepth", "1", "-delete"])
                 for d in dirs]
        for p in procs:
            if p.wait() != 0:
                raise RuntimeError("find -delete failed")
        for name in names:
            os.rmdir(os.path.join(via, "bench", name))

    # -- 1. metadata operations, SQLite against PostgreSQL

    OPS = [
        ("create", "create+close %s empty files"),
        ("stat", "stat %s files (cold)"),
        ("readdir", "readdir of %s entries (cold; entries/s)"),
        ("link", "hard link %s files"),
        ("unlink", "unlink %s links + %s files"),
        ("mkdir", "mkdir %s directories"),
        ("rmdir", "rmdir %s directories"),
    ]

    def meta(self):
        a = self.a
        n = a.files
        engines = [("sqlite", a.sqlite_mnt), ("postgres", a.pg_mnts[0])]
        log("metadata: %d files, SQLite vs PostgreSQL, %d round(s)" % (n, a.runs))
        for r in range(a.runs):
            for name, mnt in self.rotate(engines, r):
                d = os.path.join(mnt, "bench", "meta%d" % r)
                os.mkdir(d)
                for op, _ in self.OPS:
                    self.settle([mnt], drop=op in ("stat", "readdir"))
                    if op == "readdir":
                        k, s = self.tool("readdir", d, 1)
                        if k != n:
                            raise RuntimeError("%s: listed %d entries of %d" % (name, k, n))
                        self.add("meta.%s.%s.listing" % (op, name), s)
                    else:
                        k, s = self.tool(op, d, 0, n)
                    self.add("meta.%s.%s" % (op, name), k / s)
                    log("  round %d/%d  %-8s %-7s %s"
                        % (r + 1, a.runs, name, op, fmt_rate(k / s, "ops/s")))
                self.settle([mnt], drop=False)
                os.rmdir(d)

        c = fmt_count(n)
        self.out.append("| operation, one directory | SQLite | PostgreSQL "
                        "| PostgreSQL / SQLite | PostgreSQL µs per op "
                        "| JuiceFS PostgreSQL µs per op | JuiceFS µs / tallyfs µs |")
        self.out.append("|---|--:|--:|--:|--:|--:|--:|")
        for op, label in self.OPS:
            label = label % ((c, c) if op == "unlink" else (c,))
            sq = self.med("meta.%s.sqlite" % op)
            pg = self.med("meta.%s.postgres" % op)
            jfs = JUICEFS_PG_US[op]
            if op == "readdir":
                # per 1000 entries, as JuiceFS's readdir_1k
                lat = self.med("meta.readdir.postgres.listing") / n * 1000
                lat_s = fmt_us(lat) + " per 1000"
                jfs_s = "%d per 1000" % jfs
            else:
                lat = 1 / pg
                lat_s = fmt_us(lat)
                jfs_s = "%d" % jfs
            self.out.append("| %s | %s | %s | %.2f | %s | %s | %.2f |"
                            % (label, fmt_rate(sq, "ops/s"), fmt_rate(pg, "ops/s"),
                               pg / sq, lat_s, jfs_s, jfs / (lat * 1e6)))
        self.out.append("")
        self.notes.append(
            "Metadata: one process, one system call at a time (benchtool), "
            "so a PostgreSQL µs per op is 1 / its rate; medians of %d "
            "rounds, the engines taking turns; `drain`, `sync` before each "
            "operation and `drop_caches` before stat and readdir. The "
            "unlink rate counts both unlinks (a link's, then the file's "
            "last). Both mounts with `entry_timeout=%s,attr_timeout=%s` "
            "(the default with meta=). JuiceFS's figures are its Go "
            "benchmark of the metadata layer (no FUSE, no kernel), "
            "PostgreSQL 15.3 on a host of its own (c5d.xlarge, 4 vCPUs, "
            "local SSD), from docs/en/benchmark/metadata_engines_benchmark.md "
            "in juicedata/juicefs (stat against its getattr, readdir "
            "against readdir_1k); here the engine, the daemons and the "
            "benchmark share %d vCPUs and a loopback connection."
            % (self.a.runs, self.a.timeout, self.a.timeout, os.cpu_count()))
        self.trips()

    def trips(self):
        """Round trips to PostgreSQL per operation: the sendto() calls
        of node 1's daemon (every thread) while benchtool runs
        TRIPS_OPS of each operation; the kernel's lookups included."""
        mnt = self.a.pg_mnts[0]
        pid = daemon_pid(mnt)
        d = os.path.join(mnt, "bench", "trips")
        os.mkdir(d)
        out = os.path.join(os.environ.get("TMPDIR", "/tmp"), "trips.strace")
        rows = []
        for op, _ in self.OPS:
            if op == "readdir":
                continue
            self.settle([mnt], drop=False)
            time.sleep(1.5)  # the kernel's entries expire (1 s)
            st = subprocess.Popen(["strace", "-f", "-qq", "-c", "-e",
                                   "trace=sendto", "-o", out, "-p", str(pid)],
                                  stderr=subprocess.DEVNULL)
            time.sleep(0.5)  # attached to every thread
            k, _ = self.tool(op, d, 0, TRIPS_OPS)
            time.sleep(0.3)
            st.send_signal(signal.SIGINT)
            st.wait()
            calls = 0
            with open(out) as f:
                for line in f:
                    w = line.split()
                    if w and w[-1] == "sendto":
                        calls = int(w[3])
            rows.append((op, calls / k))
            log("  round trips  %-7s %.2f per op" % (op, calls / k))
        self.settle([mnt], drop=False)
        subprocess.run(["rm", "-rf", d], check=True)
        self.out.append("| operation | round trips to PostgreSQL per operation |")
        self.out.append("|---|--:|")
        for op, t in rows:
            self.out.append("| %s | %.2f |" % (op, t))
        self.out.append("")
        self.notes.append(
            "Round trips: the sendto() calls of the daemon (strace -c, "
            "every thread) while benchtool made %d of each operation, the "
            "kernel's lookups included (its entries expired first); an "
            "unlink's figure is the mean of a link's and a file's last "
            "unlink. A count, not a time: the same on a busy machine."
            % TRIPS_OPS)

    # -- 2. creates by 1..NODES nodes at once

    def nodes_one(self, label, key, mnts, files, fbytes):
        a = self.a
        counts = list(range(1, len(mnts) + 1))
        log("nodes: %s, %d files per node, 1..%d nodes, %d round(s)"
            % (label, files, len(mnts), a.runs))
        for r in range(a.runs):
            for k in self.rotate(counts, r):
                used = mnts[:k]
                names = ["%s-%d-%d-%d" % (key, r, k, i) for i in range(k)]
                # the directories are made (and removed) by node 1 alone:
                # the workload is the creates (mkdir and rmdir by several
                # nodes in one parent at once lost updates of its link
                # count before cd2f8ca)
                for name in names:
                    os.mkdir(os.path.join(mnts[0], "bench", name))
                dirs = [os.path.join(m, "bench", name)
                        for m, name in zip(used, names)]
                for d in dirs:
                    self.wait_visible(d)
                self.settle(mnts, drop=False)
                env = dict(os.environ)
                env["BENCHTOOL_START"] = "%.6f" % (time.time() + 0.2 + 0.05 * k)
                if fbytes:
                    env["BENCHTOOL_FILE_BYTES"] = str(fbytes)
                procs = [subprocess.Popen([a.tool, "create", d, "0", str(files)],
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                          text=True, env=env)
                         for d in dirs]
                res = []
                try:
                    for p, d in zip(procs, dirs):
                        out, err = p.communicate()
                        if p.returncode != 0:
                            raise RuntimeError("create in %s failed: %s" % (d, err.strip()))
                        f = out.split()
                        res.append((int(f[0]), float(f[1])))
                except BaseException:
                    for p in procs:
                        if p.poll() is None:
                            p.kill()
                            p.wait()
                    raise
                total = sum(o for o, _ in res) / max(s for _, s in res)
                per = [o / s for o, s in res]
                self.add("nodes.%s.%d.total" % (key, k), total)
                for x in per:
                    self.add("nodes.%s.%d.node" % (key, k), x)
                log("  round %d/%d  %d node(s): %s in all; per node %s"
                    % (r + 1, a.runs, k, fmt_rate(total, "creates/s"),
                       ", ".join(fmt_rate(x, "/s") for x in per)))
                self.settle(mnts, drop=False)
                self.remove_trees(dirs, mnts[0], names)
        one = self.med("nodes.%s.1.total" % key)
        for k in counts:
            tot = self.med("nodes.%s.%d.total" % (key, k))
            per = self.samples["nodes.%s.%d.node" % (key, k)]
            self.out.append("| %s | %d | %s | %s | %s–%s | %.2f |"
                            % (label, k, fmt_rate(tot, "/s"),
                               fmt_rate(median(per), "/s"),
                               fmt_rate(min(per), "/s").split()[0],
                               fmt_rate(max(per), "/s"), tot / one))

    def nodes(self):
        a = self.a
        self.out.append("| files | nodes | creates/s, all nodes | per node "
                        "(median) | per node (min–max) | all / 1 node |")
        self.out.append("|---|--:|--:|--:|--:|--:|")
        self.nodes_one("%s empty, no bucket" % fmt_count(a.files), "empty",
                       a.pg_mnts, a.files, 0)
        if a.remote_mnts:
            b = a.remote_bytes
            what = "%s of %d bytes" % (fmt_count(a.remote_files), b)
            self.nodes_one(what + ", no bucket", "data", a.pg_mnts,
                           a.remote_files, b)
            self.nodes_one(what + ", bucket", "bucket", a.remote_mnts,
                           a.remote_files, b)
        self.out.append("")
        self.notes.append(
            "Nodes: 1 to %d mounts of one PostgreSQL store on this machine, "
            "each with its own cache directory and mountpoint, each creating "
            "its files in a directory of its own, one process per node, all "
            "started at the same instant (a start barrier); creates/s of all "
            "nodes = all files / the longest node's time. Medians of %d "
            "rounds, the node counts taking turns; the files are removed "
            "(untimed) after each round; the nodes' directories are made "
            "and removed (untimed) by node 1.%s"
            % (len(a.pg_mnts), a.runs,
               " With a bucket (s3rver on 127.0.0.1) a file's object is "
               "uploaded before its commit, and its close waits for that "
               "commit." if a.remote_mnts else ""))

    # -- 3. convergence

    def converge(self):
        a = self.a
        ma, mb = a.pg_mnts[0], a.pg_mnts[1]
        da = os.path.join(ma, "bench", "converge")
        os.mkdir(da)
        db = os.path.join(mb, "bench", "converge")
        self.wait_visible(db)
        log("convergence: %d probes, node A creates then renames, node B "
            "polls every %g ms" % (a.probes, a.poll_ms))
        out = bench.run([a.tool, "converge", da, db, str(a.probes),
                         str(int(a.poll_ms * 1000)), str(a.probe_timeout)])
        cols = {"create": [], "appear": [], "rename": [], "new": [], "old": []}
        missed = {k: 0 for k in cols}
        for line in out.splitlines():
            for k, v in zip(("create", "appear", "rename", "new", "old"),
                            map(float, line.split())):
                if v < 0:
                    missed[k] += 1
                else:
                    cols[k].append(v)
        n = len(out.splitlines())
        log("  appear (ms): " + " ".join("%.1f" % (x * 1e3) for x in cols["appear"]))
        log("  old name gone (ms): " + " ".join("%.0f" % (x * 1e3) for x in cols["old"]))
        self.out.append("| node A changes, node B sees (%d probes) | median | p99 "
                        "| max | not seen in %d s |" % (n, a.probe_timeout))
        self.out.append("|---|--:|--:|--:|--:|")
        rows = [
            ("appear", "create on A (from its close) → stat on B finds the name"),
            ("new", "rename on A (from its return) → stat on B finds the new name"),
            ("old", "rename on A (from its return) → stat on B no longer finds the old name"),
            ("create", "the create+close on A itself"),
            ("rename", "the rename on A itself"),
        ]
        for k, label in rows:
            xs = cols[k]
            self.out.append("| %s | %s | %s | %s | %d |"
                            % (label, fmt_ms(median(xs)), fmt_ms(p99(xs)),
                               fmt_ms(max(xs) if xs else None), missed[k]))
        self.out.append("")
        self.notes.append(
            "Convergence: two mounts (A, B) of one PostgreSQL store, "
            "`entry_timeout=%s,attr_timeout=%s`; B stats the name every "
            "%g ms. B looked the old name up just before the rename (it "
            "had been polling for it), so the old name lives on B as long "
            "as the kernel keeps that entry: the worst case of the entry "
            "timeout. A name B has never seen is not cached (a lookup that "
            "fails is asked again every time). p99 is the nearest rank "
            "(of %d probes: the largest but %d)."
            % (a.timeout, a.timeout, a.poll_ms, n, n - math.ceil(0.99 * n)))

    # -- output

    def header(self):
        a = self.a
        date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        try:
            rev = bench.run(["git", "-C", a.src_top, "describe", "--always",
                             "--dirty"]).strip()
        except Exception:
            rev = "?"
        distro = bench.distro_name()
        what = ["%d files" % a.files, "%d round(s)" % a.runs]
        if a.remote_mnts:
            what.append("with a bucket %d files of %d bytes per node"
                        % (a.remote_files, a.remote_bytes))
        if "converge" in a.only.split(","):
            what.append("%d probes" % a.probes)
        if a.tally_opts:
            what.append("tallyfs -o " + a.tally_opts)
        return ("tools/bench/hosts at %s, %s: nproc %d (load %.2f %.2f "
                "%.2f at the start), %s, kernel %s; %s on 127.0.0.1 (fsync "
                "on); %s"
                % (rev, date, os.cpu_count(), self.load[0], self.load[1],
                   self.load[2], distro, platform.release(), a.pg_version,
                   ", ".join(what)))


def main():
    signal.signal(signal.SIGTERM, bench.on_term)
    signal.signal(signal.SIGHUP, bench.on_term)
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--tool", required=True)
    p.add_argument("--sqlite-mnt")
    p.add_argument("--pg-mnts", required=True, help="comma-separated")
    p.add_argument("--remote-mnts", default="", help="comma-separated")
    p.add_argument("--files", type=int, default=10000)
    p.add_argument("--remote-files", type=int, default=1000)
    p.add_argument("--remote-bytes", type=int, default=4096)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--probes", type=int, default=50)
    p.add_argument("--poll-ms", type=float, default=1)
    p.add_argument("--probe-timeout", type=int, default=10)
    p.add_argument("--timeout", default="1")
    p.add_argument("--only", default="meta,nodes,converge")
    p.add_argument("--pg-version", default="PostgreSQL")
    p.add_argument("--tally-opts", default="")
    p.add_argument("--src-top", default=".")
    a = p.parse_args()
    a.pg_mnts = a.pg_mnts.split(",")
    a.remote_mnts = [m for m in a.remote_mnts.split(",") if m]
    h = Hosts(a)
    t0 = time.perf_counter()
    groups = a.only.split(",")
    for g in ("meta", "nodes", "converge"):
        if g in groups:
            getattr(h, g)()
    log("done in %s" % fmt_secs(time.perf_counter() - t0))
    print(h.header())
    print()
    print("\n".join(h.out))
    for n in h.notes:
        print("* " + n)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
