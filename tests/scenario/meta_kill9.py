#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Metadata operations that kill -9 interrupts, and their checker.

  meta_kill9.py work DIR JOURNAL SEED   a worker: random operations in DIR
      (its own directory of the mount) until one fails (the daemon is
      gone); JOURNAL gets "B n" before operation n and "E n OP ARGS"
      once it returned 0, each written at once.
  meta_kill9.py check DIR JOURNAL       after the remount: DIR must be the
      state of every operation that returned, plus or minus the one in
      flight (begun, not returned), applied whole or not at all.

A state is the tree's names, types, modes, link counts of files and the
xattr user.k: the metadata. A file's bytes are not compared: written and
closed without fsync, they may be lost to a crash (docs/durability.md). Operations are deterministic on the model:
create (with bytes), link, rename, unlink, mkdir, rmdir, chmod, setxattr,
truncate.
"""
import errno
import json
import os
import random
import sys


def apply(model, op):
    """Apply journaled operation @op to @model (a dict path -> entry)."""
    kind, a = op[0], op[1:]
    if kind == "create":
        model[a[0]] = {"t": "f", "mode": 0o644, "data": a[1], "x": None,
                       "ino": a[0]}
    elif kind == "link":
        model[a[1]] = model[a[0]]  # the same entry object: one inode
    elif kind == "rename":
        model[a[1]] = model.pop(a[0])
    elif kind == "unlink":
        del model[a[0]]
    elif kind == "mkdir":
        model[a[0]] = {"t": "d", "mode": 0o755}
    elif kind == "rmdir":
        del model[a[0]]
    elif kind == "chmod":
        model[a[0]]["mode"] = a[1]
    elif kind == "setxattr":
        model[a[0]]["x"] = a[1]
    elif kind == "truncate":
        d = model[a[0]]["data"]
        model[a[0]]["data"] = d[:a[1]] + "\0" * (a[1] - len(d))


def freeze(model):
    """What the mount can show of @model."""
    out = {}
    links = {}
    for p, e in model.items():
        if e["t"] == "f":
            links[id(e)] = links.get(id(e), 0) + 1
    for p, e in model.items():
        if e["t"] == "d":
            out[p] = ["d", e["mode"]]
        else:
            out[p] = ["f", e["mode"], links[id(e)], e["x"]]
    return out


def scan(d):
    out = {}
    for root, dirs, files in os.walk(d):
        for n in dirs + files:
            p = os.path.join(root, n)
            rel = os.path.relpath(p, d)
            st = os.lstat(p)
            if os.path.isdir(p):
                out[rel] = ["d", st.st_mode & 0o7777]
            else:
                try:
                    x = os.getxattr(p, "user.k").decode()
                except OSError:
                    x = None
                out[rel] = ["f", st.st_mode & 0o7777, st.st_nlink, x]
    return out


def pick(rng, model, n):
    files = sorted(p for p, e in model.items() if e["t"] == "f")
    dirs = sorted(p for p, e in model.items() if e["t"] == "d")
    empty = [d for d in dirs if not any(p.startswith(d + "/")
                                        for p in model)]
    parent = rng.choice([""] + dirs)
    new = os.path.join(parent, f"n{n}")
    r = rng.random()
    if r < 0.25 or not files:
        # a third empty: removals that drop no block reference
        words = 0 if rng.random() < 0.33 else rng.randint(1, 40)
        return ["create", new, f"bytes of {n} " * words]
    if r < 0.35:
        return ["mkdir", new]
    if r < 0.42 and empty:
        return ["rmdir", rng.choice(empty)]
    f = rng.choice(files)
    if r < 0.52:
        return ["link", f, new]
    if r < 0.62:
        return ["rename", f, new]
    if r < 0.72:
        return ["unlink", f]
    if r < 0.82:
        return ["chmod", f, rng.choice([0o600, 0o640, 0o644, 0o700])]
    if r < 0.92:
        return ["setxattr", f, f"v{n}"]
    return ["truncate", f, rng.randint(0, 20)]


def run(d, op):
    kind, a = op[0], op[1:]
    p = lambda x: os.path.join(d, x)  # noqa: E731
    if kind == "create":
        with open(p(a[0]), "x") as f:
            f.write(a[1])
    elif kind == "link":
        os.link(p(a[0]), p(a[1]))
    elif kind == "rename":
        os.rename(p(a[0]), p(a[1]))
    elif kind == "unlink":
        os.unlink(p(a[0]))
    elif kind == "mkdir":
        os.mkdir(p(a[0]))
    elif kind == "rmdir":
        os.rmdir(p(a[0]))
    elif kind == "chmod":
        os.chmod(p(a[0]), a[1])
    elif kind == "setxattr":
        os.setxattr(p(a[0]), "user.k", a[1].encode())
    elif kind == "truncate":
        os.truncate(p(a[0]), a[1])


def load(journal):
    """The operations that returned, and the one in flight (or None)."""
    done, flight = [], None
    with open(journal) as f:
        for line in f:
            if line.startswith("B "):
                flight = json.loads(line[2:])
            elif line.startswith("E "):
                done.append(json.loads(line[2:]))
                flight = None
    return done, flight


def work(d, journal, seed):
    model = {}
    done, _ = load(journal) if os.path.exists(journal) else ([], None)
    for op in done:
        apply(model, op)
    rng = random.Random(seed)
    n = len(done) + seed * 1000000
    with open(journal, "a", buffering=1) as j:
        while True:
            n += 1
            op = pick(rng, model, n)
            j.write("B " + json.dumps(op) + "\n")
            try:
                run(d, op)
            except OSError as e:
                # the daemon is gone: the mount answers ENOTCONN, a
                # request it had taken ECONNABORTED, the close of a file
                # whose pages it did not take EIO
                if e.errno in (errno.ENOTCONN, errno.ECONNABORTED):
                    return 0
                # or the test removed the dead mount already: its
                # directory is gone (a live mount always has it)
                try:
                    os.stat(d)
                except OSError as gone:
                    if gone.errno in (errno.ENOTCONN, errno.ENOENT):
                        return 0
                print(f"operation {op} failed: {e}")
                return 3
            j.write("E " + json.dumps(op) + "\n")
            apply(model, op)


def check(d, journal):
    done, flight = load(journal)
    model = {}
    for op in done:
        apply(model, op)
    without = freeze(model)
    got = scan(d)
    if got == without:
        state = "without"
    else:
        if flight is None:
            return fail(got, without, "no operation in flight")
        apply(model, flight)
        with_it = freeze(model)
        if got != with_it:
            return fail(got, with_it, f"in flight: {flight}")
        state = "with"
    # the journal is the state checked: the one in flight is done or not
    with open(journal, "w") as j:
        for op in done + ([flight] if state == "with" else []):
            j.write("E " + json.dumps(op) + "\n")
    print(f"{len(done)} operations returned, the one in flight "
          f"{'applied' if state == 'with' else 'not applied'}: state ok")
    return 0


def fail(got, want, why):
    missing = sorted(set(want) - set(got))[:5]
    extra = sorted(set(got) - set(want))[:5]
    changed = [k for k in want if k in got and want[k] != got[k]][:5]
    print(f"state differs ({why}): missing {missing}, extra {extra}, "
          f"changed {[(k, want[k], got[k]) for k in changed]}")
    return 1


if __name__ == "__main__":
    if sys.argv[1] == "work":
        sys.exit(work(sys.argv[2], sys.argv[3], int(sys.argv[4])))
    sys.exit(check(sys.argv[2], sys.argv[3]))
