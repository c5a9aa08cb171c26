#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# Self-test of plfs (tests/powerloss/plfs.c): mounts it on a mktemp -d
# directory and checks what survives a power loss: file data and sizes
# after fsync/fdatasync only, directory operations after fsyncdir or an
# fsync of the file they created, a SQLite database in WAL mode, and a
# mount that keeps working across power losses. The EXIT trap unmounts and
# kills the daemon whatever happened; a watchdog does the same if the
# script overruns PL_TIMEOUT seconds, so a hung daemon fails the test.
set -euo pipefail
export LC_ALL=C.UTF-8

: "${PLFS:?PLFS must name the plfs binary (set by meson test)}"
PL_TIMEOUT=${PL_TIMEOUT:-200}

TMP=$(mktemp -d "${TMPDIR:-/tmp}/plfs-selftest.XXXXXX")
B=$TMP/backing
M=$TMP/mnt
CTL=$M/.plfs_ctl
mkdir "$B" "$M"
PID=
WATCHDOG=

log() { printf '# %s\n' "$*"; }

fail() {
	printf 'FAIL [selftest.sh:%s]: %s\n' "${BASH_LINENO[0]}" "$*" >&2
	exit 1
}

cleanup() {
	local rc=$?

	set +e
	trap - EXIT
	[[ -n $WATCHDOG ]] && kill "$WATCHDOG" 2>/dev/null
	if awk -v m="$M" '$2 == m { f = 1 } END { exit !f }' /proc/mounts; then
		timeout 10 fusermount3 -u "$M" || timeout 10 umount -l "$M"
	fi
	if [[ -n $PID ]] && kill -0 "$PID" 2>/dev/null; then
		sleep 1
		kill -9 "$PID" 2>/dev/null
	fi
	if [[ -e $TMP/watchdog ]]; then
		cat "$TMP/watchdog" >&2
		rc=1
	fi
	if ((rc != 0)); then
		echo "---- plfs log ----" >&2
		tail -n 30 "$TMP/plfs.log" >&2
	fi
	if awk -v m="$M" '$2 == m { f = 1 } END { exit !f }' /proc/mounts; then
		echo "cleanup: $M is still mounted; not removing $TMP" >&2
	else
		rm -rf --one-file-system "$TMP"
	fi
	if ((rc == 0)); then
		echo "1 passed, 0 failed"
	else
		echo "0 passed, 1 failed"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

mount_plfs() {
	local n=100

	"$PLFS" -f "$B" "$M" </dev/null >>"$TMP/plfs.log" 2>&1 &
	PID=$!
	while ((n-- > 0)); do
		awk -v m="$M" '$2 == m { f = 1 } END { exit !f }' /proc/mounts &&
			return 0
		kill -0 "$PID" 2>/dev/null || fail "plfs exited at mount"
		sleep 0.1
	done
	fail "$M not mounted after 10 s"
}

assert_eq() {
	[[ $2 == "$3" ]] || fail "$1: expected [$2], got [$3]"
}

# content FILE: the file's bytes, or <absent>.
content() {
	if [[ -e $1 || -L $1 ]]; then
		cat -- "$1"
	else
		echo "<absent>"
	fi
}

status() { sed -n "s/^$1 //p" "$CTL"; }

# powerloss: cut the power, check that the mount has started a new life.
powerloss() {
	local life

	life=$(status life)
	echo powerloss >"$CTL"
	assert_eq "life after a power loss" $((life + 1)) "$(status life)"
	assert_eq "pending ops after a power loss" 0 "$(status pending_ops)"
	assert_eq "unsynced files after a power loss" 0 \
		"$(status unsynced_files)"
	assert_eq "undo errors" 0 "$(status undo_errors)"
}

# fsync FILE, fdatasync FILE, fsyncdir DIR (coreutils sync on one file)
fsync() { sync -- "$1"; }
fdatasync() { sync -d -- "$1"; }
fsyncdir() { sync -- "$1"; }

mount_plfs
# the watchdog: kill the daemon, which unblocks whatever waits on it
(
	for ((i = 0; i < PL_TIMEOUT; i++)); do
		sleep 1
		kill -0 $$ 2>/dev/null || exit 0
	done
	echo "FAIL: watchdog: the self-test overran ${PL_TIMEOUT}s" \
		>"$TMP/watchdog"
	kill -9 "$PID"
	umount -l "$M"
) </dev/null >/dev/null 2>&1 &
WATCHDOG=$!

log "1. data written without fsync is lost"
printf 'never synced' >"$M/f1"
assert_eq "unsynced write reads back" "never synced" "$(content "$M/f1")"
powerloss
assert_eq "a file never synced" "<absent>" "$(content "$M/f1")"
printf 'v1' >"$M/f1"
fsync "$M/f1"
printf 'v2, not synced' >"$M/f1"
assert_eq "the mount sees the new data" "v2, not synced" "$(content "$M/f1")"
assert_eq "the backing file holds the synced data" "v1" "$(content "$B/f1")"
[[ $(status unsynced_bytes) -gt 0 ]] || fail "no unsynced bytes counted"
printf ' appended' >>"$M/f1"
powerloss
assert_eq "after a power loss" "v1" "$(content "$M/f1")"

log "2. fsync and fdatasync make data durable"
printf 'v2' >"$M/f1"
fsync "$M/f1"
assert_eq "unsynced bytes after fsync" 0 "$(status unsynced_bytes)"
powerloss
assert_eq "fsync'ed data" "v2" "$(content "$M/f1")"
printf '+more' >>"$M/f1"
fdatasync "$M/f1"
printf '+lost' >>"$M/f1"
powerloss
assert_eq "fdatasync'ed data" "v2+more" "$(content "$M/f1")"
# overwrites in the middle of a big file, at page boundaries and not
head -c $((3 * 1048576 + 777)) /dev/urandom >"$TMP/big"
cp "$TMP/big" "$M/big"
fsync "$M/big"
fsyncdir "$M"
cp "$TMP/big" "$TMP/big.synced"
for off in 0 4095 8192 1000000 3146000; do
	head -c 5000 /dev/urandom >"$TMP/patch"
	dd if="$TMP/patch" of="$M/big" bs=1000 seek=$off oflag=seek_bytes \
		conv=notrunc status=none
	dd if="$TMP/patch" of="$TMP/big" bs=1000 seek=$off oflag=seek_bytes \
		conv=notrunc status=none
done
cmp "$TMP/big" "$M/big" || fail "overwrites do not read back"
powerloss
cmp "$TMP/big.synced" "$M/big" || fail "unsynced overwrites survived"
dd if="$TMP/big" of="$M/big" bs=65536 conv=notrunc,fsync status=none
powerloss
cmp "$TMP/big" "$M/big" || fail "synced overwrites are lost"

log "3. a created file survives if fsync'ed, else not"
printf 'kept' >"$M/c1"
fsync "$M/c1"
printf 'lost' >"$M/c2"
: >"$M/c3"
mkdir "$M/d1" "$M/d2"
fsyncdir "$M/d1"
printf 'in a new directory' >"$M/d1/f"
fsync "$M/d1/f"
ln -s target "$M/s1"
powerloss
assert_eq "created and fsync'ed" "kept" "$(content "$M/c1")"
assert_eq "created, not synced" "<absent>" "$(content "$M/c2")"
assert_eq "created empty, not synced" "<absent>" "$(content "$M/c3")"
assert_eq "symlink, not synced" "<absent>" "$(content "$M/s1")"
# the file's own entry was durable, its directory's was not
[[ ! -e $M/d1 && ! -e $M/d2 ]] || fail "directories not synced survived"
mkdir "$M/d1"
printf 'x' >"$M/d1/f"
fsync "$M/d1/f"
fsyncdir "$M"
powerloss
assert_eq "file in a synced new directory" "x" "$(content "$M/d1/f")"

log "4. rename is durable after fsyncdir"
# rename_case WHAT CMD FINAL TMP: mv tmp final, run CMD, cut the power;
# then final and tmp must read FINAL and TMP.
rename_case() {
	mv -T "$M/tmp" "$M/final"
	$2
	powerloss
	assert_eq "$1: the target" "$3" "$(content "$M/final")"
	assert_eq "$1: the source" "$4" "$(content "$M/tmp")"
}
printf 'new' >"$M/tmp"
fsync "$M/tmp"
rename_case "rename, not synced" : "<absent>" "new"
rename_case "rename, fsyncdir" "fsyncdir $M" "new" "<absent>"
# over an existing file: the old one comes back
printf 'newer' >"$M/tmp"
fsync "$M/tmp"
fsyncdir "$M"
# (the replaced file waits in the trash, which the mount does not list)
trash_check() {
	[[ -n $(ls -A "$B/.plfs_trash") ]] ||
		fail "the replaced file is not kept aside"
	! ls -A "$M" | grep -q plfs || fail "plfs files listed: $(ls -A "$M")"
}
rename_case "rename over a file, not synced" trash_check "new" "newer"
# an fsync of the renamed file makes its rename durable
rename_case "rename over, file fsync'ed" "fsync $M/final" "newer" "<absent>"
[[ -z $(ls -A "$B/.plfs_trash") ]] || fail "trash not emptied when durable"
# over an empty directory
mkdir "$M/e1" "$M/e2"
fsyncdir "$M"
printf 'e2' >"$M/e2/in"
fsync "$M/e2/in"
fsyncdir "$M/e2"
mv -T "$M/e1" "$M/e2" 2>/dev/null && fail "rename over a full directory"
mv -T "$M/e2" "$M/e1"
assert_eq "dir renamed over an empty one" "e2" "$(content "$M/e1/in")"
powerloss
assert_eq "dir renamed over, not synced" "e2" "$(content "$M/e2/in")"
[[ -d $M/e1 && -z $(ls -A "$M/e1") ]] || fail "the replaced directory"

log "5. unlink is durable after fsyncdir"
rm "$M/final"
assert_eq "unlinked" "<absent>" "$(content "$M/final")"
powerloss
assert_eq "unlink, not synced" "newer" "$(content "$M/final")"
rm "$M/final"
fsyncdir "$M"
powerloss
assert_eq "unlink, synced" "<absent>" "$(content "$M/final")"
rmdir "$M/e1"
powerloss
[[ -d $M/e1 ]] || fail "rmdir, not synced: the directory is gone"
# an unlinked file still open can be read (fstat fails: plfs.c, LIMITS)
exec 3<"$M/c1"
rm "$M/c1"
IFS= read -r -N 100 -u 3 got || true
exec 3<&-
assert_eq "read of an open unlinked file" "kept" "$got"
powerloss
assert_eq "unlink of a file that was open" "kept" "$(content "$M/c1")"

log "6. truncate and extend without fsync are undone"
head -c 10000 /dev/urandom >"$TMP/t"
cp "$TMP/t" "$M/t"
fsync "$M/t"
fsyncdir "$M"
truncate -s 100 "$M/t"
assert_eq "size after shrink" 100 "$(stat -c %s "$M/t")"
powerloss
cmp "$TMP/t" "$M/t" || fail "shrink, not synced"
truncate -s 1M "$M/t"
assert_eq "size after extend" 1048576 "$(stat -c %s "$M/t")"
powerloss
cmp "$TMP/t" "$M/t" || fail "extend, not synced"
# shrink then extend: the tail reads as zeros, synced or not
truncate -s 100 "$M/t"
truncate -s 10000 "$M/t"
{
	head -c 100 "$TMP/t"
	head -c 9900 /dev/zero
} >"$TMP/t2"
cmp "$TMP/t2" "$M/t" || fail "shrink+extend does not read zeros"
fsync "$M/t"
powerloss
cmp "$TMP/t2" "$M/t" || fail "shrink+extend, synced"

log "7. SQLite in WAL mode, locking_mode=EXCLUSIVE"
# sql SYNC STATEMENTS: one session whose power is cut at its end
sql() {
	local rc=0

	sqlite3 -batch "$M/db" >/dev/null <<-EOF || rc=$?
	PRAGMA locking_mode=EXCLUSIVE;
	PRAGMA journal_mode=WAL;
	PRAGMA synchronous=$1;
	$2
	.shell echo powerloss >"$CTL" && kill -9 \$PPID
	EOF
	assert_eq "sqlite3 killed at the power loss" 137 "$rc"
}
check_db() {
	sqlite3 -batch "$M/db" <<-EOF
	PRAGMA locking_mode=EXCLUSIVE;
	PRAGMA integrity_check;
	SELECT count(*), total(length(v)) FROM t;
	EOF
}
sql FULL "CREATE TABLE t(k INTEGER PRIMARY KEY, v BLOB);
	WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n
		WHERE i < 500)
	INSERT INTO t(v) SELECT randomblob(3000) FROM n;"
assert_eq "synchronous=FULL commit" $'exclusive\nok\n500|1500000.0' \
	"$(check_db)"
sql OFF "INSERT INTO t(v) VALUES (randomblob(100000));"
assert_eq "synchronous=OFF commit" $'exclusive\nok\n500|1500000.0' \
	"$(check_db)"
sql FULL "INSERT INTO t(v) VALUES (randomblob(100000));
	PRAGMA wal_checkpoint(TRUNCATE);
	INSERT INTO t(v) VALUES (randomblob(7));
	BEGIN; DELETE FROM t; INSERT INTO t(v) VALUES (1);"
assert_eq "checkpoint, commit, open transaction" \
	$'exclusive\nok\n502|1600007.0' "$(check_db)"

log "8. the mount keeps working"
exec 3<"$M/f1"
powerloss
if cat <&3 >/dev/null 2>&1; then
	fail "a handle of the previous life still reads"
fi
exec 3<&-
printf 'life 2' >"$M/n"
fsync "$M/n"
fsyncdir "$M"
printf 'gone' >"$M/n2"
powerloss
assert_eq "written after a power loss" "life 2" "$(content "$M/n")"
assert_eq "not synced after a power loss" "<absent>" "$(content "$M/n2")"
# SIGUSR1 cuts the power too
life=$(status life)
printf 'x' >"$M/n3"
kill -USR1 "$PID"
for ((i = 0; i < 50; i++)); do
	[[ $(status life) == "$((life + 1))" ]] && break
	sleep 0.1
done
assert_eq "life after SIGUSR1" $((life + 1)) "$(status life)"
assert_eq "SIGUSR1 power loss" "<absent>" "$(content "$M/n3")"
# a workload of some size: 64 MiB through, synced, intact
head -c $((64 * 1048576)) /dev/urandom >"$TMP/w"
start=$(date +%s)
dd if="$TMP/w" of="$M/w" bs=1M conv=fsync status=none
fsyncdir "$M"
powerloss
cmp "$TMP/w" "$M/w" || fail "64 MiB synced"
log "64 MiB written, synced and checked in $(($(date +%s) - start)) s"
# the sync command makes everything durable
printf 'by sync' >"$M/s"
echo sync >"$CTL"
powerloss
assert_eq "the sync command" "by sync" "$(content "$M/s")"
# unmount is a clean shutdown: what was pending is written
printf 'at unmount' >"$M/u"
timeout 30 fusermount3 -u "$M"
wait "$PID" || fail "plfs exited $? at unmount"
PID=
assert_eq "written at unmount" "at unmount" "$(content "$B/u")"
[[ ! -e $B/.plfs_trash ]] || fail "the trash is left behind"
