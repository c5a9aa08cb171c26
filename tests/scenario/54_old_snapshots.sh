#!/bin/bash
# SPDX-License-Identifier: MIT
# A store of format 4 with snapshots taken before snapshots had views
# (fixtures/format4, made by main at abf1f73: fixtures/make.sh with
# SNAPS=1; main with snapshots s1 and s2, dev with d1, each namespace
# changed after its snapshots). Its first open gives each snapshot a
# view (docs/design.md 13.3), and then:
#  - /.snapshots lists them, and each reads back as it was taken;
#  - a snapshot's st_ino is its view over the stored inode's number, the
#    same after a remount, which writes nothing more;
#  - the namespaces read back as made, inode numbers too;
#  - a new snapshot takes the next view; rollback to an old one works;
#  - tallyfsck finds the store clean.
SCN_TIMEOUT=180
source "$(dirname "$0")/lib.sh"

FX=$TALLY_SRC/tests/scenario/fixtures/format4
T tar xzf "$FX/store-snaps.tar.gz" -C "$TMP" || fail "cannot unpack the store"
SNAPS=$MNT/.snapshots
# q SQL: a query of the store's metadata, on a copy (sqlite3 leaves the
# store's files as they are)
q() {
	rm -rf "$TMP/q"
	mkdir "$TMP/q"
	cp "$STORE"/meta.db* "$TMP/q/"
	T sqlite3 "$TMP/q/meta.db" "$1"
}
views() { q "SELECT name || '=' || view FROM versions WHERE kind = 3 ORDER BY id"; }

assert_eq "the fixture's format" 4 "$(q "PRAGMA user_version")"
assert_eq "the fixture's snapshots, without views" "s1=0 d1=0 s2=0" \
	"$(views | xargs)"
assert_eq "the fixture's view counter" "" \
	"$(q "SELECT value FROM config WHERE key = 'next_view'")"

log "mounted: every snapshot gets a view, and reads back as taken"
mount_fs "$STORE" "$MNT"
for ns in main dev; do
	manifest "$MNT/$ns" --ino | sed "s|^|$ns |"
done >"$TMP/ns"
assert_same_manifest "the namespaces" "$FX/manifest-ns" "$TMP/ns"
assert_eq "/.snapshots" "dev main" "$(ls "$SNAPS" | xargs)"
assert_eq "/.snapshots/main" "s1 s2" "$(ls "$SNAPS/main" | xargs)"
assert_eq "/.snapshots/dev" "d1" "$(ls "$SNAPS/dev" | xargs)"
for s in main@s1 main@s2 dev@d1; do
	manifest "$SNAPS/${s%@*}/${s#*@}" | sed "s|^|$s |"
done >"$TMP/snaps"
assert_same_manifest "the snapshots" "$FX/manifest-snaps" "$TMP/snaps"
ino() { stat -c %i "$1"; }
f03=$(ino "$MNT/main/docs/f03")
s1ino=$(ino "$SNAPS/main/s1/docs/f03")
dev03=$(ino "$MNT/dev/docs/f03")
dino=$(ino "$SNAPS/dev/d1/docs/f03")
mkdir "$MNT/gone" # a change, so that the unmount commits a group
umount_fs

given=$(views | xargs)
log "views given: $given"
declare -A view
for kv in $given; do view[${kv%=*}]=${kv#*=}; done
for s in s1 s2 d1; do
	((${view[$s]:-0} > 0)) || fail "snapshot $s has no view: $given"
done
[[ ${view[s1]} != "${view[s2]}" && ${view[s1]} != "${view[d1]}" &&
	${view[s2]} != "${view[d1]}" ]] || fail "two snapshots share a view: $given"
max=$(printf '%s\n' "${view[@]}" | sort -n | tail -1)
assert_eq "the view counter" $((max + 1)) \
	"$(q "SELECT value FROM config WHERE key = 'next_view'")"
assert_eq "main@s1's st_ino: its view over the inode's number" \
	$(((${view[s1]} << 40) | f03)) "$s1ino"
assert_eq "dev@d1's st_ino: its view over the inode's number" \
	$(((${view[d1]} << 40) | dev03)) "$dino"

log "remounted: the same views, the same st_ino"
mount_fs "$STORE" "$MNT"
assert_eq "main@s1's st_ino after a remount" "$s1ino" \
	"$(ino "$SNAPS/main/s1/docs/f03")"
umount_fs
assert_eq "the views after a remount" "$given" "$(views | xargs)"

log "a new snapshot takes the next view; rollback to an old one"
mount_fs "$STORE" "$MNT"
ctl "snapshot main s3" || fail "snapshot main s3 failed"
ctl "rollback main s2 drop-later" || fail "rollback main s2 failed"
manifest "$MNT/main" | sed "s|^|main@s2 |" >"$TMP/got"
grep "^main@s2 " "$FX/manifest-snaps" >"$TMP/want"
assert_same_manifest "main rolled back to s2" "$TMP/want" "$TMP/got"
assert_eq "/.snapshots/main after the rollback" "s1 s2" \
	"$(ls "$SNAPS/main" | xargs)"
ctl "snapshot main s4" || fail "snapshot main s4 failed"
umount_fs
assert_eq "the new snapshot's view" "$((max + 2))" \
	"$(q "SELECT view FROM versions WHERE name = CAST('s4' AS BLOB)")"
fsck_consistent "the store" "$STORE"
assert_eq "its status ($FSCK_OUT)" clean "$(fsck_value status)"
log "ok"
