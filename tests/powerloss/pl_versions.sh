#!/bin/bash
# SPDX-License-Identifier: MIT
# Snapshots and their removal (a merge of two versions) under kill -9
# and power loss, the store on plfs (docs/design.md, section 13):
#  1. power loss right after `snapshot`: the namespace reads as it was,
#     the snapshot is there (a snapshot that returned is durable), the
#     store checks clean;
#  2. kill -9 right after `snapshot`: the snapshot is there (a command
#     that returned survives a crash of the daemon);
#  3. power loss right after `rmsnapshot` of a snapshot whose version
#     later ones changed (a merge that deletes and relabels rows, and
#     lowers counts): the namespace reads as it was, the merge is done
#     (durable too), the store checks clean; the snapshot left is removed
#     too, GC collects what only they held, and the store checks clean
#     with no orphan object file;
#  4. power loss right after `rollback` to the snapshot left: the
#     namespace reads as the snapshot (a rollback that returned is
#     durable), the store checks clean; the snapshot is removed, GC
#     collects what only the dropped version held, and the store checks
#     clean with no orphan object file.
SCN_TIMEOUT=${SCN_TIMEOUT:-240}
source "$(dirname "$0")/../scenario/lib.sh"
source "$(dirname "$0")/pl_lib.sh"

plfs_start
NS=$MNT/main
tree() { manifest "$NS" --no-mtime; }
nsnaps() {
	local r

	r=$(ctl_report "snapshots main") || fail "snapshots failed"
	report_get snapshots "$r"
}
same() {
	tree >"$TMP/now" || fail "$1: manifest"
	assert_same_manifest "$1" "$TMP/$2" "$TMP/now"
}
# clean WHAT: tallyfsck finds no drift, no dangling reference and no
# misfiled, nameless or homeless row; object files whose deletion the
# loss undid are allowed (leaked, never deleted: GC collects them)
clean() {
	local key

	umount_fs
	fsck_consistent "$1" "$STORE"
	for key in misfiled nameless homeless; do
		assert_eq "$1: tallyfsck $key ($FSCK_OUT)" 0 \
			"$(fsck_value "$key")"
	done
	mount_fs "$STORE" "$MNT"
}

mount_fs "$STORE" "$MNT"
mkdir "$NS" "$NS/dir"
rand_file "$NS/a" $((3 * MIB + 17))
rand_file "$NS/dir/b" 5000
printf 'c\n' >"$NS/c"
T setfattr -n user.x -v one "$NS/c"
drain # makes what it committed durable
tree >"$TMP/v0"

log "1: power loss right after a snapshot"
ctl "snapshot main s1" || fail "snapshot s1 failed"
power_loss
mount_fs "$STORE" "$MNT"
same "after a loss right after a snapshot" v0
assert_eq "the snapshot after the loss" 1 "$(nsnaps)"
clean "after a loss right after a snapshot"

log "2: kill -9 right after a snapshot"
printf 'REWRITE' | T dd of="$NS/a" bs=1 seek=$((MIB + 3)) conv=notrunc \
	status=none
T rm "$NS/dir/b"
T setfattr -n user.x -v two "$NS/c"
printf 'd\n' >"$NS/dir/d"
drain
tree >"$TMP/v1"
ctl "snapshot main s2" || fail "snapshot s2 failed"
kill9_fs
mount_fs "$STORE" "$MNT"
same "after kill -9 right after a snapshot" v1
assert_eq "both snapshots after kill -9" 2 "$(nsnaps)"

log "3: power loss right after a snapshot's removal (a merge)"
T truncate -s 100 "$NS/a"
T rm -r "$NS/dir"
T setfattr -x user.x "$NS/c"
drain
tree >"$TMP/v2"
ctl "rmsnapshot main s1" || fail "rmsnapshot s1 failed"
power_loss
mount_fs "$STORE" "$MNT"
same "after a loss right after a merge" v2
assert_eq "the merge after the loss: s2 alone" 1 "$(nsnaps)"
clean "after a loss right after a merge"
same "remounted" v2

log "4: power loss right after a rollback"
rand_file "$NS/e" $((2 * MIB + 5))
printf 'f\n' >>"$NS/c"
drain
ctl "rollback main s2" || fail "rollback s2 failed"
power_loss
mount_fs "$STORE" "$MNT"
same "after a loss right after a rollback" v1
assert_eq "the snapshot kept by the rollback" 1 "$(nsnaps)"
clean "after a loss right after a rollback"
ctl "rmsnapshot main s2" || fail "rmsnapshot s2 failed"
assert_eq "no snapshot left" 0 "$(nsnaps)"
same "without snapshots" v1
ctl "gc grace=0" || fail "gc failed"
umount_fs
fsck_consistent "at the end" "$STORE"
assert_eq "at the end: status ($FSCK_OUT)" clean "$(fsck_value status)"
assert_eq "at the end: orphan object files" 0 "$(fsck_value orphans)"
log "ok"
