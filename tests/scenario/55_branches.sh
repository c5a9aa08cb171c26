#!/bin/bash
# SPDX-License-Identifier: MIT
# Branches in O(1) (docs/design.md 13.2, 13.10 step 4) on a real mount:
# `branch SRC DST` copies no row and changes no count; the two diverge,
# each reading its own changes over the rows they share; DST has inode
# numbers of its own, stable across a remount; a snapshot of a branch is
# browsable and a rollback to it works; a branch of a branch reads
# through both; the source removed, the branches still read every byte
# through its versions (GC collects nothing they name); all removed,
# GC collects every object, and tallyfsck is clean at each step.
SCN_TIMEOUT=240
source "$(dirname "$0")/lib.sh"

mount_fs

# same A B WHAT: namespaces (or directories) A and B read alike
same() {
	manifest "$1" --no-mtime >"$TMP/a.mf"
	manifest "$2" --no-mtime >"$TMP/b.mf"
	assert_same_manifest "$3" "$TMP/a.mf" "$TMP/b.mf"
}
# keep NAME DIR: DIR's manifest kept as $TMP/NAME
keep() { manifest "$2" --no-mtime >"$TMP/$1"; }
# is NAME DIR WHAT: DIR reads as kept NAME did
is() {
	manifest "$2" --no-mtime >"$TMP/got"
	assert_same_manifest "$3" "$TMP/$1" "$TMP/got"
}

log "a namespace branched: no row copied, no count changed"
mkdir -p "$MNT/main/dir/sub"
rand_file "$TMP/big" $((3 * MIB + 7))
T cp "$TMP/big" "$MNT/main/dir/big"
printf 'small\n' >"$MNT/main/small"
printf 'gone\n' >"$MNT/main/dir/gone"
ln "$MNT/main/small" "$MNT/main/dir/sub/hard"
ln -s ../small "$MNT/main/dir/link"
setfattr -n user.a -v one "$MNT/main/small"
drain
inodes=$(status_get inodes)
refs_before=$(refs "$MNT/main/dir/big")
objs_before=$(store_objects)
rep=$(ctl_report "branch main dev") || fail "branch failed: $rep"
assert_eq "inodes copied" 0 "$(report_get inodes "$rep")"
assert_eq "inodes stored after the branch" "$inodes" "$(status_get inodes)"
assert_eq "counts after the branch" "$refs_before" \
	"$(refs "$MNT/main/dir/big")"
assert_eq "objects after the branch" "$objs_before" "$(store_objects)"
same "$MNT/main" "$MNT/dev" "dev as main"
assert_ne "st_ino of dev/small" "$(stat -c %i "$MNT/main/small")" \
	"$(stat -c %i "$MNT/dev/small")"
assert_eq "a hard link in dev, one st_ino" \
	"$(stat -c %i "$MNT/dev/small")" "$(stat -c %i "$MNT/dev/dir/sub/hard")"
ino_dev=$(stat -c %i "$MNT/dev/dir/big")

log "the two diverge"
keep main0 "$MNT/main"
printf 'DEV!' | T dd of="$MNT/dev/dir/big" conv=notrunc status=none
printf 'dev only\n' >"$MNT/dev/new"
T rm "$MNT/dev/dir/gone"
T mv "$MNT/dev/small" "$MNT/dev/dir/small2"
setfattr -n user.a -v two "$MNT/dev/dir/small2"
is main0 "$MNT/main" "main after dev's changes"
assert_eq "dev's bytes" "DEV!" "$(head -c 4 "$MNT/dev/dir/big")"
assert_same_content "$TMP/big" "$MNT/main/dir/big"
printf 'main only\n' >"$MNT/main/dir/gone"
mkdir "$MNT/main/later"
assert_absent "$MNT/dev/later"
assert_eq "dev's gone, main's rewritten" "" \
	"$(ls "$MNT/dev/dir" | grep -x gone || true)"
keep main1 "$MNT/main"
keep dev1 "$MNT/dev"

log "a snapshot of a branch, browsed, rolled back to"
ctl "snapshot dev s1" || fail "snapshot dev s1 failed"
printf 'after s1\n' >"$MNT/dev/after"
is dev1 "$MNT/.snapshots/dev/s1" "dev@s1 as browsed"
assert_errno EROFS 'open(M + "/.snapshots/dev/s1/x", "w")'
ctl "rollback dev s1" || fail "rollback dev s1 failed"
is dev1 "$MNT/dev" "dev rolled back to s1"
ctl "rmsnapshot dev s1" || fail "rmsnapshot dev s1 failed"
is dev1 "$MNT/dev" "dev without its snapshot"
is main1 "$MNT/main" "main through dev's versions"

log "a branch of a branch; a remount"
ctl "branch dev dev2" || fail "branch dev dev2 failed"
same "$MNT/dev" "$MNT/dev2" "dev2 as dev"
printf 'dev2\n' >"$MNT/dev2/dir/big"
is dev1 "$MNT/dev" "dev after dev2's write"
keep dev2 "$MNT/dev2"
remount_fs
is main1 "$MNT/main" "main after a remount"
is dev1 "$MNT/dev" "dev after a remount"
is dev2 "$MNT/dev2" "dev2 after a remount"
assert_eq "st_ino of dev/dir/big after a remount" "$ino_dev" \
	"$(stat -c %i "$MNT/dev/dir/big")"

log "bad commands change nothing"
assert_eq "branch over a namespace" EEXIST "$(ctl_errno "branch dev main")"
# a rename over a branched namespace, or an empty one's
assert_errno EBUSY 'os.rename(M + "/dev2", M + "/dev")'
mkdir "$MNT/empty"
assert_errno EBUSY 'os.rename(M + "/empty", M + "/dev2")'
rmdir "$MNT/empty"
mkdir "$MNT/apart"
assert_eq "diff of namespaces made apart" EXDEV \
	"$(ctl_errno "diff main apart")"
rmdir "$MNT/apart"
is dev1 "$MNT/dev" "dev after bad commands"

log "diff between branches: what each changed since the branch"
rep=$(ctl_report "diff main dev") || fail "diff main dev failed: $rep"
# the root and dir: their entries changed (mtime); dir/sub/hard: the
# inode dev moved to dir/small2 got another xattr; main's later, small
# (moved in dev) and gone (rewritten in main, removed in dev)
assert_eq "diff main dev" "$(printf '%s\n' "M ." "M dir" "M dir/big" \
	"D dir/gone" "A dir/small2" "M dir/sub/hard" "D later" "A new" \
	"D small")" "$(grep -E '^[ADM] ' <<<"$rep")"
rep=$(ctl_report "diff dev dev2") || fail "diff dev dev2 failed: $rep"
assert_eq "diff dev dev2" "M dir/big" "$(grep -E '^[ADM] ' <<<"$rep")"

log "the source removed: its versions stay for its branches"
T rm -rf "$MNT/main"
assert_absent "$MNT/main"
ctl "gc grace=0" || fail "gc failed"
is dev1 "$MNT/dev" "dev without main, after GC"
is dev2 "$MNT/dev2" "dev2 without main, after GC"
assert_eq "dev's big, but its first block" \
	"$(tail -c +5 "$TMP/big" | sha256sum)" \
	"$(tail -c +5 "$MNT/dev/dir/big" | sha256sum)"
umount_fs
fsck_consistent "the source removed" "$STORE"
assert_eq "tallyfsck: nameless" 0 "$(fsck_value nameless)"
assert_eq "tallyfsck: misfiled" 0 "$(fsck_value misfiled)"
mount_fs

log "every branch removed: every object collected"
# the root listed first: the kernel knows its entries, the mount's entry
# cache does not (each removal looks its namespace up in the store)
T ls -l "$MNT" >/dev/null
T rm -rf "$MNT/dev" "$MNT/dev2"
ctl "gc grace=0" || fail "gc failed"
assert_eq "objects left" "" "$(store_objects)"
assert_eq "inodes left" 1 "$(status_get inodes)"
umount_fs
fsck_consistent "every branch removed" "$STORE"
assert_eq "tallyfsck: orphans" 0 "$(fsck_value orphans)"
log "ok"
