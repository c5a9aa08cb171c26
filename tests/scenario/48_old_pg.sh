#!/bin/bash
# SPDX-License-Identifier: MIT
# A PostgreSQL store of an earlier metadata format (the argument: 1 or
# 2 or 3), made by that format (fixtures/formatN, fixtures/make.sh with PG=1:
# the tree of 47_old_store; meta-pg.sql its database, pg_dump'ed;
# store-pg.tar.gz its objects). Issue 46's format 4 upgrades it at the
# first mount when no other session is live:
#  - with another session live, the mount is refused, saying why, and
#    the database is left of its format;
#  - killed during the upgrade (TALLYFS_FAULT=upgrade:1:9, before its
#    commit): the server rolls it back, its format whole;
#  - alone, the mount upgrades it (and says so); every namespace reads
#    back as made, inode numbers too; tallyfsck finds it clean.
OLD=${1:-1}
NEW=4
SCN_TIMEOUT=240
source "$(dirname "$0")/lib.sh"
source "$TALLY_SRC/tests/pg/lib.sh"

FX=$TALLY_SRC/tests/scenario/fixtures/format$OLD
pg_start || fail "cannot start PostgreSQL"
PG_BEFORE_STOP=daemons_down
# as the store's role, which then owns what it makes
T "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 "$PG_URI" -f "$FX/meta-pg.sql" \
	>/dev/null || fail "cannot load the fixture's database"
T tar xzf "$FX/store-pg.tar.gz" -C "$TMP" || fail "cannot unpack the store"
META=(-o "meta=$PG_URI")
fmt() { pg_psql -At -c "SELECT format FROM tally_store"; }
tree() {
	local ns
	for ns in main dev; do
		manifest "$MNT/$ns" --ino | sed "s|^|$ns |"
	done
}
assert_eq "the fixture's format" "$OLD" "$(fmt)"

log "another session live: refused, format $OLD kept"
pg_psql -c "INSERT INTO sessions VALUES (77, 'elsewhere', 1, 0, 0,
	extract(epoch FROM now())::bigint + 600)" || fail "a session row"
refused_out=$(T "$TALLYFS" "${META[@]}" "$STORE" "$MNT" 2>&1) &&
	fail "mounted with another session live"
assert_match "says why" "session.s. are: unmount the others" "$refused_out"
is_mounted "$MNT" && fail "a refused mount is mounted"
assert_eq "the format after the refusal" "$OLD" "$(fmt)"
pg_psql -c "DELETE FROM sessions WHERE id = 77" || fail "the session row"

log "killed during the upgrade: format $OLD kept"
rc=0
TALLYFS_FAULT=upgrade:1:9 T "$TALLYFS" -f "${META[@]}" "$STORE" "$MNT" \
	>>"$DLOG" 2>&1 || rc=$?
is_mounted "$MNT" && { fusermount3 -u "$MNT" || umount -l "$MNT"; }
assert_eq "the daemon killed during the upgrade" 137 "$rc"
grep -q "killed during the upgrade of" "$DLOG" ||
	fail "the fault did not fire: $(tail -3 "$DLOG")"
# the killed connection's transaction is the server's to roll back
assert_eq "the format after the kill" "$OLD" "$(fmt)"

log "alone: upgraded, and it reads back as made"
mount_fs "$STORE" "$MNT" "${META[@]}"
grep -q "upgrading from format $OLD to $NEW" "$DLOG" ||
	fail "the mount did not say it upgraded: $(tail -3 "$DLOG")"
tree >"$TMP/now" || fail "manifest"
assert_same_manifest "the fixture's namespaces" "$FX/manifest-pg" "$TMP/now"
echo "appended" >>"$MNT/dev/docs/f10"
T cp "$MNT/main/sparse" "$MNT/dev/sparse.copy"
umount_fs
assert_eq "the format after the mount" "$NEW" "$(fmt)"
fsck_consistent "the upgraded store" -o "meta=$PG_URI" "$STORE"
assert_eq "its status ($FSCK_OUT)" clean "$(fsck_value status)"
mount_fs "$STORE" "$MNT" "${META[@]}"
assert_same_content "$MNT/main/sparse" "$MNT/dev/sparse.copy"
umount_fs
log "ok"
