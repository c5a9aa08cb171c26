#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The measuring half of tools/bench/run (which installs, builds, mounts,
and unmounts whatever happens; run that, not this).

Targets: tallyfs, passthrough_ll and a native directory, all on one disk.
Each workload runs RUNS times on each target, the targets alternating in a
rotating order; the medians and the ratios tallyfs/native and
tallyfs/passthrough_ll go to stdout as a markdown table, progress and every
sample to stderr. Every figure is "higher is better" except the times of
the tallyfs-only table.
"""

import argparse
import datetime
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import time

MIB = 1 << 20
CHILD = None  # the subprocess being waited for, killed if we are


def on_term(signum, frame):
    raise SystemExit(128 + signum)


def log(msg):
    print("bench: " + msg, file=sys.stderr, flush=True)


def run(cmd):
    """Run cmd, return its stdout; any failure raises."""
    global CHILD
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    CHILD = p
    try:
        out, err = p.communicate()
    except BaseException:
        p.kill()
        p.wait()
        raise
    finally:
        CHILD = None
    if p.returncode != 0:
        raise RuntimeError("%s failed (exit %d): %s"
                           % (" ".join(cmd), p.returncode, err.strip()))
    return out


# ------------------------------------------------------------- formatting

def distro_name():
    """PRETTY_NAME of /etc/os-release, or "" (the machine of a report)."""
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return ""


def fmt_rate(v, unit):
    if v is None:
        return "–"
    if v >= 1e5:
        s = "%.0fk" % (v / 1e3)
    elif v >= 1e4:
        s = "%.1fk" % (v / 1e3)
    elif v >= 100:
        s = "%.0f" % v
    else:
        s = "%.3g" % v
    return "%s %s" % (s, unit)


def fmt_secs(s):
    if s < 1e-3:
        return "%.0f µs" % (s * 1e6)
    if s < 1:
        return "%.3g ms" % (s * 1e3)
    return "%.3g s" % s


def fmt_size(b):
    if b >= (1 << 30) and b % (1 << 30) == 0:
        return "%d GiB" % (b >> 30)
    if b >= MIB and b % MIB == 0:
        return "%d MiB" % (b // MIB)
    if abs(b) >= (1 << 30):
        return "%.2f GiB" % (b / (1 << 30))
    return "%.1f MiB" % (b / MIB)


def fmt_count(n):
    if n >= 1000 and n % 1000 == 0:
        return "%dk" % (n // 1000)
    return str(n)


def median(xs):
    return statistics.median(xs) if xs else None


# ------------------------------------------------------------------ bench

class Bench:
    def __init__(self, a):
        self.a = a
        self.tool = a.tool
        self.tmnt = a.tallyfs_mnt
        # the tallyfs mounts: this tree's daemon, and --baseline's
        self.tally_mnts = {"tallyfs": a.tallyfs_mnt}
        if a.baseline_mnt:
            self.tally_mnts["baseline"] = a.baseline_mnt
        self.targets = [
            ("tallyfs", os.path.join(a.tallyfs_mnt, "bench")),
            ("passthrough_ll", os.path.join(a.passthrough_mnt, "bench")),
            ("native", os.path.join(a.native, "bench")),
        ]
        if a.baseline_mnt:
            self.targets.insert(1, ("baseline",
                                    os.path.join(a.baseline_mnt, "bench")))
        for _, d in self.targets:
            os.mkdir(d)
        # --branches: on each tallyfs mount, the workloads run in the
        # namespace at the end of a chain of branches of "bench"
        if a.branches:
            for i, (name, d) in enumerate(self.targets):
                if name not in self.tally_mnts:
                    continue
                src = "bench"
                for k in range(1, a.branches + 1):
                    dst = "bench-b%d" % k
                    # a refused command fails its write (OSError)
                    self.ctl("branch %s %s" % (src, dst),
                             self.tally_mnts[name])
                    src = dst
                self.targets[i] = (name,
                                   os.path.join(self.tally_mnts[name], src))
        # --snapshots: on this tree's tallyfs mount, the workloads run in
        # "bench" after that many snapshots of it, each over a version
        # that wrote rows of its own (a file made in .chain, the one
        # before changed), the files removed after the last: a chain of
        # versions over whiteouts (docs/design.md, section 13)
        if a.snapshots:
            d = dict(self.targets)["tallyfs"]
            chain = os.path.join(d, ".chain")
            os.mkdir(chain)
            for k in range(a.snapshots):
                with open(os.path.join(chain, "f%d" % k), "w") as f:
                    f.write("%d\n" % k)
                if k:
                    os.chmod(os.path.join(chain, "f%d" % (k - 1)), 0o640)
                self.ctl("snapshot %s s%d" % (os.path.basename(d), k),
                         self.tmnt)
            for k in range(a.snapshots):
                os.unlink(os.path.join(chain, "f%d" % k))
        self.seq_bytes = a.size_mib * MIB
        self.rand_bytes = a.rand_mib * MIB
        self.can_drop = self._try_drop()
        self.rows = []      # (key, label, unit)
        self.samples = {}   # key -> target -> [values]
        self.tally_rows = []  # (label, text)
        self.notes = []

    # -- helpers

    def _try_drop(self):
        try:
            os.sync()
            with open("/proc/sys/vm/drop_caches", "w") as f:
                f.write("3\n")
            return True
        except OSError as e:
            log("cannot drop the page cache (%s): reads will be warm" % e)
            return False

    def ctl(self, command, mnt=None):
        """Write one command to /.tally/ctl of @mnt (this tree's tallyfs
        by default); return (seconds, report)."""
        fd = os.open(os.path.join(mnt or self.tmnt, ".tally", "ctl"),
                     os.O_RDWR)
        try:
            t0 = time.perf_counter()
            os.write(fd, (command + "\n").encode())
            t1 = time.perf_counter()
            text = os.pread(fd, 65536, 0).decode(errors="replace")
        finally:
            os.close(fd)
        report = {}
        for line in text.splitlines():
            k, sep, v = line.partition(":")
            if sep:
                report[k.strip()] = v.strip()
        return t1 - t0, report

    def status(self):
        with open(os.path.join(self.tmnt, ".tally", "status")) as f:
            return json.load(f)

    def settle(self, drop=True):
        """Let no earlier work spill into the next measurement: commit what
        tallyfs buffers, write back every dirty page, and (drop) empty the
        page, dentry and inode caches."""
        for mnt in self.tally_mnts.values():
            self.ctl("drain", mnt)
        os.sync()
        if drop and self.can_drop:
            with open("/proc/sys/vm/drop_caches", "w") as f:
                f.write("3\n")

    def order(self, r):
        k = r % len(self.targets)
        return self.targets[k:] + self.targets[:k]

    def tool_run(self, *args):
        out = run([self.tool] + [str(x) for x in args]).split()
        return int(out[0]), float(out[1])

    def row(self, key, label, unit):
        self.rows.append((key, label, unit))
        self.samples[key] = {name: [] for name, _ in self.targets}

    def record(self, key, target, value, r, unit):
        self.samples[key][target].append(value)
        log("  %-10s run %d/%d  %-14s %s"
            % (key, r + 1, self.a.runs, target, fmt_rate(value, unit)))

    def unlink_all(self, name):
        for _, d in self.targets:
            p = os.path.join(d, name)
            if os.path.lexists(p):
                os.unlink(p)

    # -- workloads

    def seq(self):
        a = self.a
        cold = "cold" if self.can_drop else "warm"
        self.row("seqwrite", "sequential write %s + fsync" % fmt_size(self.seq_bytes),
                 "MB/s")
        self.row("seqread", "sequential read %s (%s)" % (fmt_size(self.seq_bytes), cold),
                 "MB/s")
        log("sequential write, %s, %d run(s)" % (fmt_size(self.seq_bytes), a.runs))
        for r in range(a.runs):
            for i, (name, d) in enumerate(self.order(r)):
                path = os.path.join(d, "seq")
                if os.path.exists(path):
                    os.unlink(path)
                self.settle()
                n, s = self.tool_run("seqwrite", path, self.seq_bytes,
                                     1000 + 10 * r + i)
                self.record("seqwrite", name, n / s / 1e6, r, "MB/s")
        log("sequential read (%s)" % cold)
        for r in range(a.runs):
            for name, d in self.order(r):
                self.settle()
                n, s = self.tool_run("seqread", os.path.join(d, "seq"))
                if n != self.seq_bytes:
                    raise RuntimeError("%s: read %d bytes of %d" % (name, n, self.seq_bytes))
                self.record("seqread", name, n / s / 1e6, r, "MB/s")
        self.unlink_all("seq")

    def fio(self, path, rw):
        cmd = ["fio", "--name=" + rw, "--filename=" + path, "--rw=" + rw,
               "--bs=4k", "--size=%d" % self.rand_bytes, "--ioengine=psync",
               "--iodepth=1", "--numjobs=1", "--time_based",
               "--runtime=%d" % self.a.rand_seconds, "--fallocate=none",
               "--randrepeat=1", "--output-format=json"]
        if rw == "randwrite":
            # fio's runtime of a job, hence its IOPS, includes end_fsync
            cmd.append("--end_fsync=1")
        out = run(cmd)
        job = json.loads(out[out.index("{"):])["jobs"][0]
        ddir = job["read" if rw == "randread" else "write"]
        if job.get("error"):
            raise RuntimeError("fio %s on %s: error %s" % (rw, path, job["error"]))
        return ddir["total_ios"] / (ddir["runtime"] / 1000.0)

    def rand(self):
        a = self.a
        cold = "cold start" if self.can_drop else "warm"
        self.row("randread", "random 4 KiB reads, %s file (%s, %d s)"
                 % (fmt_size(self.rand_bytes), cold, a.rand_seconds), "IOPS")
        self.row("randwrite", "random 4 KiB writes, %s file (%d s, then fsync)"
                 % (fmt_size(self.rand_bytes), a.rand_seconds), "IOPS")
        log("random I/O: laying out a %s file on each target" % fmt_size(self.rand_bytes))
        for i, (_, d) in enumerate(self.targets):
            self.tool_run("seqwrite", os.path.join(d, "rand"), self.rand_bytes, 2000 + i)
        for rw, key in (("randread", "randread"), ("randwrite", "randwrite")):
            log("%s, %d s per run" % (rw, a.rand_seconds))
            for r in range(a.runs):
                for name, d in self.order(r):
                    self.settle()
                    iops = self.fio(os.path.join(d, "rand"), rw)
                    self.record(key, name, iops, r, "IOPS")
        self.unlink_all("rand")

    def meta(self):
        a = self.a
        n = a.files
        # passthrough_ll holds a descriptor per inode the kernel knows and
        # cannot go past RLIMIT_NOFILE: above that, work in chunks with an
        # (untimed) drop of the caches in between, on every target alike.
        per = max(1000, a.nofile - 300)
        nchunks = -(-n // per)
        size = -(-n // nchunks)
        chunks = [(f, min(size, n - f)) for f in range(0, n, size)]
        if nchunks > 1:
            self.notes.append(
                "Metadata: %d chunks of %d files with the caches dropped "
                "in between (untimed), because passthrough_ll keeps one "
                "descriptor per inode and RLIMIT_NOFILE is %d here."
                % (nchunks, size, a.nofile))
        cold = " (cold)" if self.can_drop else ""
        c = fmt_count(n)
        ops = [("create", "create+close %s files" % c),
               ("stat", "stat %s files%s" % (c, cold)),
               ("readdir", "readdir of %s entries (%sentries/s)"
                % (c, "cold; " if self.can_drop else "")),
               ("link", "hard link %s files" % c),
               ("unlink", "unlink %s links + %s files" % (c, c)),
               ("mkdir", "mkdir %s directories" % c),
               ("rmdir", "rmdir %s directories" % c)]
        for key, label in ops:
            self.row(key, label, "ops/s")
        log("metadata, %d files" % n)
        for r in range(a.runs):
            for name, d in self.order(r):
                md = os.path.join(d, "meta")
                os.mkdir(md)
                for key, _ in ops:
                    done, secs = 0, 0.0
                    if key == "readdir":
                        # the whole directory at once, after a drop
                        self.settle(drop=True)
                        done, secs = self.tool_run(key, md, 1)
                        self.record(key, name, done / secs, r, "ops/s")
                        continue
                    for first, count in chunks:
                        self.settle(drop=(key == "stat" or nchunks > 1))
                        k, s = self.tool_run(key, md, first, count)
                        done += k
                        secs += s
                    self.record(key, name, done / secs, r, "ops/s")
                self.settle(drop=False)
                os.rmdir(md)

    def tally(self):
        a = self.a
        t = self.tmnt
        size = fmt_size(self.seq_bytes)

        # the same data twice
        log("tallyfs: the same %s written twice" % size)
        os.mkdir(os.path.join(t, "dedup"))
        self.settle()
        s0 = self.status()["bytes_stored"]
        n, w1 = self.tool_run("seqwrite", os.path.join(t, "dedup", "a"), self.seq_bytes, 7777)
        self.settle(drop=False)
        s1 = self.status()["bytes_stored"] - s0
        n, w2 = self.tool_run("seqwrite", os.path.join(t, "dedup", "b"), self.seq_bytes, 7777)
        self.settle(drop=False)
        s2 = self.status()["bytes_stored"] - s0
        ok = s1 > 0 and s2 <= s1 * 1.02
        self.tally_rows.append(
            ("write %s of new data + fsync" % size,
             "%s; bytes_stored +%s" % (fmt_rate(n / w1 / 1e6, "MB/s"), fmt_size(s1))))
        self.tally_rows.append(
            ("write the same %s again, to another file + fsync" % size,
             "%s; bytes_stored +%s in all (×%.2f: %s)"
             % (fmt_rate(n / w2 / 1e6, "MB/s"), fmt_size(s2),
                s2 / s1 if s1 else float("nan"),
                "not doubled" if ok else "**DOUBLED**")))
        log("  bytes_stored +%d after the first write, +%d after the second" % (s1, s2))

        # ln across namespaces vs cp
        log("tallyfs: ln of the %s file across namespaces vs cp" % size)
        src = os.path.join(t, "dedup", "a")
        ln_t, cpn_t, cpt_t = [], [], []
        for r in range(a.runs):
            ns = os.path.join(t, "ln%d" % r)
            os.mkdir(ns)
            self.settle()
            t0 = time.perf_counter()
            os.link(src, os.path.join(ns, "a"))
            ln_t.append(time.perf_counter() - t0)
            self.settle()
            dst = os.path.join(a.native, "cp%d" % r)
            t0 = time.perf_counter()
            run(["cp", src, dst])
            cpn_t.append(time.perf_counter() - t0)
            os.unlink(dst)
            self.settle()
            t0 = time.perf_counter()
            run(["cp", src, os.path.join(ns, "c")])
            cpt_t.append(time.perf_counter() - t0)
            log("  run %d/%d  ln %s, cp to native %s, cp across namespaces %s"
                % (r + 1, a.runs, fmt_secs(ln_t[-1]), fmt_secs(cpn_t[-1]),
                   fmt_secs(cpt_t[-1])))
        ln_m, cpn_m, cpt_m = median(ln_t), median(cpn_t), median(cpt_t)
        cold = "cold" if self.can_drop else "warm"
        self.tally_rows.append(
            ("`ln` of the %s file into another namespace" % size, fmt_secs(ln_m)))
        self.tally_rows.append(
            ("`cp` of it to a native directory (%s)" % cold,
             "%s: `ln` is **%.0f×** faster" % (fmt_secs(cpn_m), cpn_m / ln_m)))
        self.tally_rows.append(
            ("`cp` of it into another namespace (copy_file_range, %s)" % cold,
             fmt_secs(cpt_m)))

        # branch
        bn = a.branch_files
        log("tallyfs: branch of a namespace of %d files" % bn)
        tree = os.path.join(t, "tree")
        os.mkdir(tree)
        self.settle(drop=False)
        k, s = self.tool_run("create", tree, 0, bn)
        log("  created %d files in %s (%s)" % (k, fmt_secs(s), fmt_rate(k / s, "/s")))
        br_t, br_rate = [], []
        for r in range(a.runs):
            self.settle()
            secs, rep = self.ctl("branch tree tree_b%d" % r)
            # the inodes copied: 0 for a branch in O(1) (one host)
            inodes = int(rep.get("inodes", 0))
            br_t.append(secs)
            br_rate.append(bn / secs)
            log("  run %d/%d  %d inodes copied, in %s (%s)"
                % (r + 1, a.runs, inodes, fmt_secs(secs), fmt_rate(bn / secs, "files/s")))
        self.tally_rows.append(
            ("`branch` of a namespace of %s files" % fmt_count(bn),
             "%s, %s" % (fmt_secs(median(br_t)), fmt_rate(median(br_rate), "files/s"))))

    def local(self):
        """compress_local against plain object files, in one run: a second
        tallyfs beside the first, on a fresh store made with -o
        compress_local; text (lines that differ from run to run, so never
        deduplicated) and random data written with an fsync, then read
        cold, the two mounts taking turns."""
        a = self.a
        size = self.seq_bytes
        mnt = os.path.join(a.work, "mnt-local")
        store = os.path.join(a.work, "store-local")
        os.mkdir(mnt)
        opts = "compress_local" + ("," + a.tally_opts if a.tally_opts else "")
        logf = open(os.path.join(a.work, "tallyfs-local.log"), "w")
        proc = subprocess.Popen([a.tallyfs_bin, "-f", "-o", opts, store, mnt],
                                stdout=logf, stderr=logf)
        self.local_proc = (proc, mnt)
        for _ in range(100):
            if os.path.ismount(mnt):
                break
            if proc.poll() is not None:
                raise RuntimeError("tallyfs -o compress_local did not mount")
            time.sleep(0.1)
        mounts = [("plain", os.path.join(self.tmnt, "local")),
                  ("compress_local", os.path.join(mnt, "local"))]
        for _, d in mounts:
            os.mkdir(d)  # a namespace
        keys = [("write", "text"), ("read", "text"), ("randread", "text"),
                ("write", "random"), ("read", "random"), ("randread", "random")]
        got = {(k, n): [] for k in keys for n, _ in mounts}
        disk = {}
        log("compress_local against plain files, %s, %d run(s)"
            % (fmt_size(size), a.runs))
        for r in range(a.runs):
            line = b"run %d, line %%d: a text of words as files hold them\n" % r
            text = b"".join(line % i for i in range(size // len(line) + 64))[:size]
            for i, (name, m) in enumerate(mounts if r % 2 == 0 else mounts[::-1]):
                for kind in ("text", "random"):
                    path = os.path.join(m, "local-" + kind)
                    if os.path.exists(path):
                        os.unlink(path)
                    self.settle_mnt(os.path.dirname(m))
                    before = self.disk_bytes(os.path.dirname(m))
                    if kind == "text":
                        t0 = time.perf_counter()
                        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
                        view = memoryview(text)
                        for off in range(0, size, MIB):
                            os.write(fd, view[off:off + MIB])
                        os.fsync(fd)
                        os.close(fd)
                        n, secs = size, time.perf_counter() - t0
                    else:
                        n, secs = self.tool_run("seqwrite", path, size,
                                                5000 + 10 * r + i)
                    got[(("write", kind), name)].append(n / secs / 1e6)
                    self.settle_mnt(os.path.dirname(m))
                    disk[(kind, name)] = (self.disk_bytes(os.path.dirname(m))
                                          - before)
                    n, secs = self.tool_run("seqread", path)
                    if n != size:
                        raise RuntimeError("%s: read %d of %d" % (path, n, size))
                    got[(("read", kind), name)].append(n / secs / 1e6)
                    self.settle_mnt(os.path.dirname(m))
                    got[(("randread", kind), name)].append(
                        self.fio(path, "randread"))
                    log("  run %d/%d  %-14s %-6s write %s, read %s, "
                        "random reads %s, on disk %s"
                        % (r + 1, a.runs, name, kind,
                           fmt_rate(got[(("write", kind), name)][-1], "MB/s"),
                           fmt_rate(got[(("read", kind), name)][-1], "MB/s"),
                           fmt_rate(got[(("randread", kind), name)][-1], "IOPS"),
                           fmt_size(disk[(kind, name)])))
        self.local_rows = []
        for op, kind in keys:
            pv = median(got[((op, kind), "plain")])
            cv = median(got[((op, kind), "compress_local")])
            unit = "MB/s"
            if op == "randread":
                unit = "IOPS"
                label = ("random 4 KiB reads in the first %s of the %s "
                         "(cold start, %d s)" % (fmt_size(self.rand_bytes),
                                                 kind, a.rand_seconds))
            else:
                label = ("%s %s of %s%s" % (op, fmt_size(size), kind,
                                             " + fsync" if op == "write"
                                             else " (cold)"))
            self.local_rows.append((label, fmt_rate(pv, unit),
                                    fmt_rate(cv, unit), "%.2f" % (cv / pv)))
        for kind in ("text", "random"):
            pv, cv = disk[(kind, "plain")], disk[(kind, "compress_local")]
            self.local_rows.append(("bytes on disk of the %s (last run)" % kind,
                                    fmt_size(pv), fmt_size(cv),
                                    "%.3f" % (cv / pv if pv else float("nan"))))
        self.unmount_local()

    def settle_mnt(self, m):
        """settle() for either mount: its drain, sync, caches dropped."""
        fd = os.open(os.path.join(m, ".tally", "ctl"), os.O_RDWR)
        try:
            os.write(fd, b"drain\n")
        finally:
            os.close(fd)
        os.sync()
        if self.can_drop:
            with open("/proc/sys/vm/drop_caches", "w") as f:
                f.write("3\n")

    def disk_bytes(self, m):
        """The bytes of the object files of the store mounted at @m."""
        with open(os.path.join(m, ".tally", "status")) as f:
            st = json.load(f)
        cl = st.get("compress_local")
        if cl:
            return cl["bytes_on_disk"]
        return sum(sh["bytes"] for sh in st["shards"])

    def unmount_local(self):
        lp = getattr(self, "local_proc", None)
        if not lp:
            return
        proc, mnt = lp
        self.local_proc = None
        subprocess.call(["fusermount3", "-u", mnt])
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    # -- output

    def machine_line(self):
        a = self.a
        try:
            ver = run([a.tallyfs_bin, "--version"]).split("\n")[0].strip()
        except Exception:
            ver = "tallyfs"
        try:
            rev = run(["git", "-C", a.src_top, "describe", "--always", "--dirty"]).strip()
            ver += " (%s)" % rev
        except Exception:
            pass
        try:
            fstype = run(["findmnt", "-n", "-o", "FSTYPE", "-T", a.work]).strip()
        except Exception:
            fstype = "?"
        distro = distro_name()
        date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        opts = ""
        if a.tally_opts:
            opts += "; tallyfs -o %s" % a.tally_opts
        if a.pt_opts:
            opts += "; passthrough_ll -o %s" % a.pt_opts
        return ("machine: nproc %d, %s, kernel %s, %s on %s (%s); %s; %s; "
                "median of %d run(s)%s"
                % (os.cpu_count(), distro, platform.release(), fstype,
                   os.path.dirname(a.work), self.disk(), date, ver, a.runs, opts))

    def disk(self):
        try:
            return run(["findmnt", "-n", "-o", "SOURCE", "-T", self.a.work]).strip()
        except Exception:
            return "?"

    def report(self):
        out = []
        names = [n for n, _ in self.targets]
        if self.rows:
            versus = [n for n in names if n != "tallyfs"]
            out.append("| workload | %s | %s |"
                       % (" | ".join(names),
                          " | ".join("tallyfs / " + n for n in versus)))
            out.append("|---|%s" % ("--:|" * (len(names) + len(versus))))
            for key, label, unit in self.rows:
                m = {n: median(self.samples[key][n]) for n in names}
                def ratio(b):
                    if m["tallyfs"] is None or not m[b]:
                        return "–"
                    return "%.2f" % (m["tallyfs"] / m[b])
                out.append("| %s | %s | %s |"
                           % (label,
                              " | ".join(fmt_rate(m[n], unit) for n in names),
                              " | ".join(ratio(n) for n in versus)))
            out.append("")
        if self.tally_rows:
            out.append("| tallyfs only | result |")
            out.append("|---|---|")
            for label, text in self.tally_rows:
                out.append("| %s | %s |" % (label, text))
            out.append("")
        if getattr(self, "local_rows", None):
            out.append("| workload | tallyfs | tallyfs -o compress_local "
                       "| compress_local / plain |")
            out.append("|---|--:|--:|--:|")
            for row in self.local_rows:
                out.append("| %s |" % " | ".join(row))
            out.append("")
        out.append(self.machine_line())
        out.append("")
        notes = [
            "Medians of %d run(s) per target, the targets taking turns in a "
            "rotating order; higher is better, and a ratio above 1 means "
            "tallyfs is faster." % self.a.runs,
            "Before every write, read and random-I/O run (and before stat, readdir, "
            "ln and cp): tallyfs `drain`, `sync`, and %s."
            % ("`echo 3 > /proc/sys/vm/drop_caches` (cold caches)"
               if self.can_drop else "no cache drop (not permitted: warm caches)"),
            "passthrough_ll: libfuse's example built from libfuse3-dev, "
            "default options (multi-threaded, no writeback cache, 1 s "
            "timeouts) over a directory on the same disk; tallyfs: a fresh "
            "store with default options.",
            "Sequential I/O: 1 MiB write()/read() calls of data that never "
            "repeats (the write figure includes open, fsync and close); "
            "random I/O: fio, psync, iodepth 1 (the write IOPS include the "
            "final fsync); metadata: one process doing the system calls in "
            "a loop.",
        ] + self.notes
        if self.a.baseline_mnt:
            notes.append("baseline: %s, a fresh store with the same options."
                         % self.a.baseline_bin)
        if self.a.snapshots:
            notes.append("On this tree's tallyfs mount, seq, rand and meta "
                         "ran in a namespace at the end of a chain of %d "
                         "versions (%d snapshots, each over rows of its "
                         "own, removed after the last)."
                         % (self.a.snapshots + 1, self.a.snapshots))
        if self.a.branches:
            notes.append("On each tallyfs mount, seq, rand and meta ran in a "
                         "namespace made by a chain of %d branches of an "
                         "empty one." % self.a.branches)
        for n in notes:
            out.append("* " + n)
        flush_errors = self.status().get("flush_errors", 0)
        if flush_errors:
            out.append("* **tallyfs reported %d flush error(s)**" % flush_errors)
        print("\n".join(out), flush=True)


def main():
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, on_term)
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--work", required=True)
    p.add_argument("--tool", required=True)
    p.add_argument("--tallyfs-mnt", required=True)
    p.add_argument("--passthrough-mnt", required=True)
    p.add_argument("--native", required=True)
    p.add_argument("--size-mib", type=int, default=1024)
    p.add_argument("--rand-mib", type=int, default=256)
    p.add_argument("--rand-seconds", type=int, default=10)
    p.add_argument("--files", type=int, default=20000)
    p.add_argument("--branch-files", type=int, default=100000)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--only", default="seq,rand,meta,tally")
    p.add_argument("--nofile", type=int, default=1024)
    p.add_argument("--tallyfs-bin", default="tallyfs")
    p.add_argument("--tally-opts", default="")
    p.add_argument("--pt-opts", default="")
    p.add_argument("--src-top", default=".")
    p.add_argument("--baseline-mnt", default="")
    p.add_argument("--baseline-bin", default="")
    p.add_argument("--branches", type=int, default=0)
    p.add_argument("--snapshots", type=int, default=0)
    a = p.parse_args()
    if not shutil.which("fio"):
        sys.exit("bench: fio is missing")
    b = Bench(a)
    groups = a.only.split(",")
    t0 = time.perf_counter()
    try:
        for g in ("seq", "rand", "meta", "tally", "local"):
            if g in groups:
                getattr(b, g)()
    finally:
        b.unmount_local()
    log("done in %s" % fmt_secs(time.perf_counter() - t0))
    b.report()


if __name__ == "__main__":
    main()
