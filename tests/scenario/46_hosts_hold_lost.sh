#!/bin/bash
# SPDX-License-Identifier: MIT
# Issue 45 (the fault harness's finding with a COMMIT whose answer is
# lost): a shared store's first open of a file on a node adds the node's
# hold (core/fs/file.c). When the answer to that commit is lost, the
# server has committed the hold; the open used to fail with EIO, and the
# hold stayed with no open to drop it, so the file stayed held after
# another node removed its last name, until this node's session ended.
# Now the open adds the hold again (the same row): it succeeds, its
# close drops the hold, and the file removed meanwhile is freed.
# TALLYFS_FAULT=holdlost:1 loses the answer to the first hold's commit.
SCN_TIMEOUT=180
source "$(dirname "$0")/lib.sh"
source "$TALLY_SRC/tests/s3/lib.sh"
source "$TALLY_SRC/tests/pg/lib.sh"
source "$(dirname "$0")/remote_lib.sh"

shared_start tally-holdlost holdlost
# unheld: every inode whose last name went is freed
unheld() {
	[[ $(pg_psql -At -c 'SELECT count(*) FROM inodes WHERE nlink = 0') == 0 ]]
}

mount_node b
mkdir "$(mnt b)/ns"
echo "the file's bytes" >"$(mnt b)/ns/f"
drain "$(mnt b)"
# B's own hold (kept 2 s after its last close) goes first
holds() { pg_psql -At -c 'SELECT count(*) FROM open_holds'; }
no_holds() { [[ $(holds) == 0 ]]; }
wait_for 15 no_holds || fail "B's hold stays: $(holds)"

log "A's first open of the file: the answer to its hold's commit is lost"
export TALLYFS_FAULT=holdlost:1
mount_node a
unset TALLYFS_FAULT
got=$(T cat "$(mnt a)/ns/f" 2>&1) || fail "the open on A failed: $got"
assert_eq "A reads the file" "the file's bytes" "$got"
grep -q "whether it committed is unknown" "$DLOG" ||
	fail "the fault did not fire: $(tail -5 "$DLOG")"
assert_eq "one hold, A's" 1 "$(holds)"

log "B removes it: A's close dropped its hold, and the file is freed"
T rm "$(mnt b)/ns/f" || fail "rm on B"
wait_for 15 unheld || fail "the removed file stays held:" \
	"$(pg_psql -At -c 'SELECT node, ino FROM open_holds')"
assert_eq "no hold left" 0 "$(holds)"
for n in a b; do umount_fs "$(mnt "$n")"; done
log "ok"
