#!/bin/bash
# SPDX-License-Identifier: MIT
# Mount options: a block size chosen at store creation is recorded in the
# store and kept at the next mount (whatever -o says then); standard FUSE
# options pass through (ro: reads work, every change is EROFS); a store on
# a FUSE filesystem (here: inside another tallyfs mount) has its objects
# synced file by file, since FUSE does not pass syncfs(2) through; a bad
# sync_objects is refused; the kernel's writeback cache is on by default and
# refused where it cannot work; noxattr turns extended attributes off.
SCN_TIMEOUT=180
source "$(dirname "$0")/lib.sh"

mount_fs "$STORE" "$MNT" -o block_size=65536
assert_eq "block_size in status" 65536 "$(status_get block_size)"
mkdir "$MNT/main"
rand_file "$TMP/f" $((200 * 1024))
T cp "$TMP/f" "$MNT/main/f"
drain
# 200 KiB in 64 KiB blocks: 4 objects, the last one 8 KiB
assert_eq "objects of a 200 KiB file" 4 "$(objects "$MNT/main/f" | wc -w)"
assert_eq "object files" 4 "$(object_count)"
umount_fs

mount_fs "$STORE" "$MNT" -o block_size=4096
assert_eq "block_size kept by the store" 65536 "$(status_get block_size)"
assert_same_content "$TMP/f" "$MNT/main/f"
umount_fs

mount_fs "$STORE" "$MNT" -o ro
assert_same_content "$TMP/f" "$MNT/main/f"
assert_fails "Read-only file system" mkdir "$MNT/main/d"
assert_fails "Read-only file system" touch "$MNT/main/g"
assert_fails "Read-only file system" rm "$MNT/main/f"
umount_fs
assert_eq "object files after the ro mount" 4 "$(object_count)"

# a bad mode is refused before anything is mounted
rc=0
T "$TALLYFS" -f -o sync_objects=never "$STORE" "$MNT" >"$TMP/bad.log" 2>&1 ||
	rc=$?
assert_eq "exit status of a bad sync_objects" 2 "$rc"
assert_match "its message" "sync_objects is auto, file or fs" "$(cat "$TMP/bad.log")"

# the kernel's writeback cache: on by default, off with nowriteback or
# -s (by default), refused with meta= and with -s when asked for
mount_fs "$STORE" "$MNT"
assert_eq "writeback cache by default" True "$(status_get writeback_cache)"
umount_fs
mount_fs "$STORE" "$MNT" -o nowriteback
assert_eq "writeback cache with nowriteback" False \
	"$(status_get writeback_cache)"
assert_same_content "$TMP/f" "$MNT/main/f"
umount_fs
mount_fs "$STORE" "$MNT" -s
assert_eq "writeback cache with -s" False "$(status_get writeback_cache)"
umount_fs
for bad in "-o writeback,meta=postgres://u@127.0.0.1:1/db" "-s -o writeback"; do
	rc=0
	# shellcheck disable=SC2086 # the options are words
	T "$TALLYFS" -f $bad "$STORE" "$MNT" >"$TMP/bad.log" 2>&1 || rc=$?
	assert_eq "exit status of $bad" 2 "$rc"
	assert_match "its message" "-o writeback" "$(cat "$TMP/bad.log")"
done
is_mounted "$MNT" && fail "a refused writeback mounted"

# noxattr: every xattr call fails with EOPNOTSUPP (the kernel's answer once
# the daemon said ENOSYS), the virtual ones too; writes and reads go on; an
# xattr set before stays in the store and is back without the option
mount_fs "$STORE" "$MNT"
T setfattr -n user.kept -v before "$MNT/main/f"
assert_eq "xattrs by default" True "$(status_get xattrs)"
umount_fs
mount_fs "$STORE" "$MNT" -o noxattr
assert_eq "xattrs with noxattr" False "$(status_get xattrs)"
for call in "getfattr -n user.kept" "getfattr -n user.tally.refs" \
	"getfattr -d" "setfattr -n user.new -v 1" "setfattr -x user.kept"; do
	# shellcheck disable=SC2086 # the call is words
	assert_fails "Operation not supported" $call "$MNT/main/f"
done
rand_file "$TMP/g" $((300 * 1024))
T cp "$TMP/g" "$MNT/main/g"
T dd if="$TMP/f" of="$MNT/main/g" bs=4096 count=3 seek=5 conv=notrunc \
	status=none
T dd if="$TMP/f" of="$TMP/g" bs=4096 count=3 seek=5 conv=notrunc status=none
assert_same_content "$TMP/g" "$MNT/main/g"
umount_fs
mount_fs "$STORE" "$MNT"
assert_eq "an xattr set before noxattr" before \
	"$(T getfattr --only-values -n user.kept "$MNT/main/f")"
assert_same_content "$TMP/g" "$MNT/main/g"
T setfattr -x user.kept "$MNT/main/f"
umount_fs

# a store inside a tallyfs mount: on FUSE
mount_fs "$STORE" "$MNT"
INNER=$MNT/main/inner
IMNT=$TMP/imnt
mkdir -p "$INNER" "$IMNT"
mount_fs "$INNER" "$IMNT" -o block_size=4096
assert_match "the inner store's log" \
	"is on fuse, whose syncfs makes nothing durable" "$(cat "$DLOG")"
mkdir "$IMNT/main"
rand_file "$TMP/g" $((64 * 1024))
T cp "$TMP/g" "$IMNT/main/g"
T python3 -c 'import os,sys; fd=os.open(sys.argv[1], os.O_RDONLY); os.fsync(fd)' \
	"$IMNT/main/g"
assert_same_content "$TMP/g" "$IMNT/main/g"
umount_fs "$IMNT"
mount_fs "$INNER" "$IMNT"
assert_same_content "$TMP/g" "$IMNT/main/g"
umount_fs "$IMNT"
umount_fs

log "ok"
