#!/bin/bash
# SPDX-License-Identifier: MIT
# Remount persistence: files (empty, small, multi-block, sparse), a hard
# link, symlinks, a FIFO, xattrs, modes, owners, mtimes and a branch with
# its own changes survive unmount + remount exactly, inode numbers and the
# virtual xattrs (refs, objects) included, and so do the status counts.
# New inodes after a remount never reuse a live inode number; removals
# persist too. This scenario mounts daemonized (no -f).
SCN_TIMEOUT=240
source "$(dirname "$0")/lib.sh"

mount_fs -d

mkdir -p "$MNT/main/dir/sub" "$MNT/other"
: >"$MNT/main/empty"
printf 'small file\n' >"$MNT/main/small"
rand_file "$TMP/big" $((5 * MIB / 2))
T cp "$TMP/big" "$MNT/main/dir/big"
T truncate -s $((3 * MIB)) "$MNT/main/sparse"
printf 'middle' | T dd of="$MNT/main/sparse" bs=1 seek=$((MIB + 5)) \
	conv=notrunc status=none
T ln "$MNT/main/small" "$MNT/main/dir/sub/small-hardlink"
T ln -s ../small "$MNT/main/dir/rel-link"
T ln -s /nonexistent/target "$MNT/main/dangling"
T mkfifo "$MNT/main/dir/fifo"
T setfattr -n user.note -v "kept across remounts" "$MNT/main/small"
T setfattr -n user.dirnote -v 0x0001ff "$MNT/main/dir"
T chmod 0751 "$MNT/main/dir/sub"
T chmod 0600 "$MNT/main/dir/big"
T chown 1000:2000 "$MNT/main/empty"
T touch -h -d '2003-04-05 06:07:08.090807060' "$MNT/main/dangling"
T touch -d '2012-12-12 12:12:12.121212121' "$MNT/main/small"
T ln "$MNT/main/dir/big" "$MNT/other/big-across"
ctl "branch main dev" || fail "branch main dev failed"
printf 'only in dev\n' >"$MNT/dev/new"
printf 'DEV' | T dd of="$MNT/dev/dir/big" conv=notrunc status=none
T rm "$MNT/dev/empty"
T mv "$MNT/dev/small" "$MNT/dev/renamed"
# an O_DIRECT write, then at once a buffered one: the mtime the kernel
# stamped is the one stored. Its writeback cache keeps a file's times
# and sends them when it changed them; a buffered write within the same
# tick of its coarse clock changes nothing, and its pages reach the
# daemon after those times did. 20 files: most land in one tick.
mtimes() {
	T python3 - "$MNT/main/odirect" <<-'EOF'
	import os, sys
	d = sys.argv[1]
	for n in sorted(os.listdir(d)):
	    print(n, os.stat(os.path.join(d, n)).st_mtime_ns)
	EOF
}
mkdir "$MNT/main/odirect"
T python3 - "$MNT/main/odirect" <<-'EOF'
	import mmap, os, sys
	buf = mmap.mmap(-1, 4096)
	buf.write(b"d" * 4096)
	for i in range(20):
	    p = "%s/f%02d" % (sys.argv[1], i)
	    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_DIRECT, 0o644)
	    os.write(fd, buf)
	    os.close(fd)
	    fd = os.open(p, os.O_WRONLY)
	    os.pwrite(fd, b"b" * 100, 4096)
	    os.close(fd)
	# two O_DIRECT writes back to back, each through its own open
	# (issue 45: 9-17 of 40 files kept the daemon's own stamp of the
	# second, the kernel's tick later than what stat showed)
	for i in range(40):
	    p = "%s/g%02d" % (sys.argv[1], i)
	    for k in range(2):
	        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_DIRECT, 0o644)
	        os.pwrite(fd, buf, 4096 * k)
	        os.close(fd)
	EOF
mtimes >"$TMP/odirect.before"
drain

record() {
	local tag=$1

	manifest "$MNT" --ino --tally --no-ctl >"$TMP/$tag.mf" ||
		fail "manifest of $MNT failed"
	status_counts >"$TMP/$tag.counts"
	stat -c '%n %i %h' "$MNT" "$MNT"/*/ "$MNT/.tally" "$MNT/.tally/ctl" \
		"$MNT/.tally/status" >"$TMP/$tag.roots"
	store_objects >"$TMP/$tag.objects"
}

check_same() {
	local what=$1 a=$2 b=$3 f

	for f in mf counts roots objects; do
		assert_same_manifest "$what ($f)" "$TMP/$a.$f" "$TMP/$b.$f"
	done
}

record before
assert_eq "dev/dir/big differs from main/dir/big (copy-on-write)" 1 \
	"$(cmp -s "$MNT/main/dir/big" "$MNT/dev/dir/big"; echo $?)"
assert_same_content "$TMP/big" "$MNT/main/dir/big"

log "remount 1"
remount_fs -d
assert_same_manifest "mtimes after O_DIRECT and buffered writes" \
	"$TMP/odirect.before" <(mtimes)
record after1
check_same "after the first remount" before after1
assert_eq "pending_flushes after remount" 0 "$(status_get pending_flushes)"
assert_same_content "$TMP/big" "$MNT/main/dir/big"
assert_same_content "$TMP/big" "$MNT/other/big-across"
# main's rows and other's copy: dev, a branch in O(1), holds no row of
# its own but for the block it rewrote
assert_eq "refs of main/dir/big after remount" "2 2 2" \
	"$(refs "$MNT/main/dir/big")"
assert_eq "main/small after remount" "small file" "$(cat "$MNT/main/small")"
assert_eq "dev/new after remount" "only in dev" "$(cat "$MNT/dev/new")"
assert_eq "the sparse file after remount" \
	"$( (head -c $((MIB + 5)) /dev/zero; printf middle;
	    head -c $((2 * MIB - 11)) /dev/zero) | sha256sum)" \
	"$(T sha256sum <"$MNT/main/sparse")"
assert_eq "readlink after remount" "../small" \
	"$(readlink "$MNT/main/dir/rel-link")"
[[ -p $MNT/main/dir/fifo ]] || fail "main/dir/fifo is no FIFO after remount"

# changes after a remount persist; new inode numbers are fresh
printf 'created after remount\n' >"$MNT/main/later"
T mkdir "$MNT/main/laterdir"
for f in later laterdir; do
	ino=$(stat -c %i "$MNT/main/$f")
	if grep -q " ino=$ino\( \|$\)" "$TMP/before.mf"; then
		fail "main/$f got inode $ino, already used by:" \
			"$(grep " ino=$ino\( \|$\)" "$TMP/before.mf")"
	fi
done
T rm "$MNT/other/big-across"
T rm "$MNT/main/dir/sub/small-hardlink"
T rmdir "$MNT/other"
T setfattr -x user.note "$MNT/main/small"
T chmod 0640 "$MNT/main/small"
record before2
assert_eq "nlink of main/small after removing its hard link" 1 \
	"$(stat -c %h "$MNT/main/small")"

log "remount 2"
remount_fs -d
record after2
check_same "after the second remount" before2 after2
assert_absent "$MNT/other"
assert_absent "$MNT/main/dir/sub/small-hardlink"
assert_eq "refs of main/dir/big after the second remount" "1 1 1" \
	"$(refs "$MNT/main/dir/big")"
assert_eq "xattr removed before the remount" "" \
	"$(getfattr --only-values -n user.note "$MNT/main/small" 2>/dev/null)"

umount_fs
fsck_store "$STORE"
assert_eq "tallyfsck exit code (output: $FSCK_OUT)" 0 "$FSCK_RC"
log "ok"
