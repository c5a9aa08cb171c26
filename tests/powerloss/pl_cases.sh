#!/bin/bash
# SPDX-License-Identifier: MIT
# Power-loss cases: the store lives on plfs (tests/powerloss/plfs.c, which
# keeps every unsynced write in memory and drops it on "powerloss"), and
# the power goes (the daemon killed with SIGKILL, then plfs told to drop
# what was not synced) right after:
#  1. rm of a file fsync'ed before (2 MiB: two objects);
#  2. an overwrite of a whole fsync'ed file, close and drain (drain
#     makes what it committed durable: the new content, whole);
#  3. the same, committed by the 5 s flush timer instead of drain (the
#     old content, the new one, or the empty file in between: cp opens
#     with O_TRUNC, which commits at once, and the WAL may be synced
#     before the data is committed, as ext4 without auto_da_alloc);
#  4. rm, then an fsync of another file (the rm is durable then);
#  5. the hazard sync_objects=auto avoids: a store on plfs forced to use
#     syncfs (sync_objects=fs), whose FUSE syncfs makes nothing durable:
#     an fsync'ed file's objects are lost with the power, and tallyfsck
#     finds the references dangling; with the default, the same file
#     survives whole.
# In 1-3 other writes go on before the power goes (a 4 MiB file of 4 KiB
# blocks, committed by the timer): their objects' directories are synced, which on plfs
# (as on a journaling filesystem, on its own schedule) makes any unlink
# of an object file in them durable, while the metadata commit that
# allowed it may not be. After each: tallyfsck finds no drift and no
# dangling reference, the store mounts again, and every file reads back
# whole, either version of it, never EIO. In 4 the file and its objects
# are gone for good.
# Objects are made durable file by file here: plfs is a FUSE filesystem,
# whose syncfs(2) makes nothing durable (the daemon says so at mount).
SCN_TIMEOUT=${SCN_TIMEOUT:-300}
source "$(dirname "$0")/../scenario/lib.sh"
source "$(dirname "$0")/pl_lib.sh"

plfs_start

# fsync_file PATH: fsync(2) of one file.
fsync_file() {
	T python3 -c 'import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
os.fsync(fd)' "$1" || fail "fsync $1 failed"
}

# after_loss WHAT: the store checks with no drift and no dangling
# reference, and mounts again.
after_loss() {
	fsck_consistent "$1" --wait=30 "$STORE"
	mount_fs "$STORE" "$MNT"
}

# either PATH OLD NEW [empty]: PATH holds all of OLD or all of NEW (NEW
# may be "-": absent), or with "empty" nothing.
either() {
	local got

	if [[ ! -e $1 ]]; then
		[[ $3 == - ]] || fail "$1 is gone"
		return 0
	fi
	got=$(sha_of "$1")
	[[ ${4:-} == empty && $got == $(sha256sum </dev/null | cut -d' ' -f1) ]] &&
		return 0
	[[ $got == $(sha_of "$2") || ($3 != - && $got == $(sha_of "$3")) ]] ||
		fail "$1 holds neither version (sha $got): $(
			cat "$1" >/dev/null 2>&1 || echo unreadable)"
}

# other writes: a new 4 MiB file, committed by the flush timer (not
# drain, which would sync the WAL too)
others() {
	rand_file "$TMP/filler" $((4 * MIB))
	T cp "$TMP/filler" "$MNT/main/filler$1"
	sleep 7
}

rand_file "$TMP/a" $((2 * MIB))
rand_file "$TMP/b" $((2 * MIB))
rand_file "$TMP/c" 4096

mount_fs "$STORE" "$MNT" -o block_size=4096
assert_match "the daemon knows plfs drops what syncfs does not sync" \
	"is on fuse, whose syncfs makes nothing durable" "$(cat "$DLOG")"
mkdir "$MNT/main"

log "1: rm of an fsync'ed file, then power loss"
T cp "$TMP/a" "$MNT/main/one"
fsync_file "$MNT/main/one"
T rm "$MNT/main/one"
others 1
power_loss
after_loss "rm"
either "$MNT/main/one" "$TMP/a" -

log "2: an fsync'ed file overwritten, closed, drained, then power loss"
T cp "$TMP/a" "$MNT/main/two"
fsync_file "$MNT/main/two"
T cp "$TMP/b" "$MNT/main/two"
drain
others 2
power_loss
after_loss "overwrite and drain"
assert_same_content "$TMP/b" "$MNT/main/two"

log "3: the same, committed by the flush timer"
T cp "$TMP/a" "$MNT/main/three"
fsync_file "$MNT/main/three"
T cp "$TMP/b" "$MNT/main/three"
sleep 7
others 3
power_loss
after_loss "overwrite and timer"
either "$MNT/main/three" "$TMP/a" "$TMP/b" empty

log "4: rm, an fsync of another file, then power loss"
T cp "$TMP/a" "$MNT/main/four"
T cp "$TMP/c" "$MNT/main/other"
fsync_file "$MNT/main/four"
fsync_file "$MNT/main/other"
T rm "$MNT/main/four"
fsync_file "$MNT/main/other"
power_loss
after_loss "rm made durable"
assert_absent "$MNT/main/four"
assert_same_content "$TMP/c" "$MNT/main/other"
[[ -e $MNT/main/one ]] && assert_same_content "$TMP/a" "$MNT/main/one"
assert_same_content "$TMP/b" "$MNT/main/two"
either "$MNT/main/three" "$TMP/a" "$TMP/b" empty
# no orphan either, once GC collected what the lost commits left
ctl "gc grace=0" || fail "gc grace=0 failed"
umount_fs
fsck_store --wait=30 "$STORE"
assert_eq "tallyfsck after gc and a clean unmount: $FSCK_OUT" 0 "$FSCK_RC"

log "5: fsync'ed data on a store that trusts syncfs, then power loss"
STORE=$PL/store5
seen=$(wc -l <"$DLOG")
mount_fs "$STORE" "$MNT" -o block_size=4096,sync_objects=fs
mkdir "$MNT/main"
# the log says what is done: syncfs, which makes nothing durable here
said=$(tail -n +$((seen + 1)) "$DLOG")
grep -q "synced file by file" <<<"$said" &&
	fail "sync_objects=fs logged that objects are synced file by file"
grep -q "sync_objects=fs syncs its objects with syncfs" <<<"$said" ||
	fail "sync_objects=fs on plfs said nothing of syncfs: $said"
T cp "$TMP/a" "$MNT/main/five"
fsync_file "$MNT/main/five"
power_loss
fsck_store --wait=30 "$STORE"
dangling=$(fsck_value dangling)
((dangling > 0)) ||
	fail "sync_objects=fs on plfs lost nothing? ($FSCK_OUT)"
log "   as expected: $dangling dangling reference(s) with sync_objects=fs"
STORE=$PL/store6
mount_fs "$STORE" "$MNT" -o block_size=4096
mkdir "$MNT/main"
T cp "$TMP/a" "$MNT/main/five"
fsync_file "$MNT/main/five"
power_loss
after_loss "the default sync_objects"
assert_same_content "$TMP/a" "$MNT/main/five"
umount_fs

T fusermount3 -u "$PL" || fail "cannot unmount plfs"
log "ok"
