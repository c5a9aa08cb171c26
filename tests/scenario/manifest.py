# SPDX-License-Identifier: MIT
"""Print a manifest of a directory tree, one line per entry, sorted.

Used by the shell scenarios to compare trees exactly: for every entry its
relative path, type, permission bits, owner, mtime (ns), and per type the
size and SHA-256 of the content, the link count and hard-link group
(the first path of the tree sharing its inode), the symlink target, the
device number; then its user.* extended attributes.

  manifest.py DIR [--ino] [--tally] [--no-dir-mtime]

--ino     also print inode numbers (for persistence checks)
--tally   also print the virtual user.tally.* attributes (excluded by
          default: they describe the store, not the file)
--no-dir-mtime  leave out directory mtimes
--no-mtime  leave out every mtime (a tree compared with a copy made
          by the same commands elsewhere)
--no-ctl  leave out a top-level .tally (the virtual control directory of a
          mount: its times are those of the mount)
"""
import hashlib
import os
import stat
import sys


def kind(mode):
    for test, name in ((stat.S_ISREG, "file"), (stat.S_ISDIR, "dir"),
                       (stat.S_ISLNK, "symlink"), (stat.S_ISFIFO, "fifo"),
                       (stat.S_ISCHR, "chr"), (stat.S_ISBLK, "blk"),
                       (stat.S_ISSOCK, "sock")):
        if test(mode):
            return name
    return "?"


def digest(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(1 << 20)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def xattrs(path, tally):
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return []
    out = []
    for n in sorted(names):
        if not n.startswith("user."):
            continue
        if n.startswith("user.tally.") and not tally:
            continue
        v = os.getxattr(path, n, follow_symlinks=False)
        out.append("%s=%r" % (n, v))
    return out


def main():
    args = sys.argv[1:]
    root = args[0]
    with_ino = "--ino" in args
    tally = "--tally" in args
    dir_mtime = "--no-dir-mtime" not in args
    mtime = "--no-mtime" not in args
    no_ctl = "--no-ctl" in args
    entries = []
    for dirpath, dirnames, filenames in os.walk(root):
        if no_ctl and dirpath == root and ".tally" in dirnames:
            dirnames.remove(".tally")
        dirnames.sort()
        for name in [None] + sorted(dirnames + filenames):
            if name is None:
                if dirpath != root:
                    continue
                full, rel = root, "."
            else:
                full = os.path.join(dirpath, name)
                rel = os.path.relpath(full, root)
            entries.append((rel, full, os.lstat(full)))
    first = {}
    for rel, full, st in sorted(entries):
        key = (st.st_dev, st.st_ino)
        if not stat.S_ISDIR(st.st_mode) and key not in first:
            first[key] = rel
    for rel, full, st in sorted(entries):
        k = kind(st.st_mode)
        f = [repr(rel), k, "mode=%04o" % stat.S_IMODE(st.st_mode),
             "owner=%d:%d" % (st.st_uid, st.st_gid)]
        if mtime and (k != "dir" or dir_mtime):
            f.append("mtime=%d" % st.st_mtime_ns)
        if k == "file":
            f += ["size=%d" % st.st_size, "sha256=%s" % digest(full)]
        elif k == "symlink":
            f.append("target=%r" % os.readlink(full))
        elif k in ("chr", "blk"):
            f.append("rdev=%d,%d" % (os.major(st.st_rdev),
                                     os.minor(st.st_rdev)))
        if k != "dir":
            f.append("nlink=%d" % st.st_nlink)
            if st.st_nlink > 1:
                f.append("group=%r" % first[(st.st_dev, st.st_ino)])
        if with_ino:
            f.append("ino=%d" % st.st_ino)
        f += xattrs(full, tally)
        print(" ".join(f))


if __name__ == "__main__":
    main()
