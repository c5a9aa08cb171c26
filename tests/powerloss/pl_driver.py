# SPDX-License-Identifier: MIT
"""Workload driver and checker of the power-loss campaign (pl_random.sh).

    pl_driver.py run STATE MNT SEED    run random operations on MNT until
                                       the mount dies (exit 3)
    pl_driver.py check STATE MNT       check MNT, remounted after a power
                                       loss, against STATE and the log,
                                       then collapse STATE to it

The driver, the log and the committed model are those of the crash-point
scenario (tests/scenario/crash_driver.py: read its notes first), with more
fsyncs: "append" (O_APPEND) and "fsync" (of a file, or of a namespace
directory), and fdatasync in place of some fsyncs.

A kill -9 loses no commit; a power loss loses every commit since the last
sync of the WAL. tallyfs syncs the WAL when an fsync or fdatasync (of any
file or directory) returns, after committing the flushes of that file; but
also at unmount, from a timer when deletions wait for it, and in a GC
sweep, none of which the driver sees. So next to the committed model C (the
crash model: the states a kill -9 may leave) the checker keeps the durable
model P, per component:

  * P["ns"][ns]: the presence of a namespace (True/False) it may have;
  * P["names"][ns][path]: the inode ids (None: absent) a name may hold;
  * P["inodes"][iid]: the contents an inode may hold.

Every state that C passes through widens P (an operation in flight adds
its partial state, a completed one that too and its result); a completed
fsync or fdatasync resets P to C: every operation that returned before the
fsync started is durable once it returns, and the files' contents are
those C allows (an fsync'ed file its last fsync'ed one). drain, branch and
a link across namespaces commit, so they collapse C, but P keeps what it
had: they do not sync the WAL. The components are checked independently
(a simplification: the WAL keeps a prefix of the commits, which would tie
them), and inode identity across hard links is kept: names that share an
inode share its st_ino, and no two model inodes share one.

After the check what was seen is durable (it is what the store holds), so
C and P both collapse to it.

Exit status: 0 ok, 1 the check failed, 2 an operation failed while the
mount was alive (a bug), 3 the mount died under the driver (the loss).
"""

import copy
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "scenario"))
import crash_driver as cd  # noqa: E402 (found through the path above)

SEARCH_STEPS = 200000      # the hard-link matching gives up past this


class Driver(cd.Driver):
    """The crash driver with more syncs, for the power-loss model."""

    def weights(self, files):
        w = super().weights(files)
        w.update({"append": 8, "fsync": 6})
        return w

    def pick(self, k, files, nss):
        op = super().pick(k, files, nss)
        if op is not None and op.get("fsync", op["op"] == "fsync"):
            op["datasync"] = self.rnd.random() < 0.3
        return op


# ---------------------------------------------------- the durable model

def durable(c):
    """P when the committed state @c is durable (just synced)."""
    return {"ns": {ns: [True] for ns in c["ns"]},
            "names": {ns: {p: [iid] for p, iid in files.items()}
                      for ns, files in c["ns"].items()},
            "inodes": copy.deepcopy(c["inodes"])}


def push(cands, v):
    if v not in cands:
        cands.append(v)


def widen(p, c):
    """Let @p allow every state that the committed model @c allows."""
    for ns in sorted(set(p["ns"]) | set(c["ns"])):
        push(p["ns"].setdefault(ns, [False]), ns in c["ns"])
        names = p["names"].setdefault(ns, {})
        files = c["ns"].get(ns, {})
        for path in sorted(set(names) | set(files)):
            push(names.setdefault(path, [None]), files.get(path))
    for iid, cands in c["inodes"].items():
        p["inodes"][iid] = cd.add_cands(p["inodes"].get(iid, []), cands)


def syncs(op):
    """@op, completed, has synced the WAL."""
    return op["op"] == "fsync" or (
        op["op"] in ("write", "patch", "append") and op["fsync"])


def replay(c, ops):
    """C and P after the logged @ops; the operation in flight or None."""
    p = durable(c)
    tail = None
    for op, done in ops:
        if tail is not None:
            raise ValueError("an operation after one that never ended")
        b = cd.apply_begin(c, op)
        widen(p, b)
        if not done:
            tail = op
            continue
        c = cd.apply_done(b, op)
        if syncs(op):
            p = durable(c)
        else:
            widen(p, c)
    return c, p, tail


# ----------------------------------------------------------- the checker

def assign(slots):
    """Pick an inode id for each seen name, consistent with st_ino: a list
    of iids (in the order of @slots), or None if there is none.
    @slots: (ino, [allowed iids]) each."""
    order = sorted(range(len(slots)), key=lambda i: len(slots[i][1]))
    chosen = [None] * len(slots)
    ino_of = {}
    iid_of = {}
    steps = [0]

    def go(k):
        if k == len(order):
            return True
        steps[0] += 1
        if steps[0] > SEARCH_STEPS:
            raise RuntimeError("the hard-link matching gave up after %d "
                               "steps" % SEARCH_STEPS)
        i = order[k]
        ino, opts = slots[i]
        for iid in opts:
            if ino_of.get(iid, ino) != ino or iid_of.get(ino, iid) != iid:
                continue
            new = iid not in ino_of
            ino_of[iid] = ino
            iid_of[ino] = iid
            chosen[i] = iid
            if go(k + 1):
                return True
            if new:
                del ino_of[iid]
                del iid_of[ino]
        return False

    return chosen if go(0) else None


def describe(blobs, mnt, ns, path, cands):
    """Why the content of @ns/@path is none of @cands: block by block
    against the newest candidate of its length."""
    allowed = ", ".join("%s (%d bytes)" % (h[:12], len(blobs.get(h)))
                        for h in cands)
    try:
        with open(os.path.join(mnt, ns, path), "rb") as f:
            got = f.read()
    except OSError as e:
        return ["%s/%s: unreadable (%s); allowed: %s" % (
            ns, path, os.strerror(e.errno), allowed)]
    out = ["%s/%s: %d bytes, sha256 %s; allowed: %s" % (
        ns, path, len(got), cd.sha(got)[:12], allowed)]
    same = [h for h in cands if len(blobs.get(h)) == len(got)]
    if not same:
        return out
    want = blobs.get(same[-1])
    for off in range(0, len(got), cd.BS):
        g, w = got[off:off + cd.BS], want[off:off + cd.BS]
        if g != w:
            out.append("  block %d differs from %s%s" % (
                off // cd.BS, same[-1][:12],
                ": it reads as zeros" if not any(g) else ""))
    return out


def match(p, seen, blobs, mnt, suspects):
    """(why, None) when @seen is no state @p allows, else (None, the
    committed model of @seen). The names at fault go to @suspects."""
    why = []
    for ns in sorted(seen):
        if True not in p["ns"].get(ns, [False]):
            why.append("namespace %s is there, it never was" % ns)
    for ns in sorted(p["ns"]):
        if ns not in seen and False not in p["ns"][ns]:
            why.append("namespace %s is lost (it was durable)" % ns)
    slots = []
    where = []
    for ns in sorted(seen):
        names = p["names"].get(ns, {})
        for path, (ino, h) in sorted(seen[ns].items()):
            cands = [iid for iid in names.get(path, [None]) if iid]
            opts = [iid for iid in cands if h in p["inodes"].get(iid, [])]
            if not cands:
                why.append("%s/%s is there, it never was" % (ns, path))
                suspects.append((ns, path))
            elif not opts:
                allowed = []
                for iid in cands:
                    allowed = cd.add_cands(allowed, p["inodes"][iid])
                why.extend(describe(blobs, mnt, ns, path, allowed))
                suspects.append((ns, path))
            slots.append((ino, opts))
            where.append((ns, path, h))
        for path, cands in sorted(names.items()):
            if path not in seen[ns] and None not in cands:
                why.append("%s/%s is lost (it was durable as %s)" % (
                    ns, path, " or ".join(cands)))
                suspects.append((ns, path))
    if why:
        return why, None
    chosen = assign(slots)
    if chosen is None:
        return ["no inode ids fit the st_ino of the names (hard links "
                "split or merged): " + ", ".join(
                    "%s/%s ino %d may be %s" % (ns, path, ino, opts)
                    for (ns, path, h), (ino, opts) in zip(where, slots))], \
            None
    c = {"ns": {ns: {} for ns in seen}, "inodes": {}}
    for (ns, path, h), iid in zip(where, chosen):
        c["ns"][ns][path] = iid
        c["inodes"][iid] = [h]
    return None, c


def history(st, ops, ns, path):
    """The lines that tell what the log did to @ns/@path: its inode at the
    start, the operations on it (by name or by inode, following hard
    links, renames, links and branches that led to it) and every sync or
    commit in between."""
    related = {(ns, path)}
    for op, done in reversed(ops):  # the names it came from
        k = op["op"]
        if k == "branch" and any(n == op["dns"] for n, q in related):
            related |= {(op["ns"], q) for n, q in set(related)
                        if n == op["dns"]}
        elif k in ("rename", "link") and \
                (op.get("dns", op["ns"]), op["dpath"]) in related:
            related.add((op["ns"], op["path"]))
    c = st
    iids = {c["ns"].get(n, {}).get(q) for n, q in related} - {None}
    iid = c["ns"].get(ns, {}).get(path)
    out = ["history of %s/%s: at the start %s" % (
        ns, path, "%s, content %s" % (iid, " ".join(
            h[:12] for h in c["inodes"][iid])) if iid else "absent"),
        "  (from %s)" % " ".join("%s/%s" % r for r in sorted(related))]
    for i, (op, done) in enumerate(ops):
        names = {(op.get("ns"), op.get("path")),
                 (op.get("dns", op.get("ns")), op.get("dpath"))}
        on_it = bool(names & related) or \
            any(c["ns"].get(n, {}).get(q) in iids for n, q in names) or \
            (op["op"] == "branch" and
             any(n == op["dns"] for n, q in related))
        b = cd.apply_begin(c, op)
        iids |= {b["ns"].get(n, {}).get(q) for n, q in related} - {None}
        if on_it or syncs(op) or op["op"] in ("drain", "branch"):
            short = dict((k, v[:12] if isinstance(v, str) and
                          len(v) == 64 else v) for k, v in op.items())
            out.append("  %4d %s%s %s" % (
                i, "" if done else "in flight: ",
                "*" if on_it else " ", json.dumps(short, sort_keys=True)))
        if done:
            c = cd.apply_done(b, op)
    out.append("  (* on it; the others sync or commit)")
    return out


def check(state_path, mnt):
    st = cd.load(state_path)
    ops = cd.read_log(state_path)
    blobs = cd.Blobs(state_path)
    try:
        c, p, tail = replay(st, ops)
    except ValueError as e:
        print("check: %s" % e, file=sys.stderr)
        return 1
    seen = cd.observe(mnt)
    suspects = []
    why, model = match(p, seen, blobs, mnt, suspects)
    if why:
        print("check: the mount after the power loss matches no allowed "
              "state", file=sys.stderr)
        last = max((i for i, (op, done) in enumerate(ops)
                    if done and syncs(op)), default=-1)
        print("  operations since the last fsync (%d of %d):"
              % (len(ops) - last - 1, len(ops)), file=sys.stderr)
        for op, done in ops[last + 1:]:
            print("    %s %s" % ("done" if done else "in flight",
                                 json.dumps(op, sort_keys=True)),
                  file=sys.stderr)
        for w in why:
            print("  " + w, file=sys.stderr)
        for ns, path in suspects[:3]:
            for line in history(st, ops, ns, path):
                print("  " + line, file=sys.stderr)
        return 1
    # the ids of the operation in flight too: it may have happened
    model["next"] = max([st["next"], c["next"]] +
                        [op["next"] for op, done in ops])
    cd.save(state_path, model)
    with open(state_path + ".log", "w") as f:
        f.flush()
        os.fsync(f.fileno())
    last = max((i for i, (op, done) in enumerate(ops)
                if done and syncs(op)), default=-1)
    print("check: %d namespaces, %d files, %d inodes, %d operations, "
          "%d after the last fsync%s" % (
              len(seen), sum(len(f) for f in seen.values()),
              len(model["inodes"]), len(ops), len(ops) - last - 1,
              "" if tail is None else ", 1 in flight: " + tail["op"]))
    return 0


if __name__ == "__main__":
    cd.main(Driver, check, __doc__)
