#!/bin/bash
# SPDX-License-Identifier: MIT
# A full disk: the store on a 64 MiB tmpfs, filled through the mount.
# Space is reserved when a write is accepted: the write that finds no
# room fails with ENOSPC itself (files opened for writing while space is
# low bypass the kernel's writeback cache), what was accepted before it
# commits and reads back, nothing is left uncommitted, and the metadata
# keeps working (object writes leave OBJSTORE_RESERVE free for it). A
# writer without fsync (dd, cp) fails the same way. Data accepted before
# the disk was filled from outside fails its fsync with ENOSPC, is kept,
# and commits once room is made; a writer above dirty_limit meanwhile
# gets ENOSPC, never waits for as long as the disk stays full. Then the
# disk is filled from outside past the reserve, until SQLite itself hits
# SQLITE_FULL: the failed operations are ENOSPC and change nothing, and
# removing the ballast makes the mount work again. The store checks clean
# at the end and every file survives a remount.
SCN_TIMEOUT=240
source "$(dirname "$0")/lib.sh"

DISK=$TMP/disk
mkdir "$DISK"
# below $TMP: lib.sh's cleanup unmounts it (after the fuse mount)
T mount -t tmpfs -o size=64m tallyfs-enospc "$DISK"
STORE=$DISK/store

# avail_kib: free KiB of the tmpfs.
avail_kib() { df -k --output=avail "$DISK" | tail -n 1 | tr -d ' '; }

# fsync_write PATH SRC: write SRC's bytes to PATH through one descriptor,
# fsync, close; prints OK or "OP ERRNAME" for the first call that failed.
fsync_write() {
	T python3 - "$1" "$2" <<-'EOF'
	import errno, os, sys
	data = open(sys.argv[2], "rb").read()
	op = "open"
	try:
	    fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
	                 0o644)
	    try:
	        op = "write"
	        off = 0
	        while off < len(data):
	            off += os.write(fd, data[off:])
	        op = "fsync"
	        os.fsync(fd)
	    finally:
	        op2 = op
	        op = "close"
	        os.close(fd)
	        op = op2
	    print("OK")
	except OSError as e:
	    print(op, errno.errorcode.get(e.errno, str(e.errno)))
	EOF
}

mount_fs
mkdir "$MNT/main"
for i in 1 2 3; do
	rand_file "$TMP/keep$i" $((5 * MIB + 100 * i))
	assert_eq "fsync of keep$i" OK \
		"$(fsync_write "$MNT/main/keep$i" "$TMP/keep$i")"
done
mkdir "$MNT/main/dir"
echo "small" >"$MNT/main/dir/small"
drain

# fill with 4 MiB files of random (never deduplicated) bytes, each
# fsync'ed, until one fails (bounded: the disk holds 16 of them at most)
n=0 res=OK
while ((n < 20)); do
	rand_file "$TMP/fill$n" $((4 * MIB))
	res=$(fsync_write "$MNT/main/fill$n" "$TMP/fill$n")
	[[ $res == OK ]] || break
	n=$((n + 1))
done
assert_eq "the call that hits the full disk" "write ENOSPC" "$res"
((n >= 5)) || fail "only $n fill files fitted on a 64 MiB disk"
failed=fill$n
log "$n files of 4 MiB committed, $failed failed; $(avail_kib) KiB free"
# the reserve held: the disk is not completely full
free_kib=$(avail_kib)
((free_kib >= 4096)) ||
	fail "object writes left only $free_kib KiB for the metadata"
# df on the mount counts the reserve as used: less than one fill file
mnt_kib=$(df -k --output=avail "$MNT" | tail -n 1 | tr -d ' ')
((mnt_kib < 4096)) || fail "df on the full mount shows $mnt_kib KiB free"
# what the failed file's writes were given is there, committed: a prefix
# of its bytes; nothing waits uncommitted, nothing failed to flush
size=$(stat -c %s "$MNT/main/$failed")
T cmp -n "$size" "$TMP/$failed" "$MNT/main/$failed" >/dev/null ||
	fail "$failed holds $size bytes that are not its first ones"
drain
assert_eq "dirty bytes on a full disk" 0 "$(status_get dirty_bytes)"
assert_eq "flush errors on a full disk" 0 "$(status_get flush_errors)"
# a writer without fsync learns it at write(), not at an unmount
rand_file "$TMP/dd" $((6 * MIB))
res=$(T dd if="$TMP/dd" of="$MNT/main/dd" bs=1M 2>&1) && fail "dd: $res"
assert_match "dd on a full disk" "No space left on device" "$res"
res=$(T cp "$TMP/dd" "$MNT/main/cp" 2>&1) && fail "cp: $res"
assert_match "cp on a full disk" "No space left on device" "$res"

# what was committed is intact
for i in 1 2 3; do
	assert_same_content "$TMP/keep$i" "$MNT/main/keep$i"
done
assert_eq "small file" small "$(cat "$MNT/main/dir/small")"
assert_same_content "$TMP/fill0" "$MNT/main/fill0"
# metadata still works on a disk full of objects
mkdir "$MNT/main/newdir"
: >"$MNT/main/newdir/empty"
mv "$MNT/main/newdir/empty" "$MNT/main/newdir/empty2"
ln -s keep1 "$MNT/main/sym"
assert_eq "symlink" keep1 "$(readlink "$MNT/main/sym")"

# free space inside the mount: rm, drain
rm -f "$MNT/main/dd" "$MNT/main/cp"
before=$(avail_kib)
for ((i = 0; i < n; i += 2)); do
	rm "$MNT/main/fill$i"
done
drain
after=$(avail_kib)
removed=$(((n + 1) / 2))
((after - before >= (removed - 1) * 4096 - 512)) ||
	fail "rm of $removed fill files freed only $((after - before)) KiB"
# the failed file written whole now
assert_eq "fsync of $failed after rm" OK \
	"$(fsync_write "$MNT/main/$failed" "$TMP/$failed")"
assert_same_content "$TMP/$failed" "$MNT/main/$failed"

# data accepted, then the disk filled from outside before it flushed,
# all but room for the metadata: the fsyncs fail with ENOSPC and the
# data is kept (parked); a new write gets ENOSPC (no room to reserve);
# once room is made the data commits, whole. (A writer above dirty_limit
# then gets ENOSPC too, never waits for as long as the disk stays full:
# unit_flush, a_writer_above_the_limit_on_a_full_disk_gets_enospc.)
rand_file "$TMP/late0" $((600 * 1024))
rand_file "$TMP/late1" $((600 * 1024))
timeout 60 python3 - "$MNT/main" "$TMP" "$DISK/ballast" <<-'EOF' >"$TMP/late.out" ||
	import errno, os, sys
	m, tmp, ballast = sys.argv[1:4]
	def err(f):
	    try:
	        f()
	        return "OK"
	    except OSError as e:
	        return errno.errorcode.get(e.errno, str(e.errno))
	fds = []
	for i in range(2):
	    fd = os.open("%s/late%d" % (m, i), os.O_RDWR | os.O_CREAT, 0o644)
	    os.write(fd, open("%s/late%d" % (tmp, i), "rb").read())
	    fds.append(fd)
	# all but 5 MiB: room for the metadata, none for an object (the
	# object store leaves 8 MiB to the metadata)
	sv = os.statvfs(os.path.dirname(ballast))
	n = (sv.f_bavail * sv.f_frsize - 5 * 1048576) // 65536
	# written here: a child process's exec would close its copies of
	# the descriptors above, and each close flushes (FUSE_FLUSH)
	with open(ballast, "wb") as f:
	    for i in range(n):
	        f.write(bytes(65536))
	fd = os.open(m + "/more", os.O_WRONLY | os.O_CREAT, 0o644)
	print("write on a full disk:", err(lambda: os.write(fd, b"x" * 65536)))
	os.close(fd)
	print("fsync:", err(lambda: os.fsync(fds[0])))
	os.unlink(ballast)
	res = []
	for i in range(5):
	    res.append(err(lambda: [os.fsync(f) for f in fds]))
	    if res[-1] == "OK":
	        break
	print("after room:", " ".join(res))
	for f in fds:
	    os.close(f)
	EOF
	fail "the writer on a full disk did not end: $(cat "$TMP/late.out")"
cat "$TMP/late.out"
assert_eq "a write on a full disk" \
	"write on a full disk: ENOSPC" "$(sed -n 1p "$TMP/late.out")"
assert_eq "fsync of data the disk filled under" "fsync: ENOSPC" \
	"$(sed -n 2p "$TMP/late.out")"
assert_match "fsyncs once room was made" '^after room: (ENOSPC )*OK$' \
	"$(sed -n 3p "$TMP/late.out")"
for i in 0 1; do
	assert_same_content "$TMP/late$i" "$MNT/main/late$i"
done
rm -f "$MNT/main/more"
flush_errors=$(status_get flush_errors)
# new data works without a remount
rand_file "$TMP/new" $((3 * MIB + 7))
assert_eq "fsync of a new file" OK "$(fsync_write "$MNT/main/new" "$TMP/new")"
assert_same_content "$TMP/new" "$MNT/main/new"
# every byte stored is referenced once (random data: no dedup), no leak
logical=$(status_get bytes_logical)
assert_eq "bytes_stored after recovery" "$logical" \
	"$(status_get bytes_stored)"
assert_eq "bytes_logical after recovery" \
	"$(find "$MNT/main" -type f -printf '%s\n' | awk '{ s += $1 } END { print s }')" \
	"$logical"
assert_eq "status flush_errors after recovery" "$flush_errors" \
	"$(status_get flush_errors)"

# Now past the reserve: fill the disk from outside, so that SQLite
# itself runs out of room. Metadata operations fail with ENOSPC and
# change nothing.
mkdir "$MNT/main/meta"
for ((i = 0; i < 20; i++)); do
	: >"$MNT/main/meta/$(printf e%05d "$i")"
done
T dd if=/dev/zero of="$DISK/ballast" bs=64k 2>/dev/null || true
assert_eq "free KiB with the ballast" 0 "$(avail_kib)"
created=20 res=OK
while ((created < 20000)); do
	res=$(T python3 - "$MNT/main/meta" "$created" <<-'EOF'
	import errno, os, sys
	d, start = sys.argv[1], int(sys.argv[2])
	i = start
	try:
	    while i < start + 2000:
	        os.close(os.open("%s/e%05d" % (d, i), os.O_WRONLY | os.O_CREAT
	                         | os.O_EXCL, 0o644))
	        i += 1
	    print(i, "OK")
	except OSError as e:
	    print(i, errno.errorcode.get(e.errno, str(e.errno)))
	EOF
	) || fail "metadata filler failed"
	created=${res% *}
	res=${res#* }
	[[ $res == OK ]] || break
done
assert_eq "creating files on a full disk" ENOSPC "$res"
log "SQLite full after $created empty files"
# the intent log's reserve let the open group commit, then each
# operation committed on its own; no group was left unapplied
grep -q "the disk is full: the intent log is off" "$DLOG" ||
	fail "no word of the intent log's reserve given back on a full disk"
if grep -q "cannot be applied again" "$DLOG"; then
	fail "a group was not applied on a full disk: $(grep 'cannot be applied' "$DLOG")"
fi
# exactly the files whose creation succeeded exist
listed=$(find "$MNT/main/meta" -type f | wc -l)
assert_eq "files listed after SQLITE_FULL" "$created" "$listed"
assert_absent "$MNT/main/meta/e$(printf %05d "$created")"
assert_errno ENOSPC 'os.mkdir(M + "/main/full-dir")'
assert_absent "$MNT/main/full-dir"
# an unlink either fails with ENOSPC and keeps the file, or works
res=$(T python3 - "$MNT/main/meta/e00001" <<-'EOF'
	import errno, os, sys
	try:
	    os.unlink(sys.argv[1])
	    print("OK")
	except OSError as e:
	    print(errno.errorcode.get(e.errno, str(e.errno)))
	EOF
)
case $res in
OK) assert_absent "$MNT/main/meta/e00001"; created=$((created - 1)) ;;
ENOSPC) assert_exists "$MNT/main/meta/e00001" ;;
*) fail "unlink on a full disk: $res" ;;
esac
log "unlink on a full disk: $res"
for i in 1 2 3; do
	assert_same_content "$TMP/keep$i" "$MNT/main/keep$i"
done

# remove the ballast: everything works again, no remount; the intent
# log takes its reserve again (the flusher tries every 5 s)
rm "$DISK/ballast"
for ((i = 0; i < 40; i++)); do
	grep -q "the intent log is on again" "$DLOG" && break
	sleep 0.5
done
grep -q "the intent log is on again" "$DLOG" ||
	fail "the intent log stayed off once the disk had room"
[[ -f $STORE/meta.reserve ]] || fail "no meta.reserve once the disk had room"
mkdir "$MNT/main/after"
rm "$MNT/main/meta/e00000"
assert_absent "$MNT/main/meta/e00000"
rand_file "$TMP/last" $((2 * MIB + 1))
assert_eq "fsync after the ballast went" OK \
	"$(fsync_write "$MNT/main/after/last" "$TMP/last")"
assert_same_content "$TMP/last" "$MNT/main/after/last"

# A flush that meets the full disk part way commits what it wrote, and
# an unmount with data still uncommitted fails loudly: 6 MiB accepted
# (one flush: less than inode_dirty_mb), then the disk filled from
# outside up to room for about two of its blocks past the reserve. The
# fsync fails with ENOSPC, the unmount exits 1 and names the file, and
# the file keeps the blocks that fitted: a prefix of its bytes.
for ((i = 1; i < n; i += 2)); do
	[[ fill$i == "$failed" ]] || rm "$MNT/main/fill$i"
done
drain
rand_file "$TMP/part" $((6 * MIB))
timeout 60 python3 - "$MNT/main/part" "$TMP/part" "$DISK/ballast2" \
	<<-'EOF' >"$TMP/part.out" ||
	import errno, os, sys
	path, src, ballast = sys.argv[1:4]
	fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
	os.write(fd, open(src, "rb").read())
	# room for the reserve (8 MiB) and 2.5 MiB: two blocks of 1 MiB
	sv = os.statvfs(os.path.dirname(ballast))
	n = (sv.f_bavail * sv.f_frsize - (8 * 1048576 + 2621440)) // 65536
	with open(ballast, "wb") as f:
	    for i in range(n):
	        f.write(bytes(65536))
	try:
	    os.fsync(fd)
	    print("fsync: OK")
	except OSError as e:
	    print("fsync:", errno.errorcode.get(e.errno, str(e.errno)))
	os.close(fd)
	EOF
	fail "the writer on a full disk did not end: $(cat "$TMP/part.out")"
assert_eq "fsync of a flush the disk filled under" "fsync: ENOSPC" \
	"$(cat "$TMP/part.out")"
pid=${DAEMON_PID[$MNT]}
T fusermount3 -u "$MNT"
wait_pid_gone "$pid" 60 || fail "daemon $pid still running after unmount"
rc=0
wait "$pid" || rc=$?
unset "DAEMON_PID[$MNT]" "DAEMON_CHILD[$MNT]"
assert_eq "exit status of an unmount that lost data" 1 "$rc"
assert_match "the log of the unmount" \
	"lost at unmount: 'main/part' \(inode [0-9]+\): [1-9][0-9]* block\(s\)" \
	"$(grep "lost at unmount" "$DLOG")"
rm "$DISK/ballast2"

fsck_store "$STORE"
assert_eq "tallyfsck exit status ($FSCK_OUT)" 0 "$FSCK_RC"
assert_eq "fsck status" clean "$(fsck_value status)"

mount_fs
for i in 1 2 3; do
	assert_same_content "$TMP/keep$i" "$MNT/main/keep$i"
done
assert_same_content "$TMP/$failed" "$MNT/main/$failed"
assert_same_content "$TMP/new" "$MNT/main/new"
assert_same_content "$TMP/last" "$MNT/main/after/last"
assert_eq "files after remount" $((created - 1)) \
	"$(find "$MNT/main/meta" -type f | wc -l)"
# the blocks of part that fitted: a prefix, whole blocks, not all of it
size=$(stat -c %s "$MNT/main/part")
log "part keeps $size of $((6 * MIB)) bytes"
((size > 0 && size < 6 * MIB && size % MIB == 0)) ||
	fail "part keeps $size bytes after its flush met the full disk"
T cmp -n "$size" "$TMP/part" "$MNT/main/part" >/dev/null ||
	fail "part holds $size bytes that are not its first ones"
umount_fs
log "ok"
