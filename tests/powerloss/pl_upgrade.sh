#!/bin/bash
# SPDX-License-Identifier: MIT
# The upgrade of a store of metadata format 1 (the fixture of
# tests/scenario/47_old_store.sh) to format 4 under power loss: the
# store on plfs, the power gone with the daemon (SIGKILL, then plfs told
# to drop what was not synced):
#  1. right after the mount that upgraded it: the store opens again
#     (whichever format the lost writes left), every namespace whole;
#  2. during the upgrade, before its commit (TALLYFS_FAULT=upgrade:1:9):
#     the same;
#  3. after writes into the upgraded store and an fsync: they are there.
# After each, tallyfsck is clean. (sqlite3 cannot open the database on
# plfs, a FUSE mount, to read its format: 47_format1_store checks it.
# Formats 2 and 3 upgrade in the same one transaction,
# 47_format2_store and 47_format3_store.)
SCN_TIMEOUT=${SCN_TIMEOUT:-240}
source "$(dirname "$0")/../scenario/lib.sh"
source "$(dirname "$0")/pl_lib.sh"

FX=$TALLY_SRC/tests/scenario/fixtures/format1
plfs_start
fresh() {
	rm -rf "$STORE"
	T tar xzf "$FX/store.tar.gz" -C "$PL" || fail "cannot unpack the store"
	# durable as a sync(2) makes it on a disk (plfs's own command)
	echo sync >"$PL/.plfs_ctl" || fail "plfs refused sync"
}
tree() {
	local ns
	for ns in main dev; do
		manifest "$MNT/$ns" --ino | sed "s|^|$ns |"
	done
}
# whole WHAT: the store mounts, reads back as made, checks clean
whole() {
	mount_fs "$STORE" "$MNT"
	tree >"$TMP/now" || fail "$1: manifest"
	assert_same_manifest "$1" "$FX/manifest" "$TMP/now"
	umount_fs
	fsck_consistent "$1" "$STORE"
	assert_eq "$1: status ($FSCK_OUT)" clean "$(fsck_value status)"
}

log "1: power loss right after the mount that upgraded"
fresh
mount_fs "$STORE" "$MNT"
power_loss
whole "after a loss right after the upgrade"

log "2: power loss during the upgrade, before its commit"
fresh
rc=0
TALLYFS_FAULT=upgrade:1:9 T "$TALLYFS" -f "$STORE" "$MNT" >>"$DLOG" 2>&1 ||
	rc=$?
is_mounted "$MNT" && { fusermount3 -u "$MNT" || umount -l "$MNT"; }
assert_eq "killed during the upgrade" 137 "$rc"
echo powerloss >"$PL/.plfs_ctl" || fail "plfs refused powerloss"
whole "after a loss during the upgrade"

log "3: writes after the upgrade, synced, then a loss"
fresh
mount_fs "$STORE" "$MNT"
rand_file "$MNT/dev/after" $((3 * 4096 + 5))
cp "$MNT/dev/after" "$TMP/after"
T python3 -c "import os, sys; fd = os.open(sys.argv[1], os.O_RDONLY); os.fsync(fd)" "$MNT/dev/after"
power_loss
mount_fs "$STORE" "$MNT"
assert_same_content "$TMP/after" "$MNT/dev/after"
assert_same_content "$MNT/main/sparse" "$MNT/dev/sparse"
umount_fs
fsck_consistent "after a loss after synced writes" "$STORE"
assert_eq "its status ($FSCK_OUT)" clean "$(fsck_value status)"
log "ok"
