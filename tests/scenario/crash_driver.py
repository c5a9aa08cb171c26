# SPDX-License-Identifier: MIT
"""Workload driver and checker of the crash-point scenario (15_crash.sh).

    crash_driver.py run STATE MNT SEED    run random operations on MNT until
                                          the mount dies (exit 3)
    crash_driver.py check STATE MNT       check MNT against STATE and the
                                          log, then collapse STATE to it

The model (STATE, JSON, outside the mount): namespaces (top-level dirs)
holding flat files; each file name maps to an inode id; each inode id has
a list of *candidate* contents (SHA-256 names of blobs kept in STATE.blobs),
the newest last. Between two crashes the daemon always serves the newest;
after a crash an inode may be back at any candidate that was not made
durable away: fsync, a link into another namespace (which commits the
source first), drain and branch collapse the candidates to the newest one.

The model and the driver are shared with the power-loss campaign
(tests/powerloss/pl_driver.py), which adds kinds of operation through
Driver.weights(): "append" and "fsync" (of a file or of a namespace).

Each operation is logged to STATE.log, fsync'ed, before it starts ("B" and
its JSON) and after it returned ("D"). The checker replays the log: every
completed operation must be visible; the one in flight at the crash may
have happened or not (the mount must match the model before it or after
it). The checker then rewrites STATE from what it saw (it is committed:
a daemon crash does not undo a committed transaction) and empties the log.

Exit status: 0 ok, 1 the check failed, 2 an operation failed while the
mount was alive (a bug), 3 the mount died under the driver (the kill).
"""

import copy
import errno
import hashlib
import json
import os
import random
import sys

BS = 4096                  # the store's block size (15_crash.sh mounts so)
MAX_FILES = 48             # over this, the driver prefers rm
MAX_NS = 4                 # namespaces at most (branch, or drop one)
MAX_CANDS = 6              # patch only files with fewer candidates
MAX_APPEND_SIZE = 6 * BS   # append only to files no longer


def sha(data):
    return hashlib.sha256(data).hexdigest()


class Blobs:
    """Contents by SHA-256, in a directory next to STATE."""

    def __init__(self, state_path):
        self.dir = state_path + ".blobs"
        os.makedirs(self.dir, exist_ok=True)

    def put(self, data):
        h = sha(data)
        p = os.path.join(self.dir, h)
        if not os.path.exists(p):
            with open(p + ".tmp", "wb") as f:
                f.write(data)
            os.rename(p + ".tmp", p)
        return h

    def get(self, h):
        with open(os.path.join(self.dir, h), "rb") as f:
            return f.read()


def load(state_path):
    try:
        with open(state_path) as f:
            return json.load(f)
    except FileNotFoundError:
        return {"next": 0, "ns": {}, "inodes": {}}


def save(state_path, st):
    with open(state_path + ".tmp", "w") as f:
        json.dump(st, f, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.rename(state_path + ".tmp", state_path)


# ------------------------------------------------------------ the model

def add_cands(cands, new):
    """Append @new (a list) to @cands keeping the newest last."""
    out = [c for c in cands if c not in new] + list(new)
    for c in new:          # the very newest stays last
        out.remove(c)
        out.append(c)
    return out


def collapse_all(st):
    for iid, c in st["inodes"].items():
        st["inodes"][iid] = [c[-1]]


def gc_inodes(st):
    used = {iid for files in st["ns"].values() for iid in files.values()}
    for iid in list(st["inodes"]):
        if iid not in used:
            del st["inodes"][iid]


def apply_begin(st, op):
    """The model once @op has (maybe partly) taken effect: a superset of
    every state the op can leave behind, before it completed."""
    st = copy.deepcopy(st)
    st["next"] = max(st["next"], op["next"])
    k = op["op"]
    if k == "mkns":
        st["ns"][op["ns"]] = {}
    elif k == "rmns":
        del st["ns"][op["ns"]]
    elif k == "write":
        files = st["ns"][op["ns"]]
        if op["path"] not in files:
            files[op["path"]] = op["iid"]
            st["inodes"][op["iid"]] = [op["empty"]]
        iid = files[op["path"]]
        st["inodes"][iid] = add_cands(st["inodes"][iid],
                                      [op["empty"], op["new"]])
    elif k in ("patch", "append"):
        iid = st["ns"][op["ns"]][op["path"]]
        st["inodes"][iid] = add_cands(st["inodes"][iid], [op["new"]])
    elif k == "link":
        src = st["ns"][op["ns"]][op["path"]]
        if op["dns"] == op["ns"]:
            st["ns"][op["dns"]][op["dpath"]] = src
        else:
            st["ns"][op["dns"]][op["dpath"]] = op["iid"]
            st["inodes"][op["iid"]] = list(st["inodes"][src])
    elif k == "rm":
        del st["ns"][op["ns"]][op["path"]]
    elif k == "rename":
        files = st["ns"][op["ns"]]
        files[op["dpath"]] = files.pop(op["path"])
    elif k == "branch":
        # the copy keeps the hard links: fresh inode ids, one per source id
        ids = {}
        dst = {}
        for p, iid in st["ns"][op["ns"]].items():
            if iid not in ids:
                ids[iid] = "%s.%s" % (op["dns"], iid)
                st["inodes"][ids[iid]] = list(st["inodes"][iid])
            dst[p] = ids[iid]
        st["ns"][op["dns"]] = dst
    gc_inodes(st)
    return st


def apply_done(st, op):
    """The model once @op returned (applied after apply_begin)."""
    k = op["op"]
    if k in ("write", "patch", "append") and op["fsync"]:
        iid = st["ns"][op["ns"]][op["path"]]
        st["inodes"][iid] = [op["new"]]
    elif k == "fsync" and op.get("path"):
        # the file's flushes are committed first
        iid = st["ns"][op["ns"]][op["path"]]
        st["inodes"][iid] = [st["inodes"][iid][-1]]
    elif k == "link" and op["dns"] != op["ns"]:
        # the link commits the source first: both hold its newest data
        src = st["ns"][op["ns"]][op["path"]]
        st["inodes"][src] = [st["inodes"][src][-1]]
        st["inodes"][op["iid"]] = [st["inodes"][src][-1]]
    elif k in ("drain", "branch"):
        collapse_all(st)
    return st


def read_log(state_path):
    ops = []
    try:
        with open(state_path + ".log") as f:
            for line in f:
                if line.startswith("B "):
                    ops.append([json.loads(line[2:]), False])
                elif line.strip() == "D" and ops:
                    ops[-1][1] = True
    except FileNotFoundError:
        pass
    return ops


# ------------------------------------------------------------ the driver

def mount_alive(mnt):
    try:
        os.stat(os.path.join(mnt, ".tally", "status"))
        return True
    except OSError:
        return False


class Driver:
    def __init__(self, state_path, mnt, seed):
        self.path = state_path
        self.mnt = mnt
        self.rnd = random.Random(seed)
        self.blobs = Blobs(state_path)
        self.st = load(state_path)
        for op, done in read_log(state_path):
            raise SystemExit("driver: the log of %s was not checked "
                             "(op %r)" % (state_path, op))
        self.log = os.open(state_path + ".log",
                           os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self.empty = self.blobs.put(b"")
        # shared block patterns: different files share objects
        self.pool = [bytes(BS)] + [
            random.Random(1000 + i).randbytes(BS) for i in range(5)]

    def note(self, text):
        os.write(self.log, text.encode())
        os.fdatasync(self.log)

    def new_id(self, prefix):
        self.st["next"] += 1
        return "%s%d" % (prefix, self.st["next"])

    def p(self, ns, path=None):
        return os.path.join(self.mnt, ns, path) if path else \
            os.path.join(self.mnt, ns)

    def content(self):
        r = self.rnd
        files = self.all_files()
        if files and r.random() < 0.1:  # a whole-file duplicate
            ns, path = r.choice(files)
            return self.blobs.get(self.newest(ns, path))
        out = b""
        for _ in range(r.choice([0, 0, 1, 1, 2, 3])):
            out += r.choice(self.pool) if r.random() < 0.5 else \
                r.randbytes(BS)
        return out + r.randbytes(r.choice([0, 0, 1, 100, 2000]))

    def all_files(self):
        return sorted((ns, p) for ns, f in self.st["ns"].items() for p in f)

    def newest(self, ns, path):
        return self.st["inodes"][self.st["ns"][ns][path]][-1]

    def ctl(self, cmd):
        fd = os.open(os.path.join(self.mnt, ".tally", "ctl"), os.O_WRONLY)
        try:
            os.write(fd, (cmd + "\n").encode())
        finally:
            os.close(fd)

    def weights(self, files):
        """The kinds of operation to draw from, with their weights."""
        return {"write": 25, "patch": 12, "link": 14,
                "rm": 14 if len(files) < MAX_FILES else 60, "rename": 10,
                "branch": 3, "drain": 3, "gc": 2}

    # one operation: pick, log, do, log
    def step(self):
        r = self.rnd
        st = self.st
        files = self.all_files()
        nss = sorted(st["ns"])
        if len(nss) < 2:
            op = {"op": "mkns", "ns": self.new_id("n")}
        else:
            w = self.weights(files)
            k = r.choices(list(w), list(w.values()))[0]
            if k in ("patch", "append", "link", "rm", "rename",
                     "fsync") and not files:
                k = "write"
            op = self.pick(k, files, nss)
            if op is None:
                return
        op["next"] = st["next"]  # the ids it used, for the replay
        self.note("B " + json.dumps(op, sort_keys=True) + "\n")
        self.do(op)
        self.note("D\n")
        self.st = apply_done(apply_begin(st, op), op)

    def pick(self, k, files, nss):
        r = self.rnd
        st = self.st
        if k == "write":
            if files and r.random() < 0.5:
                ns, path = r.choice(files)
            else:
                ns, path = r.choice(nss), self.new_id("f")
            data = self.content()
            return {"op": k, "ns": ns, "path": path, "iid": self.new_id("i"),
                    "empty": self.empty, "new": self.blobs.put(data),
                    "fsync": r.random() < 0.5}
        if k == "append":
            ns, path = r.choice(files)
            old = self.blobs.get(self.newest(ns, path))
            if len(old) > MAX_APPEND_SIZE:
                return None
            data = r.randbytes(r.choice([1, 100, 2000, BS, BS + 700]))
            return {"op": k, "ns": ns, "path": path,
                    "data": self.blobs.put(data),
                    "new": self.blobs.put(old + data),
                    "fsync": r.random() < 0.5}
        if k == "fsync":
            ns, path = r.choice(files)
            if r.random() < 0.25:  # the namespace: metadata only
                return {"op": k, "ns": ns, "path": None}
            return {"op": k, "ns": ns, "path": path}
        if k == "patch":
            ns, path = r.choice(files)
            if len(st["inodes"][st["ns"][ns][path]]) >= MAX_CANDS:
                return None
            old = self.blobs.get(self.newest(ns, path))
            off = r.randrange(0, len(old) + BS)
            n = r.randrange(1, BS - off % BS + 1)  # inside one block
            data = r.choice(self.pool)[:n] if r.random() < 0.3 else \
                r.randbytes(n)
            new = bytearray(old)
            if len(new) < off + n:
                new.extend(bytes(off + n - len(new)))
            new[off:off + n] = data
            return {"op": k, "ns": ns, "path": path, "off": off,
                    "data": self.blobs.put(data),
                    "new": self.blobs.put(bytes(new)),
                    "fsync": r.random() < 0.5}
        if k == "link":
            ns, path = r.choice(files)
            dns = ns if r.random() < 0.3 else r.choice(nss)
            return {"op": k, "ns": ns, "path": path, "dns": dns,
                    "dpath": self.new_id("l"), "iid": self.new_id("i")}
        if k == "rm":
            ns, path = r.choice(files)
            return {"op": k, "ns": ns, "path": path}
        if k == "rename":
            ns, path = r.choice(files)
            others = [p for p in st["ns"][ns]
                      if st["ns"][ns][p] != st["ns"][ns][path]]
            dpath = r.choice(sorted(others)) if others and \
                r.random() < 0.5 else self.new_id("r")
            return {"op": k, "ns": ns, "path": path, "dpath": dpath}
        if k == "branch":
            if len(nss) >= MAX_NS:
                ns = r.choice(nss)
                if st["ns"][ns]:  # empty it first, one rm at a time
                    return {"op": "rm", "ns": ns,
                            "path": sorted(st["ns"][ns])[0]}
                return {"op": "rmns", "ns": ns}
            return {"op": k, "ns": r.choice(nss), "dns": self.new_id("b")}
        return {"op": k}

    @staticmethod
    def sync(op, fd):
        """fsync (fdatasync with op["datasync"]) unless op["fsync"] is
        False."""
        if op.get("fsync", True):
            (os.fdatasync if op.get("datasync") else os.fsync)(fd)

    def do(self, op):
        k = op["op"]
        if k == "mkns":
            os.mkdir(self.p(op["ns"]))
        elif k == "rmns":
            os.rmdir(self.p(op["ns"]))
        elif k == "write":
            fd = os.open(self.p(op["ns"], op["path"]),
                         os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                data = self.blobs.get(op["new"])
                if data:
                    assert os.write(fd, data) == len(data)
                self.sync(op, fd)
            finally:
                os.close(fd)
        elif k == "patch":
            fd = os.open(self.p(op["ns"], op["path"]), os.O_WRONLY)
            try:
                data = self.blobs.get(op["data"])
                assert os.pwrite(fd, data, op["off"]) == len(data)
                self.sync(op, fd)
            finally:
                os.close(fd)
        elif k == "append":
            fd = os.open(self.p(op["ns"], op["path"]),
                         os.O_WRONLY | os.O_APPEND)
            try:
                data = self.blobs.get(op["data"])
                assert os.write(fd, data) == len(data)
                self.sync(op, fd)
            finally:
                os.close(fd)
        elif k == "fsync":
            fd = os.open(self.p(op["ns"], op["path"]), os.O_RDONLY)
            try:
                self.sync(op, fd)
            finally:
                os.close(fd)
        elif k == "link":
            os.link(self.p(op["ns"], op["path"]),
                    self.p(op["dns"], op["dpath"]))
        elif k == "rm":
            os.unlink(self.p(op["ns"], op["path"]))
        elif k == "rename":
            os.rename(self.p(op["ns"], op["path"]),
                      self.p(op["ns"], op["dpath"]))
        elif k == "branch":
            self.ctl("branch %s %s" % (op["ns"], op["dns"]))
        elif k == "drain":
            self.ctl("drain")
        elif k == "gc":
            self.ctl("gc grace=0")

    def run(self):
        while True:
            try:
                self.step()
            except OSError as e:
                if not mount_alive(self.mnt):
                    sys.exit(3)
                print("driver: %s failed while the mount is alive: %s"
                      % (json.dumps(self.last_op()), e), file=sys.stderr)
                sys.exit(2)

    def last_op(self):
        ops = read_log(self.path)
        return ops[-1][0] if ops else None


# ----------------------------------------------------------- the checker

def observe(mnt):
    seen = {}
    for ns in sorted(os.listdir(mnt)):
        if ns == ".tally":
            continue
        seen[ns] = {}
        for name in sorted(os.listdir(os.path.join(mnt, ns))):
            p = os.path.join(mnt, ns, name)
            s = os.lstat(p)
            try:
                with open(p, "rb") as f:
                    h = sha(f.read())
            except OSError as e:  # no content: the checks say why
                h = "unreadable (%s)" % errno.errorcode.get(e.errno, e.errno)
            seen[ns][name] = (s.st_ino, h)
    return seen


def match(model, seen):
    """None when @seen is a state @model allows, else why not."""
    if sorted(model["ns"]) != sorted(seen):
        return "namespaces: model %s, mount %s" % (sorted(model["ns"]),
                                                   sorted(seen))
    ino_of = {}
    iid_of = {}
    for ns, files in model["ns"].items():
        if sorted(files) != sorted(seen[ns]):
            return "files of %s: model %s, mount %s" % (
                ns, sorted(files), sorted(seen[ns]))
        for path, iid in files.items():
            ino, h = seen[ns][path]
            cands = model["inodes"][iid]
            if h not in cands:
                return "%s/%s: content %s is none of the %d allowed " \
                    "(%s)" % (ns, path, h[:12], len(cands),
                              " ".join(c[:12] for c in cands))
            if ino_of.setdefault(iid, ino) != ino:
                return "%s/%s: inode %d, but its hard links have %d" % (
                    ns, path, ino, ino_of[iid])
            if iid_of.setdefault(ino, iid) != iid:
                return "%s/%s: inode %d is shared with another file" % (
                    ns, path, ino)
    return None


def check(state_path, mnt):
    st = load(state_path)
    ops = read_log(state_path)
    tail = None
    for op, done in ops:
        if tail is not None:
            print("check: an operation after one that never ended",
                  file=sys.stderr)
            return 1
        if done:
            st = apply_done(apply_begin(st, op), op)
        else:
            tail = op
    seen = observe(mnt)
    options = [("every completed operation", st)]
    if tail is not None:
        options = [("the operation in flight done", apply_begin(st, tail)),
                   ("the operation in flight not done", st)]
    why = []
    for what, model in options:
        w = match(model, seen)
        if w is None:
            break
        why.append("%s: %s" % (what, w))
    else:
        print("check: the mount after the crash matches no allowed state",
              file=sys.stderr)
        if tail is not None:
            print("  in flight: %s" % json.dumps(tail), file=sys.stderr)
        for w in why:
            print("  " + w, file=sys.stderr)
        return 1
    # what was seen is committed: the new certain state
    for ns, files in model["ns"].items():
        for path, iid in files.items():
            model["inodes"][iid] = [seen[ns][path][1]]
    model["next"] = max(st["next"], model["next"])
    save(state_path, model)
    with open(state_path + ".log", "w") as f:
        f.flush()
        os.fsync(f.fileno())
    print("check: %d namespaces, %d files, %d inodes, %d operations%s" % (
        len(seen), sum(len(f) for f in seen.values()),
        len(model["inodes"]), len(ops),
        "" if tail is None else ", 1 in flight: " + tail["op"]))
    return 0


def main(driver=None, checker=None, usage=None):
    """The command line of this driver, or of one built on it."""
    driver, checker = driver or Driver, checker or check
    if len(sys.argv) == 5 and sys.argv[1] == "run":
        driver(sys.argv[2], sys.argv[3], int(sys.argv[4])).run()
    elif len(sys.argv) == 4 and sys.argv[1] == "check":
        sys.exit(checker(sys.argv[2], sys.argv[3]))
    else:
        print(usage or __doc__, file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
