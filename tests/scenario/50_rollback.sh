#!/bin/bash
# SPDX-License-Identifier: MIT
# Rollback of a namespace to a snapshot (docs/design.md, section 13):
# `rollback NS NAME` makes the namespace hold what its snapshot holds,
# dropping what was written since, in time that grows with that. The
# kernel had the changed files, names and attributes cached (read after
# each change): after the rollback every one of them reads as the
# snapshot did, and nothing made since is found. Bad commands, an open
# file of the namespace (EBUSY) and later snapshots (EEXIST, unless
# drop-later) are refused with nothing changed. The store stays
# consistent (tallyfsck), and the objects only the dropped versions held
# are collected.
SCN_TIMEOUT=300
source "$(dirname "$0")/lib.sh"

mount_fs

NS=$MNT/main

# state NAME: the namespace's manifest kept as $TMP/NAME
state() { manifest "$NS" --no-mtime >"$TMP/$1"; }
# is NAME WHAT: the namespace reads as state NAME did
is() {
	manifest "$NS" --no-mtime >"$TMP/got"
	assert_same_manifest "$2" "$TMP/$1" "$TMP/got"
}
# warm: the kernel caches every name, attribute and byte
warm() { T find "$NS" -type f -exec cat {} + >/dev/null; T ls -laR "$NS" >/dev/null; }

mkdir -p "$NS/dir/sub" "$NS/gone"
rand_file "$TMP/big" $((3 * MIB + 5))
T cp "$TMP/big" "$NS/dir/big"
printf 'small\n' >"$NS/small"
printf 'x\n' >"$NS/gone/x"
ln -s ../small "$NS/dir/link"
ln "$NS/small" "$NS/dir/sub/hard"
setfattr -n user.a -v one "$NS/small"
state s1
ctl "snapshot main s1" || fail "snapshot main s1 failed"
warm

# every kind of change, each read back so the kernel caches it
printf 'REWRITE' | T dd of="$NS/dir/big" bs=1 seek=4096 conv=notrunc \
	status=none
printf 'appended\n' >>"$NS/small"
rm "$NS/gone/x"
rmdir "$NS/gone"
mv "$NS/dir/sub" "$NS/moved"
setfattr -n user.a -v two "$NS/small"
chmod 600 "$NS/dir/big"
mkdir "$NS/new"
rand_file "$TMP/only2" $MIB
T cp "$TMP/only2" "$NS/new/only2"
warm
state s2
ctl "snapshot main s2" || fail "snapshot main s2 failed"
only2=$(objects "$NS/new/only2")

truncate -s 1000 "$NS/dir/big"
rm "$NS/small"
rand_file "$TMP/only3" $MIB
T cp "$TMP/only3" "$NS/new/only3"
only3=$(objects "$NS/new/only3")
ln -s gone "$NS/dir/link2"
warm
state now

# bad commands: refused, nothing changed
mkdir "$MNT/other"
assert_eq "later snapshots" EEXIST "$(ctl_errno "rollback main s1")"
assert_eq "no such snapshot" ENOENT "$(ctl_errno "rollback main s9")"
assert_eq "no such namespace" ENOENT "$(ctl_errno "rollback nothere s1")"
assert_eq "another namespace's snapshot" ENOENT \
	"$(ctl_errno "rollback other s1")"
assert_eq "a bad option" EINVAL "$(ctl_errno "rollback main s2 later")"
assert_eq "one argument" EINVAL "$(ctl_errno "rollback main")"
exec 3<"$NS/new/only3"
assert_eq "a file of the namespace open" EBUSY \
	"$(ctl_errno "rollback main s2")"
exec 3<&-
is now "after bad commands"

# back to s2: what the kernel cached of the later state is gone
ctl "rollback main s2" || fail "rollback main s2 failed"
is s2 "rolled back to s2"
assert_absent "$NS/new/only3"
assert_absent "$NS/dir/link2"
assert_exists "$NS/small"
list=$(ctl_report "snapshots main") || fail "snapshots failed"
assert_eq "both snapshots kept" 2 "$(report_get snapshots "$list")"

# written after the rollback, then dropped with s2 by drop-later
printf 'after\n' >"$NS/after"
warm
T "$TALLY_BUILD/tools/tallyctl" --no-progress "$MNT" rollback --drop-later main s1 >/dev/null ||
	fail "tallyctl rollback --drop-later main s1 failed"
is s1 "rolled back to s1, s2 dropped"
list=$(ctl_report "snapshots main") || fail "snapshots failed"
assert_eq "s1 alone kept" "main@s1" \
	"$(sed -n 's/^snapshot: //p' <<<"$list" | tr '\n' ' ' | sed 's/ $//')"

# the namespace goes on from s1, across a remount
printf 'goes on\n' >"$NS/goes-on"
state on
umount_fs
fsck_consistent "after two rollbacks" "$STORE"
mount_fs
is on "remounted"

# what only the dropped versions held is collected
ctl "rmsnapshot main s1" || fail "rmsnapshot main s1 failed"
ctl "gc grace=0" || fail "gc failed"
for o in $only2 $only3; do
	assert_eq "an object only a dropped version held, collected" 0 \
		"$(store_objects | grep -c -x -F "$o" || true)"
done
umount_fs
fsck_consistent "after gc" "$STORE"
assert_eq "tallyfsck: orphan object files after gc" 0 \
	"$(fsck_value orphans)"
log "ok"
