#!/bin/bash
# SPDX-License-Identifier: MIT
# tallyfsck on a real store: clean after a normal session (exit 0); a
# mounted store is refused (exit 2); a deleted object file is a dangling
# reference (exit 1); a junk object file named like a hash is an orphan
# (exit 1) that --repair removes without touching any referenced object;
# a dangling reference cannot be repaired (the data is gone), so it is
# still reported (exit 1) after --repair; refcount drift made by hand in
# the metadata is found and --repair rebuilds the exact counts. Also: a
# missing or foreign directory cannot be checked (exit 2).
SCN_TIMEOUT=180
source "$(dirname "$0")/lib.sh"

# expect_fsck WHAT RC KEY=VALUE...: run tallyfsck (args in FSCK_ARGS) and
# check the exit code and report lines.
expect_fsck() {
	local what=$1 rc=$2 kv

	shift 2
	fsck_store "${FSCK_ARGS[@]}"
	assert_eq "$what: tallyfsck exit code (output: $FSCK_OUT)" "$rc" \
		"$FSCK_RC"
	for kv in "$@"; do
		assert_eq "$what: tallyfsck '${kv%%=*}' (output: $FSCK_OUT)" \
			"${kv#*=}" "$(fsck_value "${kv%%=*}")"
	done
}

mount_fs
mkdir "$MNT/main" "$MNT/dev"
rand_file "$TMP/big" $((3 * MIB))
T cp "$TMP/big" "$MNT/main/big"
printf 'small\n' >"$MNT/main/small"
T ln "$MNT/main/big" "$MNT/dev/big"          # refs 2
T cp "$TMP/big" "$MNT/main/big-again"        # dedup: refs 3
mapfile -t big_objs < <(objects "$MNT/main/big")

# ------------------------------------------------- mounted: cannot run
FSCK_ARGS=("$STORE")
expect_fsck "mounted store" 2
assert_match "tallyfsck on a mounted store" '(in use|already|busy)' \
	"$FSCK_OUT"
# --wait on a store held: says what it waits for first, not a failure;
# the refusal once the wait is over
FSCK_ARGS=(--wait=1 "$STORE")
expect_fsck "--wait on a mounted store" 2
assert_eq "--wait's first line" \
	"tallyfsck: waiting for pid ${DAEMON_PID[$MNT]} to close the store" \
	"$(head -n 1 <<<"$FSCK_OUT")"
assert_match "--wait's refusal at the end" 'already in use' \
	"$(tail -n 2 <<<"$FSCK_OUT")"
FSCK_ARGS=(--repair "$STORE")
expect_fsck "mounted store, --repair" 2
umount_fs

# ------------------------------------------------------------- clean
FSCK_ARGS=("$STORE")
expect_fsck "clean store" 0 objects=4 references=10 dangling=0 orphans=0 \
	drift_under=0 drift_over=0 "status=clean"
all_objs=$(store_objects)

# ---------------------------------------------------------- dangling
victim=${big_objs[1]}   # block 1
vfile=$STORE/shards/0/${victim:0:2}/$victim
mv "$vfile" "$TMP/saved-object"
# dangling counts references: three blocks (main/big, dev/big,
# main/big-again) name the missing object
expect_fsck "a deleted object file" 1 dangling=3 orphans=0 \
	"status=problems found"
assert_match "tallyfsck names the dangling object" "$victim" "$FSCK_OUT"
mv "$TMP/saved-object" "$vfile"
expect_fsck "the object file put back" 0 dangling=0 "status=clean"

# ------------------------------------------------------------ orphan
junk=0123456789abcdef0123456789abcdef
mkdir -p "$STORE/shards/0/01"
printf 'junk that no block references\n' >"$STORE/shards/0/01/$junk"
expect_fsck "a junk object file" 1 orphans=1 dangling=0 \
	"status=problems found"
assert_match "tallyfsck names the orphan" "$junk" "$FSCK_OUT"
assert_exists "$STORE/shards/0/01/$junk"   # a plain check changes nothing

FSCK_ARGS=(--repair "$STORE")
expect_fsck "--repair of an orphan" 1 orphans=1 removed=1 "status=repaired"
assert_absent "$STORE/shards/0/01/$junk"
assert_eq "object files after --repair" "$all_objs" "$(store_objects)"
FSCK_ARGS=("$STORE")
expect_fsck "after --repair of an orphan" 0 orphans=0 "status=clean"

# ------------------------------------------- dangling + orphan, repair
mv "$vfile" "$TMP/saved-object"
printf 'more junk\n' >"$STORE/shards/0/01/$junk"
expect_fsck "dangling and orphan" 1 dangling=3 orphans=1
FSCK_ARGS=(--repair "$STORE")
expect_fsck "--repair of dangling and orphan" 1 removed=1
assert_absent "$STORE/shards/0/01/$junk"
assert_eq "object files after --repair (the referenced ones all kept)" \
	"$(grep -v "$victim" <<<"$all_objs")" "$(store_objects)"
# the dangling reference cannot be repaired: the data is gone
FSCK_ARGS=("$STORE")
expect_fsck "dangling after --repair (cannot be repaired)" 1 dangling=3 \
	orphans=0 "status=problems found"

# reading the block whose object is missing fails (never returns zeros);
# the other blocks still read
mount_fs
idx=1
assert_fails "Input/output error" dd if="$MNT/main/big" of=/dev/null \
	bs=1M skip=$idx count=1
assert_fails "Input/output error" cp "$MNT/dev/big" "$TMP/copy"
T dd if="$MNT/main/big" of="$TMP/block0" bs=1M count=1 status=none
T dd if="$TMP/big" of="$TMP/block0.want" bs=1M count=1 status=none
assert_same_content "$TMP/block0.want" "$TMP/block0"
assert_eq "small still reads" small "$(cat "$MNT/main/small")"
umount_fs
mv "$TMP/saved-object" "$vfile"
expect_fsck "the object file put back again" 0 "status=clean"

# ------------------------------------------------------ refcount drift
# made by hand in the SQLite metadata (the schema of core/meta/meta_db.c)
db=$STORE/meta.db
if ! command -v sqlite3 >/dev/null; then
	fail "sqlite3 (the SQLite shell) is needed to make drift by hand"
fi
T sqlite3 "$db" "UPDATE objects SET refcount = refcount + 5
	WHERE name = '${big_objs[0]}';
	UPDATE objects SET refcount = refcount - 1
	WHERE name = '${big_objs[2]}';" ||
	fail "cannot change the refcounts in $db"
expect_fsck "drift" 1 drift_over=1 drift_under=1 dangling=0 orphans=0 \
	"status=problems found"
FSCK_ARGS=(--repair "$STORE")
expect_fsck "--repair of drift" 1 repaired=2 removed=0 "status=repaired"
FSCK_ARGS=("$STORE")
expect_fsck "after --repair of drift" 0 drift_over=0 drift_under=0 \
	"status=clean"
assert_eq "object files after the drift repair" "$all_objs" \
	"$(store_objects)"
mount_fs
assert_eq "refs of main/big after the repair" "3 3 3" \
	"$(refs "$MNT/main/big")"
assert_same_content "$TMP/big" "$MNT/main/big"
# right after an unmount the daemon may still be closing the store:
# --wait waits for it instead of refusing
pid=${DAEMON_PID[$MNT]}
rand_file "$TMP/late" $((3 * MIB))
T cp "$TMP/late" "$MNT/main/late" # a close: the unmount drains it
T fusermount3 -u "$MNT"
FSCK_ARGS=(--wait=60 "$STORE")
expect_fsck "--wait right after the unmount" 0 orphans=0
wait_pid_gone "$pid" 60 || fail "daemon $pid still running"
unset "DAEMON_PID[$MNT]" "DAEMON_CHILD[$MNT]"
FSCK_ARGS=(--wait=x "$STORE")
expect_fsck "--wait=x" 2

# ------------------------------------------------------ nameless inodes
# a row with links that no entry names (what an attribute write racing
# another node's removal once made), made by hand: found; --repair gives
# it a link count of 0, and the next mount frees it with its object
objs_before=$(object_count)
T sqlite3 "$db" "DELETE FROM dentries WHERE name IN ('small',
	CAST('small' AS BLOB))" || fail "cannot remove the entry in $db"
FSCK_ARGS=("$STORE")
expect_fsck "a nameless inode" 1 nameless=1 "status=problems found"
assert_match "its line" "nameless: inode [0-9]+ has links" "$FSCK_OUT"
FSCK_ARGS=(--repair "$STORE")
expect_fsck "--repair of a nameless inode" 1 nameless=1 repaired=1 \
	"status=repaired"
FSCK_ARGS=("$STORE")
expect_fsck "after its repair" 0 nameless=0 "status=clean"
mount_fs
assert_same_content "$TMP/big" "$MNT/main/big"
umount_fs
expect_fsck "after the mount that freed it" 0 nameless=0 orphans=0 \
	"status=clean"
assert_eq "object files once the nameless inode is freed" \
	$((objs_before - 1)) "$(object_count)"

# ------------------------------------------------------ homeless rows
# block and xattr rows of an inode that has no row (what a flush that
# committed after another node removed its inode once left), made by
# hand: a file's blocks moved to an inode number nobody has, its row and
# entry removed, and an xattr row of another such number: found;
# --repair removes the rows, and the object only they named goes
mount_fs
rand_file "$TMP/solo" $((64 * 1024))
T cp "$TMP/solo" "$MNT/main/solo"
solo_ino=$(stat -c %i "$MNT/main/solo")
umount_fs
objs_before=$(object_count)
T sqlite3 "$db" "UPDATE extents SET ino = 999999 WHERE ino = $solo_ino;
	DELETE FROM dentries WHERE ino = $solo_ino;
	DELETE FROM inodes WHERE ino = $solo_ino;
	INSERT INTO xattrs(ino, name, ver, value) VALUES (999998,
		CAST('user.x' AS BLOB), 0, CAST('v' AS BLOB))" ||
	fail "cannot make homeless rows in $db"
FSCK_ARGS=("$STORE")
expect_fsck "homeless rows" 1 homeless=2 drift_over=0 drift_under=0 \
	"status=problems found"
assert_match "its line" "homeless: inode 999999 is gone" "$FSCK_OUT"
FSCK_ARGS=(--repair "$STORE")
expect_fsck "--repair of homeless rows" 1 homeless=2 repaired=2 removed=1 \
	"status=repaired"
FSCK_ARGS=("$STORE")
expect_fsck "after their repair" 0 homeless=0 orphans=0 drift_over=0 \
	"status=clean"
assert_eq "object files once the homeless rows are removed" \
	$((objs_before - 1)) "$(object_count)"
mount_fs
assert_same_content "$TMP/big" "$MNT/main/big"
umount_fs

# ------------------------------------------------------ misfiled rows
# every row in its namespace's version (docs/design.md, section 13): a
# file, its xattr, a symlink, a hard link and a copy by ln into another
# namespace, as the mount writes them, are clean; an entry and an extent
# moved to another version by hand are found, and not repaired
mount_fs
T mkdir "$MNT/other"
rand_file "$MNT/main/vers" $((3 * 4096 + 5))
T setfattr -n user.v -v 1 "$MNT/main/vers"
T ln -s vers "$MNT/main/vers-link"
T ln "$MNT/main/vers" "$MNT/main/vers-hard"
T ln "$MNT/main/vers" "$MNT/other/vers"
vers_ino=$(stat -c %i "$MNT/main/vers")
umount_fs
FSCK_ARGS=("$STORE")
expect_fsck "rows as the mount files them" 0 misfiled=0 "status=clean"
T sqlite3 "$db" "UPDATE dentries SET ver = ver + 7
		WHERE name = CAST('vers-hard' AS BLOB);
	UPDATE extents SET ver = ver + 7 WHERE ino = $vers_ino AND off = 0" ||
	fail "cannot misfile rows in $db"
expect_fsck "rows in another version" 1 misfiled=2 \
	"status=problems found"
assert_match "its line" "misfiled: 2 row.s. of inodes" "$FSCK_OUT"
FSCK_ARGS=(--repair "$STORE")
expect_fsck "--repair leaves them" 1 misfiled=2
T sqlite3 "$db" "UPDATE dentries SET ver = ver - 7
		WHERE name = CAST('vers-hard' AS BLOB);
	UPDATE extents SET ver = ver - 7 WHERE ino = $vers_ino AND off = 0"
FSCK_ARGS=("$STORE")
expect_fsck "filed back by hand" 0 misfiled=0 "status=clean"

# --------------------------------------------------------- cannot run
FSCK_ARGS=("$TMP/no-such-store")
expect_fsck "a missing store" 2
mkdir "$TMP/foreign"
: >"$TMP/foreign/file"
FSCK_ARGS=("$TMP/foreign")
expect_fsck "a directory that is not a store" 2
assert_eq "the foreign directory after tallyfsck" file \
	"$(ls -A "$TMP/foreign")"
FSCK_ARGS=()
expect_fsck "no arguments" 2
log "ok"
