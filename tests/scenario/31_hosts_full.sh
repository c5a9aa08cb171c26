#!/bin/bash
# SPDX-License-Identifier: MIT
# A shared store's node whose cache disk fills (a 64 MiB tmpfs of its
# own, filled from outside after its write was accepted): the last close
# that cannot commit the write gets ENOSPC, and that write is gone, not
# kept to go again later (close-to-open: another node may write the file
# meanwhile, and the write retried would land over theirs):
#  - B's failed write: once room is made B reads the file as committed,
#    and a descriptor that only read closes without an error;
#  - B's failed write, then A rewrites the file: B reads A's content,
#    and after B drains, A's content is still what every node reads;
#  - a copy of B's descriptor closed by a child (at its exec) fails; the
#    descriptor still open keeps the write, and its close, once there is
#    room, commits it;
#  - the store checks clean.
SCN_TIMEOUT=240
source "$(dirname "$0")/lib.sh"
source "$TALLY_SRC/tests/s3/lib.sh"
source "$TALLY_SRC/tests/pg/lib.sh"
source "$(dirname "$0")/remote_lib.sh"

shared_start tally-full full
mnt() { echo "$TMP/mnt_$1"; }
mkdir "$TMP/mnt_a" "$TMP/mnt_b" "$TMP/cache_b"
# below $TMP: lib.sh's cleanup unmounts it (after the fuse mounts)
T mount -t tmpfs -o size=64m tallyfs-full "$TMP/cache_b"
for n in a b; do
	mount_fs "$TMP/cache_$n" "$(mnt "$n")" -o "$SHARED" -o heartbeat=1
done

for i in 1 2 3 4; do rand_file "$TMP/c$i" 300000; done
mkdir "$(mnt a)/ns"
T cp "$TMP/c1" "$(mnt a)/ns/f"
assert_same_content "$TMP/c1" "$(mnt b)/ns/f"

# failed_write SRC [child]: B writes SRC's bytes over ns/f through one
# descriptor, its cache disk is filled, it closes; prints what the close
# gave (OK or the errno's name). The filler stays until unfill. With
# child, a child process closes a copy of the descriptor first (a flush
# that fails, reported to no one who wrote), then the filler goes, then
# the descriptor is closed.
failed_write() {
	T python3 - "$(mnt b)/ns/f" "$1" "$TMP/cache_b/filler" "${2:-}" <<-'EOF'
	import errno, os, subprocess, sys
	data = open(sys.argv[2], "rb").read()
	fd = os.open(sys.argv[1], os.O_WRONLY)
	# from the end back, 64 KiB at a time: not a sequential writer's
	# run, which is sent down the pipeline as it is written
	for off in reversed(range(0, len(data), 65536)):
	    os.pwrite(fd, data[off:off + 65536], off)
	# filled here: a child process would close its copy of fd at exec,
	# and that close flushes; all but 1 MiB (the reserve is 8 MiB):
	# tmpfs refuses its last pages
	st = os.statvfs(os.path.dirname(sys.argv[3]))
	filler = os.open(sys.argv[3], os.O_WRONLY | os.O_CREAT, 0o600)
	os.posix_fallocate(filler, 0, st.f_bavail * st.f_frsize - (1 << 20))
	os.close(filler)
	if sys.argv[4] == "child":
	    os.set_inheritable(fd, True)
	    subprocess.run(["true"], close_fds=False, check=True)
	    os.unlink(sys.argv[3])
	try:
	    os.close(fd)
	    print("OK")
	except OSError as e:
	    print(errno.errorcode.get(e.errno, str(e.errno)))
	EOF
}
unfill() { rm -f "$TMP/cache_b/filler"; }
# dropped N: B logged N writes dropped at the release after a close that
# failed (the kernel sends it on its own, after the close returned)
dropped_is() {
	[[ $(grep -c "data of inode .* dropped at its last close" "$DLOG") == "$1" ]]
}
dropped() { wait_for 10 dropped_is "$1" || fail "B did not drop write $1"; }

log "B's write fails at close on a full cache disk: the file stays as committed"
assert_eq "B's close on a full cache disk" ENOSPC "$(failed_write "$TMP/c2")"
dropped 1
unfill
assert_same_content "$TMP/c1" "$(mnt b)/ns/f"
assert_same_content "$TMP/c1" "$(mnt a)/ns/f"

log "B's write fails, then A rewrites the file: A's content stays"
assert_eq "B's close on a full cache disk" ENOSPC "$(failed_write "$TMP/c3")"
dropped 2
unfill
T cp "$TMP/c4" "$(mnt a)/ns/f"
# read through a descriptor that only reads: its close reports nothing
T python3 - "$(mnt b)/ns/f" "$TMP/c4" <<-'EOF' || fail "B's read of A's rewrite"
import sys
with open(sys.argv[1], "rb") as f:
    got = f.read()
sys.exit(0 if got == open(sys.argv[2], "rb").read() else 1)
EOF
ctl drain "$(mnt b)" >/dev/null || fail "drain on B failed"
ctl drain "$(mnt a)" >/dev/null || fail "drain on A failed"
echo 3 >/proc/sys/vm/drop_caches
for n in a b; do
	assert_same_content "$TMP/c4" "$(mnt "$n")/ns/f"
done

log "a child's close of a copy fails: the descriptor still open keeps the write"
res=$(failed_write "$TMP/c2" child)
assert_eq "the parent's close once there is room" OK "$res"
dropped_is 2 || fail "B dropped the write of a descriptor still open"
for n in a b; do
	assert_same_content "$TMP/c2" "$(mnt "$n")/ns/f"
done

log "tallyfsck: the store is clean"
for n in a b; do umount_fs "$(mnt "$n")"; done
fsck_store -o "meta=$PG_URI,remote_endpoint=$S3_ENDPOINT" "$TMP/cache_a"
grep -q '^status: clean' <<<"$FSCK_OUT" || fail "tallyfsck: $FSCK_OUT"
