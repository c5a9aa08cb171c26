# SPDX-License-Identifier: MIT
"""The workload and the checker of one round of the fault harness
(tests/harness/hosts.sh), run once per round beside the driver.

    workload.py DIR SEED ROUND TARGET STATE a=MNT b=MNT c=MNT

DIR is the round's handshake directory, TARGET the node the round's
nemesis strikes ("none" when it strikes the servers), STATE a JSON file
holding the model between rounds. The round runs in four phases, each
ended by a file this script writes in DIR and the next one started by a
file the driver writes:

  A   creates, writes (the same bytes on several nodes: dedup), links,
      renames and unlinks on every node; then files held open (one on
      TARGET), written and fsync'd                       -> "ready"
  F   (the fault is on: "faulted") the same operations on the nodes the
      nemesis spares; the path of TARGET's held file unlinked from
      another node                                       -> "fdone"
  B   (healed: "healed", naming the node killed or expired) each held file
      read back through its descriptor, written again, fsync'd and
      closed                                             -> "bdone"
  C   (every node drained: "drained") the checker: every path of the
      model read on every node.

The model: a path names an inode; an inode holds the content of its last
acknowledged write (fsync and close returned 0). A failed operation
makes what it touched uncertain: it may have happened or not. Contents
are numbered and made from the seed, so a read is always one of the
contents ever written, or wrong. The checker's verdicts:
  - a path the model names must exist on every node and read back, whole
    and without error, as its inode's content (an uncertain one as any
    written content or absent);
  - a path the model says is absent must not exist.
Exit status 0, or 1 with one "FAIL ..." line per violation.

With HARNESS_SINGLE set (the mount of the single host, node s), the
round plays on it too, with a model of its own (STATE.single), and in
phase C checks it, makes it certain and saves it, then writes "sdone":
the driver's drain of s then snapshots exactly that model.

    workload.py --check SEED MODEL s=MNT

checks one mount (a restored snapshot) against a saved model.
"""

import errno
import hashlib
import json
import os
import random
import shutil
import sys
import threading
import time

WAIT = 240  # seconds a phase waits for the driver
NAMESPACES = ["hx", "hy"]  # a link from one to the other is a copy

ABSENT = None
UNKNOWN = "?"


def content(seed, k):
    """Content number k of the run: its size and bytes follow from SEED."""
    r = random.Random(seed * 7919 + k)
    size = r.choice([1, 4095, 65536, 100001, 262144, 400007])
    return r.randbytes(size)


def write_file(path, data):
    """Create or overwrite PATH with DATA, fsync, close: None, or what
    failed ("open: ...", the write's or fsync's error, "close: ...")."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    except OSError as e:
        return "open: " + e.strerror
    err = None
    try:
        off = 0
        while off < len(data):
            off += os.write(fd, data[off:])
        os.fsync(fd)
    except OSError as e:
        err = e.strerror
    try:
        os.close(fd)
    except OSError as e:
        err = err or "close: " + e.strerror
    return err


class Round:
    def __init__(self, argv, salt=0):
        self.dir = argv[0]
        self.seed = int(argv[1])
        self.round = int(argv[2])
        self.target = argv[3]
        self.state_path = argv[4]
        self.mnt = dict(a.split("=", 1) for a in argv[5:])
        self.nodes = sorted(self.mnt)
        self.rng = random.Random(self.seed * 1000003 + self.round +
                                 salt * 7777777)
        self.begin()
        self.fails = []
        try:
            with open(self.state_path) as f:
                st = json.load(f)
        except FileNotFoundError:
            st = {"paths": {}, "inodes": {}, "next_inode": 1}
        self.paths = st["paths"]  # path -> inode id (str)
        self.inodes = st["inodes"]  # inode id -> content number or "?"
        self.next_inode = st["next_inode"]
        # every content of the run: 16 of them, so that writes on several
        # nodes share bytes (dedup)
        self.contents = [content(self.seed, k) for k in range(16)]
        self.by_hash = {
            hashlib.sha256(c).digest(): k for k, c in enumerate(self.contents)
        }

    # ------------------------------------------------------------ model

    def save(self):
        tmp = self.state_path + ".new"
        with open(tmp, "w") as f:
            json.dump(
                {
                    "paths": self.paths,
                    "inodes": self.inodes,
                    "next_inode": self.next_inode,
                },
                f,
            )
        os.replace(tmp, self.state_path)

    def new_inode(self, state):
        i = str(self.next_inode)
        self.next_inode += 1
        self.inodes[i] = state
        return i

    def say(self, msg):
        print("# round %d: %s" % (self.round, msg), flush=True)

    def fail(self, msg):
        self.fails.append(msg)
        print("FAIL round %d: %s" % (self.round, msg), flush=True)

    def uncertain(self, path):
        """PATH may name its old inode, or another content, or nothing."""
        i = self.paths.get(path)
        if i is None:
            i = self.new_inode(UNKNOWN)
            self.paths[path] = i
        self.inodes[i] = UNKNOWN
        self.paths[path] = i
        self.maybe_absent.add(path)

    # ------------------------------------------------------- operations

    def real(self, node, path):
        return os.path.join(self.mnt[node], path)

    def write(self, node, path, k):
        """Create or overwrite PATH with content K, fsync, close."""
        self.say("%s: write %s content %d" % (node, path, k))
        err = write_file(self.real(node, path), self.contents[k])
        if err is not None:
            self.say("write %s on %s: %s" % (path, node, err))
            self.uncertain(path)
            return
        self.acknowledged(path, k)

    def acknowledged(self, path, k):
        """A write of content K to PATH returned 0 (fsync and close): PATH
        holds K, and the descriptors held on its inode may read it."""
        i = self.paths.get(path)
        if i is None:
            self.paths[path] = self.new_inode(k)
        else:
            self.inodes[i] = k
            for h in self.held:
                if h["inode"] == i:
                    h["later"].append(k)
        self.maybe_absent.discard(path)

    def attempt(self, node, op, *paths):
        """os.OP on PATHS of NODE, logged: None, or its OSError."""
        self.say("%s: %s %s" % (node, op, " ".join(paths)))
        try:
            getattr(os, op)(*(self.real(node, p) for p in paths))
        except OSError as e:
            self.say("%s %s on %s: %s" % (op, " ".join(paths), node,
                                          e.strerror))
            return e
        return None

    def unlink(self, node, path):
        e = self.attempt(node, "unlink", path)
        if e is not None:
            if e.errno != errno.ENOENT:
                self.uncertain(path)
            return
        self.paths.pop(path, None)
        self.maybe_absent.discard(path)

    def rename(self, node, src, dst):
        if self.attempt(node, "rename", src, dst) is not None:
            self.uncertain(src)
            self.uncertain(dst)
            return
        self.paths[dst] = self.paths.pop(src)
        if src in self.maybe_absent:
            self.maybe_absent.add(dst)
        self.maybe_absent.discard(src)

    def link(self, node, src, dst):
        if self.attempt(node, "link", src, dst) is not None:
            self.uncertain(dst)
            return
        self.paths[dst] = self.paths[src]
        if src in self.maybe_absent:
            self.maybe_absent.add(dst)

    def fresh_name(self, ns="hx"):
        self.seq += 1
        return "%s/r%d_%d" % (ns, self.round, self.seq)

    def xlink(self, node, src, dst):
        """A link into another namespace: a copy of SRC's inode as it
        is (its blocks' counts raised, no data copied), a new inode."""
        if self.attempt(node, "link", src, dst) is not None:
            self.uncertain(dst)
            return
        self.paths[dst] = self.new_inode(self.inodes[self.paths[src]])
        if src in self.maybe_absent:
            self.maybe_absent.add(dst)

    def branch(self, node):
        """Namespace hx branched as hbROUND through NODE's control file:
        every path of hx copied, as it is now."""
        ns = "hb%d" % self.round
        self.say("%s: branch hx %s" % (node, ns))
        try:
            with open(os.path.join(self.mnt[node], ".tally", "ctl"),
                      "w") as f:
                f.write("branch hx %s\n" % ns)
        except OSError as e:
            # made whole or not at all: looked at again in settle();
            # only a server's fault may fail it (the struck node is
            # not the one branching)
            self.say("branch on %s: %s" % (node, e.strerror))
            if self.target != "none":
                self.fail("branch hx %s on %s: %s (the fault is on "
                          "node %s)" % (ns, node, e.strerror, self.target))
            self.branched = ns
            self.branch_failed = True
            return
        self.branched = ns
        self.say("branched hx as %s" % ns)
        # an inode of hx becomes one inode of the branch: its names
        # there are links of each other, as they were in hx
        copy = {}
        for path, i in sorted(self.paths.items()):
            if path.startswith("hx/"):
                dst = ns + path[2:]
                if i not in copy:
                    copy[i] = self.new_inode(self.inodes[i])
                self.paths[dst] = copy[i]
                if path in self.maybe_absent:
                    self.maybe_absent.add(dst)

    def some_ops(self, nodes, n):
        """N random operations on NODES."""
        for _ in range(n):
            node = self.rng.choice(nodes)
            # only paths the model is sure of are renamed, linked or
            # unlinked: an uncertain one may be gone
            known = sorted(p for p in self.paths
                           if p not in self.maybe_absent)
            op = self.rng.random()
            if op < 0.42 or not known:
                path = (self.rng.choice(known) if known and
                        self.rng.random() < 0.3 else
                        self.fresh_name(self.rng.choice(NAMESPACES)))
                self.write(node, path, self.rng.randrange(len(self.contents)))
            elif op < 0.56:
                self.unlink(node, self.rng.choice(known))
            elif op < 0.74:
                # within a namespace (across one a rename is EXDEV)
                src = self.rng.choice(known)
                ns = src.split("/")[0]
                same = [p for p in known if p.startswith(ns + "/")]
                dst = (self.rng.choice(same) if self.rng.random() < 0.3
                       else self.fresh_name(ns))
                if dst != src and self.paths.get(dst) != self.paths[src]:
                    self.rename(node, src, dst)
            elif op < 0.87:
                src = self.rng.choice(known)
                self.link(node, src, self.fresh_name(src.split("/")[0]))
            else:
                src = self.rng.choice(known)
                other = [n for n in NAMESPACES if not
                         src.startswith(n + "/")][0]
                self.xlink(node, src, self.fresh_name(other))

    # ------------------------------------------- the struck node, struck

    def cut_off_ops(self, node):
        """Writes, rewrites and unlinks on NODE while it is cut off or
        stopped, in a thread of their own (they may wait for the fault
        to end), on names of their own that nothing else touches: the
        thread and the list of what happened, for join_cut_off() to put
        in the model."""
        rng = random.Random(self.seed * 1000033 + self.round)
        done = []

        def one(path, k):
            done.append(("write", path, k,
                         write_file(self.real(node, path), self.contents[k])))

        def body():
            # in hy: a branch of hx during the fault would copy them
            # or not, as it meets them
            names = ["hy/r%d_cut%d" % (self.round, n) for n in range(3)]
            for path in names:
                one(path, rng.randrange(len(self.contents)))
            one(names[0], rng.randrange(len(self.contents)))
            try:
                os.unlink(self.real(node, names[1]))
                done.append(("unlink", names[1], None, None))
            except OSError as e:
                done.append(("unlink", names[1], None, e.strerror))

        t = threading.Thread(target=body, daemon=True)
        t.start()
        return t, done

    def join_cut_off(self, node, t, done):
        """What the struck node's thread did, into the model: a write or
        an unlink that returned 0 happened; a failed one is uncertain."""
        t.join(120)
        if t.is_alive():
            self.fail("operations on %s, struck, still blocked 120 s "
                      "after healing" % node)
            return
        for op, path, k, err in done:
            self.say("%s (struck): %s %s%s -> %s" %
                     (node, op, path, "" if k is None else
                      " content %d" % k, err or "ok"))
            if op == "unlink" and err == os.strerror(errno.ENOENT):
                # gone before its unlink: only a write that failed may
                # have left it absent
                if path in self.paths and path not in self.maybe_absent:
                    self.fail("%s (struck): %s was acknowledged, then its "
                              "unlink found it absent" % (node, path))
                self.paths.pop(path, None)
                self.maybe_absent.discard(path)
            elif err is not None:
                self.uncertain(path)
            elif op == "write":
                self.acknowledged(path, k)
            else:
                self.paths.pop(path, None)
                self.maybe_absent.discard(path)

    # ------------------------------------------------------------ holds

    def hold(self, node):
        """Open a new file on NODE, write, fsync; keep it open."""
        path = self.fresh_name()
        k = self.rng.randrange(len(self.contents))
        self.say("%s: hold %s content %d" % (node, path, k))
        try:
            fd = os.open(self.real(node, path), os.O_RDWR | os.O_CREAT, 0o644)
            os.write(fd, self.contents[k])
            os.fsync(fd)
        except OSError as e:
            self.fail("held file %s on %s: %s (no fault yet)" %
                      (path, node, e.strerror))
            return
        self.paths[path] = self.new_inode(k)
        # what its descriptor may read: what it wrote, or what another
        # node wrote through the name later (close-to-open: a descriptor
        # keeps its node's view while the node has the file open)
        self.held.append({"node": node, "path": path, "fd": fd,
                          "inode": self.paths[path], "mine": k,
                          "later": []})

    def held_after(self, healed):
        """HEALED: "killed NODE" (its descriptors are gone), "expired
        NODE" (it was stopped or cut off past its session's expiry, and
        another node removed its held file meanwhile: its descriptor
        fails with EIO, docs/hosts.md), or "-"."""
        how, _, struck = healed.partition(" ")
        for h in self.held:
            node, path, fd = h["node"], h["path"], h["fd"]
            expired = how == "expired" and node == struck
            if how == "killed" and node == struck:
                try:
                    os.close(fd)
                except OSError:
                    pass
                continue
            # its inode's content: another node may have written it
            # through its name meanwhile (then either content:
            # docs/hosts.md, open descriptors)
            k = self.inodes[h["inode"]]
            want = max(self.contents, key=len)
            try:
                got = os.pread(fd, len(want) + 1, 0)
            except OSError as e:
                if not (expired and e.errno == errno.EIO):
                    self.fail("held file %s on %s: read after the fault: "
                              "%s" % (path, node, e.strerror))
                got = None
            if k == UNKNOWN:
                if got is not None and not any(c.startswith(got) for c in
                                               self.contents):
                    self.fail("held file %s on %s reads %s after the "
                              "fault" % (path, node, self.describe(got)))
            elif got is not None and got not in (
                    self.contents[c] for c in [h["mine"]] + h["later"]):
                self.fail("held file %s on %s reads %s after the fault; "
                          "it wrote content %d, other nodes %s" %
                          (path, node, self.describe(got), h["mine"],
                           h["later"] or "none"))
            k = self.rng.randrange(len(self.contents))
            ok = True
            try:
                os.ftruncate(fd, 0)
                os.pwrite(fd, self.contents[k], 0)
                os.fsync(fd)
            except OSError as e:
                self.say("held file %s on %s: write after the fault: %s" %
                         (path, node, e.strerror))
                ok = False
            try:
                os.close(fd)
            except OSError as e:
                self.say("held file %s on %s: close: %s" %
                         (path, node, e.strerror))
                ok = False
            if got is None and ok:
                self.fail("held file %s on %s: its read failed, yet a "
                          "write, fsync and close returned 0" % (path, node))
            self.inodes[h["inode"]] = k if ok else UNKNOWN

    # ---------------------------------------------------------- checker

    def describe(self, data):
        k = self.by_hash.get(hashlib.sha256(data).digest())
        if k is not None:
            return "content %d" % k
        parts = ["a short read: the first %d bytes of content %d "
                 "(%d bytes)" % (len(data), k, len(c))
                 for k, c in enumerate(self.contents)
                 if len(data) < len(c) and c.startswith(data)]
        if parts:
            return "; ".join(parts)
        return "%d bytes never written (%d zero bytes)" % (len(data),
                                                          data.count(0))

    def check(self):
        names = set()
        spaces = NAMESPACES + ([self.branched] if self.branched and
                               not self.branch_failed else [])
        for node in self.nodes:
            for ns in spaces:
                try:
                    names |= {ns + "/" + n for n in
                              os.listdir(os.path.join(self.mnt[node], ns))}
                except OSError as e:
                    self.fail("node %s: listing %s: %s" %
                              (node, ns, e.strerror))
        for path in sorted(names | set(self.paths)):
            i = self.paths.get(path)
            want = None if i is None else self.inodes[i]
            for node in self.nodes:
                self.check_one(node, path, want, path in self.maybe_absent)

    def check_one(self, node, path, want, may_be_absent):
        step = "open"
        try:
            fd = os.open(self.real(node, path), os.O_RDONLY)
        except FileNotFoundError:
            if want is not None and not may_be_absent:
                self.fail("node %s: %s is missing, acknowledged as "
                          "content %s" % (node, path, want))
            return
        except OSError as e:
            self.fail("node %s: open %s: %s" % (node, path, e.strerror))
            return
        try:
            step = "read"
            got = b""
            while True:
                part = os.read(fd, 1 << 20)
                if not part:
                    break
                got += part
            step = "fstat"
            size = os.fstat(fd).st_size
        except OSError as e:
            self.fail("node %s: %s %s: %s" % (node, step, path, e.strerror))
            os.close(fd)
            return
        try:
            os.close(fd)
        except OSError as e:
            # a descriptor that only read: nothing of it to report
            self.fail("node %s: close %s (opened to read): %s" %
                      (node, path, e.strerror))
        k = self.by_hash.get(hashlib.sha256(got).digest())
        if want is None:
            if not may_be_absent:
                self.fail("node %s: %s exists (%s), removed" %
                          (node, path, self.describe(got)))
        elif want == UNKNOWN:
            # any content ever written, or a part of one left by a
            # write that failed midway
            if k is None and not any(c.startswith(got) for c in
                                     self.contents):
                self.fail("node %s: %s reads %s" %
                          (node, path, self.describe(got)))
        elif k != want:
            self.fail("node %s: %s reads %s (st_size %d), acknowledged "
                      "content %d (%d bytes)" %
                      (node, path, self.describe(got), size, want,
                       len(self.contents[want])))

    def settle(self):
        """Make what a failed operation left certain again for the next
        rounds: its paths removed, the other names of its inodes written."""
        node = self.nodes[0]
        if self.branched:
            # the branch goes: the model keeps the namespaces it plays in
            top = os.path.join(self.mnt[node], self.branched)
            if os.path.exists(top):
                shutil.rmtree(top, onerror=lambda f, p, e: self.fail(
                    "removing %s: %s" % (p, e[1])))
            for path in [p for p in self.paths
                         if p.startswith(self.branched + "/")]:
                self.paths.pop(path)
                self.maybe_absent.discard(path)
        for path in sorted(self.maybe_absent):
            self.unlink(node, path)
            self.paths.pop(path, None)
        self.maybe_absent.clear()
        for path, i in sorted(self.paths.items()):
            if self.inodes[i] == UNKNOWN:
                self.write(node, path, 0)
                if path in self.maybe_absent:
                    self.fail("%s: cannot be written after healing" % path)
                    self.paths.pop(path, None)
        live = set(self.paths.values())
        self.inodes = {i: v for i, v in self.inodes.items() if i in live}

    # -------------------------------------------------------- the round

    def wait(self, name):
        p = os.path.join(self.dir, name)
        end = time.monotonic() + WAIT
        while not os.path.exists(p):
            if time.monotonic() > end:
                self.fail("the driver never wrote %s" % name)
                sys.exit(1)
            time.sleep(0.05)
        with open(p) as f:
            return f.read().strip()

    def signal(self, name):
        with open(os.path.join(self.dir, name), "w") as f:
            f.write("1\n")

    def begin(self):
        self.seq = 0
        self.held = []
        self.maybe_absent = set()
        self.branched = None
        self.branch_failed = False

    def run(self):
        for ns in NAMESPACES:
            os.makedirs(os.path.join(self.mnt[self.nodes[0]], ns),
                        exist_ok=True)
        # the single host (hosts.sh, node s: SQLite and a bucket prefix
        # of its own): a model of its own, the same operations, the
        # nemeses of the servers; its model after each round is what
        # the round's snapshot must restore
        single = None
        if os.environ.get("HARNESS_SINGLE"):
            single = Round([self.dir, str(self.seed), str(self.round),
                            "none", self.state_path + ".single",
                            "s=" + os.environ["HARNESS_SINGLE"]], salt=1)
            for ns in NAMESPACES:
                os.makedirs(os.path.join(single.mnt["s"], ns),
                            exist_ok=True)
        spared = [n for n in self.nodes if n != self.target]
        self.some_ops(self.nodes, 6)
        if single:
            single.some_ops(["s"], 4)
        if self.target != "none":
            self.hold(self.target)
        self.hold(self.rng.choice(spared))
        self.signal("ready")
        self.wait("faulted")
        # the struck node cut off or stopped works on too, in a thread:
        # its operations wait for the fault's end, or fail
        cut = None
        if os.environ.get("HARNESS_NEMESIS") in ("partition", "cut_pg",
                                                 "cut_s3", "stop"):
            cut = self.cut_off_ops(self.target)
        # a full cache disk, requests to the S3 server held or answered
        # 503: the struck node works too (a write it cannot keep fails,
        # ENOSPC or EIO, and is uncertain)
        # (fullkill: the disk full, then kill -9 at the healing; commit:
        # the answers to its COMMITs lost, each outcome unknown to it)
        self.some_ops(self.nodes if os.environ.get("HARNESS_NEMESIS") in
                      ("full", "fullkill", "late", "5xx", "commitlost")
                      else spared, 5)
        # a branch, one round in three, while the fault is on
        if self.rng.random() < 1 / 3:
            self.branch(self.rng.choice(spared))
        # the target's held file unlinked by another node while the
        # target is cut off, stopped or killed: its descriptor must
        # still read what it wrote
        for h in self.held:
            if h["node"] == self.target:
                self.unlink(self.rng.choice(spared), h["path"])
        if single:
            single.some_ops(["s"], 3)
        self.signal("fdone")
        healed = self.wait("healed")
        if cut is not None:
            self.join_cut_off(self.target, *cut)
        self.held_after(healed)
        self.some_ops(self.nodes, 3)
        if single:
            single.some_ops(["s"], 2)
        self.signal("bdone")
        self.wait("drained")
        if single:
            # checked, made certain and saved; the driver then drains s,
            # and the snapshot that drain uploads is of this model
            single.check()
            single.settle()
            single.save()
            self.fails += single.fails
            self.signal("sdone")
        self.check()
        self.settle()
        self.save()
        return 1 if self.fails else 0


def check_restored(argv):
    """workload.py --check SEED MODEL NODE=MNT: the checker's verdicts on
    one mount (a restored snapshot) against a model the workload saved."""
    rnd = Round(["", argv[0], "0", "none", argv[1]] + argv[2:])
    rnd.check()
    return 1 if rnd.fails else 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--check"]:
        sys.exit(check_restored(sys.argv[2:]))
    sys.exit(Round(sys.argv[1:]).run())
