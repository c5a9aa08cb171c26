#!/bin/bash
# SPDX-License-Identifier: MIT
# A store of metadata format 1, made by that format (fixtures/format1,
# its make.sh says how: two namespaces, main and its branch dev, which
# diverged; files of one byte to several blocks, a hole, the same block
# in two files, a hard link, a symlink, a fifo, xattrs, a link across
# namespaces). Issue 46 changes the format (versions); this is the store
# that change must open, or upgrade, as it was:
#  - tallyfsck finds it clean;
#  - mounted, every namespace reads back as made, inode numbers too;
#  - it takes writes, and after a remount tallyfsck is clean again.
SCN_TIMEOUT=180
source "$(dirname "$0")/lib.sh"

FX=$TALLY_SRC/tests/scenario/fixtures/format1
T tar xzf "$FX/store.tar.gz" -C "$TMP" || fail "cannot unpack the store"
# tree: both namespaces' manifests, as make.sh wrote them
tree() {
	local ns
	for ns in main dev; do
		manifest "$MNT/$ns" --ino | sed "s|^|$ns |"
	done
}

log "the fixture checks clean"
fsck_consistent "the fixture" "$STORE"
assert_eq "the fixture's status ($FSCK_OUT)" clean "$(fsck_value status)"

log "mounted, it reads back as made"
mount_fs "$STORE" "$MNT"
tree >"$TMP/now" || fail "manifest"
assert_same_manifest "the fixture's namespaces" "$FX/manifest" "$TMP/now"
assert_eq "a hard link: one inode" "$(stat -c %i "$MNT/main/hardlink")" \
	"$(stat -c %i "$MNT/main/docs/f03")"
assert_ne "two namespaces: two inodes" "$(stat -c %i "$MNT/main/dup1")" \
	"$(stat -c %i "$MNT/dev/dup1")"

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
log "ok"
