#!/bin/bash
# SPDX-License-Identifier: MIT
# A crash on a full disk, then a remount: the store opens and checks
# whatever filled the disk, as ext4 itself mounts a full disk
# (docs/durability.md, "A full disk"). The store is on a 48 MiB ext4 (a
# loop device under $TMP). Three orders, each ended by kill -9:
#  1. operations answered from the intent log alone, then the disk filled
#     from outside while the daemon is down: the replay commits into the
#     room the store kept (STORE/meta.reserve), given back at the open;
#  2. a clean unmount, the disk filled from outside to its last block:
#     a check of a store without a reserve writes nothing; a store keeps
#     its reserve across an unmount, so it mounts, reads, and the
#     ballast can go;
#  3. the disk filled from inside: a file written until ENOSPC, then
#     xattrs and creates until ENOSPC (the group's tier of the reserve
#     used up, as designed), then kill -9: the open's own tier replays
#     what the log holds, `rm` inside the mount and `gc` free the space,
#     and new writes work.
# Every answered operation is there after each remount; tallyfsck is
# clean each time.
SCN_TIMEOUT=420
source "$(dirname "$0")/lib.sh"

command -v mkfs.ext4 >/dev/null || fail "mkfs.ext4 is missing (e2fsprogs)"
DISK=$TMP/disk
mkdir "$DISK"

# new_disk: a fresh 48 MiB ext4 at $DISK (below $TMP: lib.sh's cleanup
# unmounts it after the fuse mount; -o loop detaches it at unmount).
new_disk() {
	if mountpoint -q "$DISK"; then
		T umount "$DISK" || fail "cannot unmount the loop disk"
	fi
	rm -f "$TMP/disk.img"
	T truncate -s 48M "$TMP/disk.img"
	T mkfs.ext4 -q -F "$TMP/disk.img" || fail "mkfs.ext4 failed"
	T mount -o loop "$TMP/disk.img" "$DISK" || fail "cannot mount the loop disk"
	STORE=$DISK/store
}

# fill_outside: a ballast file until the disk has not one block free.
fill_outside() {
	dd if=/dev/zero of="$DISK/ballast" bs=64k 2>/dev/null || true
	dd if=/dev/zero of="$DISK/ballast2" bs=1k 2>/dev/null || true
	sync
	assert_eq "free KiB after the ballast" 0 \
		"$(df -k --output=avail "$DISK" | tail -n 1 | tr -d ' ')"
}

# check_opens: tallyfsck replays and checks clean, then a mount shows
# every name $TMP/answered lists under $MNT/main.
check_opens() {
	local out

	out=$(T "$TALLYFSCK" "$STORE" 2>&1) ||
		fail "tallyfsck of the store on a full disk: $out"
	assert_match "tallyfsck on a full disk" "status: clean" "$out"
	mount_fs
	local missing=0
	while read -r name; do
		[[ -e $MNT/main/$name ]] || missing=$((missing + 1))
	done <"$TMP/answered"
	assert_eq "answered names missing after the remount" 0 "$missing"
}

# -- 1. answered from the log, the disk filled while the daemon is down
new_disk
mount_fs
mkdir "$MNT/main"
drain
# creates for a moment: the WAL stays small, so their replay needs pages
# beyond it; each name is written down once its create answered
: >"$TMP/answered"
T python3 - "$MNT/main" "$TMP/answered" <<-'EOF'
import os, sys
m, out = sys.argv[1:3]
with open(out, "w", buffering=1) as f:
    for i in range(400):
        open("%s/a%d" % (m, i), "w").close()
        f.write("a%d\n" % i)
EOF
kill9_fs
[[ -s $STORE/meta.reserve ]] || fail "no reserve was kept by the mount"
fill_outside
check_opens
umount_fs

# -- 2. a clean unmount, then the disk full to its last block. Without
# the reserve (a store unmounted by an older tallyfs, or mounted with
# -o nointent_log) a check writes nothing at all: the open brings no
# table up to date that is up to date.
rm "$STORE/meta.reserve"
fill_outside
out=$(T "$TALLYFSCK" "$STORE" 2>&1) ||
	fail "tallyfsck of a store without its reserve on a full disk: $out"
assert_match "tallyfsck without the reserve" "status: clean" "$out"
rm -f "$DISK/ballast" "$DISK/ballast2"
mount_fs
umount_fs
# with it (kept across a clean unmount), a mount too
fill_outside
check_opens
assert_eq "a read on a full disk" "" "$(cat "$MNT/main/a0")"
rm -f "$DISK/ballast" "$DISK/ballast2"
touch "$MNT/main/after-ballast"
echo after-ballast >>"$TMP/answered"
umount_fs

# -- 3. filled from inside: objects until ENOSPC, then metadata
new_disk
mount_fs
mkdir "$MNT/main"
: >"$TMP/answered"
T python3 - "$MNT/main" "$TMP/answered" <<-'EOF' >"$TMP/fill.out"
import errno, os, sys
m, out = sys.argv[1:3]
ans = open(out, "w", buffering=1)
fd = os.open(m + "/big", os.O_WRONLY | os.O_CREAT, 0o644)
try:
    for i in range(64):
        os.write(fd, os.urandom(1 << 20))
except OSError as e:
    print("write", errno.errorcode[e.errno])
os.close(fd)
ans.write("big\n")
i = 0
try:
    # 32 KiB of metadata an operation: the store's own room goes fast
    while i < 100000:
        name = "x%d" % i
        open("%s/%s" % (m, name), "w").close()
        ans.write(name + "\n")
        os.setxattr("%s/%s" % (m, name), "user.fill", os.urandom(32768))
        i += 1
except OSError as e:
    print("metadata", errno.errorcode[e.errno])
# and creates until they fail too
try:
    while i < 200000:
        name = "c%d" % i
        open("%s/%s" % (m, name), "w").close()
        ans.write(name + "\n")
        i += 1
except OSError as e:
    print("create", errno.errorcode[e.errno])
EOF
cat "$TMP/fill.out"
assert_eq "writes until the disk is full" "write ENOSPC" \
	"$(sed -n 1p "$TMP/fill.out")"
assert_eq "metadata until the disk is full" "metadata ENOSPC" \
	"$(sed -n 2p "$TMP/fill.out")"
assert_eq "creates on a full disk" "create ENOSPC" \
	"$(sed -n 3p "$TMP/fill.out")"
kill9_fs
log "after kill -9: $(df -k --output=avail "$DISK" | tail -n 1) KiB free," \
	"reserve $(stat -c %s "$STORE/meta.reserve" 2>/dev/null || echo none)"
check_opens
# the space comes back from inside the mount
before=$(df -k --output=avail "$DISK" | tail -n 1 | tr -d ' ')
rm "$MNT/main/big"
ctl gc >/dev/null || fail "gc on a full disk failed"
drain
after=$(df -k --output=avail "$DISK" | tail -n 1 | tr -d ' ')
((after - before >= 8192)) ||
	fail "rm and gc of a file of many MiB freed only $((after - before)) KiB"
sed -i '/^big$/d' "$TMP/answered"
rand_file "$TMP/new" $((3 * MIB + 5))
cp "$TMP/new" "$MNT/main/new"
sync "$MNT/main/new"
assert_same_content "$TMP/new" "$MNT/main/new"
umount_fs
out=$(T "$TALLYFSCK" "$STORE" 2>&1) || fail "tallyfsck at the end: $out"
assert_match "tallyfsck at the end" "status: clean" "$out"
mount_fs
assert_same_content "$TMP/new" "$MNT/main/new"
umount_fs
T umount "$DISK"
log "ok"
