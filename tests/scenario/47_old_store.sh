#!/bin/bash
# SPDX-License-Identifier: MIT
# A store of an earlier metadata format (the argument: 1, 2 or 3), made by
# that format (fixtures/formatN; fixtures/make.sh says how: two
# namespaces, main and its branch dev, which diverged; files of one byte
# to several blocks, a hole, the same block in two files, a hard link, a
# symlink, a fifo, xattrs, a link across namespaces). Issue 46 changes
# the format (format 2: versions; format 3: keys with versions; format
# 4: an inode's key too); a store
# of an earlier format is upgraded in place by the first open:
#  - killed during its upgrade (TALLYFS_FAULT=upgrade:1:9, before the
#    upgrade's commit), the store is still of its format, whole;
#  - mounted, it is upgraded (and says so), and every namespace reads
#    back as made, inode numbers too; tallyfsck finds it clean;
#  - it takes writes, and after a remount tallyfsck is clean again;
#  - tallyfsck alone upgrades a copy of it as well;
#  - a store of that format killed with records in its intent log
#    (store-ilog.tar.gz): they replay on its tables, then the store is
#    upgraded, and what they did is there.
OLD=${1:-1}
NEW=4
SCN_TIMEOUT=180
source "$(dirname "$0")/lib.sh"

FX=$TALLY_SRC/tests/scenario/fixtures/format$OLD
T tar xzf "$FX/store.tar.gz" -C "$TMP" || fail "cannot unpack the store"
# tree: both namespaces' manifests, as fixtures/make.sh wrote them
tree() {
	local ns
	for ns in main dev; do
		manifest "$MNT/$ns" --ino | sed "s|^|$ns |"
	done
}

# fmt STORE: its metadata's format (PRAGMA user_version)
fmt() { T sqlite3 "$1/meta.db" "PRAGMA user_version"; }
assert_eq "the fixture's format" "$OLD" "$(fmt "$STORE")"
T cp -a "$STORE" "$TMP/copy"

log "format $OLD killed during the upgrade: still format $OLD, whole"
rc=0
TALLYFS_FAULT=upgrade:1:9 T "$TALLYFS" -f "$STORE" "$MNT" >>"$DLOG" 2>&1 ||
	rc=$?
is_mounted "$MNT" && { fusermount3 -u "$MNT" || umount -l "$MNT"; }
assert_eq "the daemon killed during the upgrade" 137 "$rc"
grep -q "killed during the upgrade of" "$DLOG" ||
	fail "the fault did not fire: $(tail -3 "$DLOG")"
assert_eq "the format after the kill" "$OLD" "$(fmt "$STORE")"

log "mounted, it is upgraded and reads back as made"
mount_fs "$STORE" "$MNT"
grep -q "upgraded from format $OLD to $NEW" "$DLOG" ||
	fail "the mount did not say it upgraded: $(tail -3 "$DLOG")"
tree >"$TMP/now" || fail "manifest"
assert_same_manifest "the fixture's namespaces" "$FX/manifest" "$TMP/now"
assert_eq "a hard link: one inode" "$(stat -c %i "$MNT/main/hardlink")" \
	"$(stat -c %i "$MNT/main/docs/f03")"
assert_ne "two namespaces: two inodes" "$(stat -c %i "$MNT/main/dup1")" \
	"$(stat -c %i "$MNT/dev/dup1")"
umount_fs
assert_eq "the format after the mount" "$NEW" "$(fmt "$STORE")"
fsck_consistent "the upgraded store" "$STORE"
assert_eq "its status ($FSCK_OUT)" clean "$(fsck_value status)"
mount_fs "$STORE" "$MNT"

log "it takes writes, and checks clean after"
echo "appended" >>"$MNT/dev/docs/f10"
rm "$MNT/main/docs/f11"
T cp "$MNT/main/sparse" "$MNT/dev/sparse.copy"
umount_fs
fsck_consistent "after writes" "$STORE"
assert_eq "status after writes ($FSCK_OUT)" clean "$(fsck_value status)"
mount_fs "$STORE" "$MNT"
assert_same_content "$MNT/main/sparse" "$MNT/dev/sparse.copy"
assert_absent "$MNT/main/docs/f11"
[[ -e $MNT/dev/docs/f11 ]] || fail "dev lost a file main removed"
umount_fs

log "tallyfsck alone upgrades a store of format $OLD"
fsck_consistent "the copy" "$TMP/copy"
assert_eq "the copy's status ($FSCK_OUT)" clean "$(fsck_value status)"
assert_eq "the copy's format" "$NEW" "$(fmt "$TMP/copy")"

log "records of format $OLD in the intent log: replayed, then upgraded"
mkdir "$TMP/ilog"
T tar xzf "$FX/store-ilog.tar.gz" -C "$TMP/ilog" ||
	fail "cannot unpack the store with records"
IS=$TMP/ilog/store
(($(stat -c %s "$IS/meta.ilog") > 128)) || fail "the fixture's log is empty"
mount_fs "$IS" "$MNT"
grep -q "format $OLD is upgraded to $NEW once the intent log's records" "$DLOG" ||
	fail "the upgrade did not wait for the replay: $(tail -5 "$DLOG")"
assert_eq "a name made before the kill" "a name answered before the kill" \
	"$(cat "$MNT/main/pending/note")"
assert_exists "$MNT/main/pending/f04"
assert_absent "$MNT/main/docs/f04"
assert_absent "$MNT/dev/docs/f05"
assert_same_content "$MNT/main/pending/f04" "$MNT/dev/docs/f04"
umount_fs
assert_eq "its format after the replay" "$NEW" "$(fmt "$IS")"
fsck_consistent "the replayed store" "$IS"
assert_eq "its status ($FSCK_OUT)" clean "$(fsck_value status)"
log "ok"
