#!/bin/bash
# SPDX-License-Identifier: MIT
# Random power losses: tallyfs's store lives on plfs (plfs.c: it holds back
# what a disk loses when the power goes), so tallyfs syncs its objects file
# by file. A random workload (pl_driver.py: writes with and without fsync or
# fdatasync, overwrites, appends, in-block patches, hard links and links
# across namespaces, rm, rename, branch, drain, gc grace=0, fsync of files
# and namespaces) runs on the mount, and at a random moment the daemon is
# killed with SIGKILL and the power goes with it (plfs drops everything
# not synced), ROUNDS times (default 30). After each loss:
#  * tallyfsck of the store: no drift (under- or over-counted), no dangling
#    reference; orphan object files are allowed (GC collects them, checked
#    below);
#  * remount: every file reads back one of the contents the model allows
#    for it (its last fsync'ed one or a later one, never bytes that were
#    not written to it), every name is in a state between its last durable
#    one and its newest (pl_driver.py says what is durable when);
# and every CHECK_EVERY rounds (and at the end): gc grace=0, clean unmount,
# tallyfsck must say "status: clean".
#
# Reproducible: the seed is printed; SEED=N replays its operations and loss
# delays (the same moment up to scheduling). ROUNDS=N for a longer run:
#   SEED=1234 ROUNDS=300 PLFS=build/tests/powerloss/plfs \
#     TALLYFS=build/fs/tallyfs TALLYFSCK=build/tools/tallyfsck \
#     tests/powerloss/pl_random.sh
ROUNDS=${ROUNDS:-30}
SEED=${SEED:-$(($(date +%s%N) % 1000000))}
CHECK_EVERY=${CHECK_EVERY:-10}
SCN_TIMEOUT=${SCN_TIMEOUT:-$((ROUNDS * 8 + 60))}
# shellcheck source=../scenario/lib.sh
source "$(dirname "$0")/../scenario/lib.sh"
: "${PLFS:?PLFS must name the plfs binary (set by meson test)}"

DRIVER=$(cd "$(dirname "$0")" && pwd)/pl_driver.py
STATE=$TMP/model.json
PLFSB=$TMP/backing
PLFSMNT=$TMP/plfs
STORE=$PLFSMNT/store
# shellcheck disable=SC2054 # one -o argument
OPTS=(-o block_size=4096,workers=2)
mkdir "$PLFSB" "$PLFSMNT"
log "SEED=$SEED ROUNDS=$ROUNDS (replay with SEED=$SEED)"
RANDOM=$SEED
orphans=0
unsynced=0

# mount_plfs: plfs on $PLFSMNT, remembered as lib.sh's mounts are (the
# cleanup unmounts it after the tallyfs mount on it, newest first).
mount_plfs() {
	local pid

	echo "== plfs $PLFSB on $PLFSMNT" >>"$DLOG"
	"$PLFS" -f "$PLFSB" "$PLFSMNT" </dev/null >>"$DLOG" 2>&1 &
	pid=$!
	DAEMON_PID["$PLFSMNT"]=$pid
	DAEMON_CHILD["$PLFSMNT"]=1
	echo "$pid" >>"$TMP/pids"
	wait_mounted "$PLFSMNT" "$pid" || fail "plfs did not mount"
}

# plfs_ctl CMD: one command to plfs (plfs.c, COMMANDS).
plfs_ctl() {
	T python3 -c 'import sys; open(sys.argv[2], "w").write(sys.argv[1])' \
		"$1" "$PLFSMNT/.plfs_ctl" || fail "plfs refused \"$1\""
}

# plfs_get KEY: one value of the plfs status.
plfs_get() { T sed -n "s/^$1 //p" "$PLFSMNT/.plfs_ctl"; }

# power_loss: the daemon and the power die together. The daemon is reaped
# first, so every request it had sent to plfs has been answered: nothing
# it wrote lands after the loss.
power_loss() {
	local pid=${DAEMON_PID[$MNT]}

	kill -9 "$pid"
	wait "$pid" 2>/dev/null || true
	unset "DAEMON_PID[$MNT]" "DAEMON_CHILD[$MNT]"
	unsynced=$(plfs_get unsynced_files)
	plfs_ctl powerloss
}

# keep: copy the model and its log out of $TMP (which goes) for a look
# at a failure; say where.
keep() {
	local d

	d=$(mktemp -d "${TMPDIR:-/tmp}/pl_random-failed.XXXXXX") &&
		cp "$STATE" "$STATE.log" "$d/" &&
		echo "the model and the log of the round are kept in $d"
}

# strict_clean ROUND: gc grace=0 collects every leak, a clean unmount,
# tallyfsck clean, remount.
strict_clean() {
	local what

	ctl "gc grace=0" || fail "gc grace=0 failed (SEED=$SEED)"
	umount_fs
	fsck_store --wait=30 "$STORE"
	what="tallyfsck after gc and a clean unmount (SEED=$SEED, round $1)"
	assert_eq "$what: $FSCK_OUT" 0 "$FSCK_RC"
	mount_fs "$STORE" "$MNT" "${OPTS[@]}"
	T python3 "$DRIVER" check "$STATE" "$MNT" >/dev/null ||
		fail "check after a clean remount (SEED=$SEED, round $1)"
}

mount_plfs
# a new store, made durable by a clean unmount (what a power loss does to
# a store being created is not this test's subject)
mount_fs "$STORE" "$MNT" "${OPTS[@]}"
umount_fs
plfs_ctl sync
mount_fs "$STORE" "$MNT" "${OPTS[@]}"
for ((k = 1; k <= ROUNDS; k++)); do
	python3 "$DRIVER" run "$STATE" "$MNT" $((SEED * 1000 + k)) \
		2>"$TMP/driver.err" &
	drv=$!
	# 50 ms to 1.5 s: from before the first operation to dozens of them
	delay=$((50 + (RANDOM % 1450)))
	sleep "$(printf '%d.%03d' $((delay / 1000)) $((delay % 1000)))"
	if ! pid_alive "$drv"; then
		rc=0
		wait "$drv" || rc=$?
		fail "the driver stopped (exit $rc) before the loss" \
			"(SEED=$SEED, round $k): $(cat "$TMP/driver.err")"
	fi
	power_loss
	# the driver must see the dead mount (not the bare directory under
	# it) before the mount goes
	wait_pid_gone "$drv" 20 || fail "the driver hangs after the loss"
	rc=0
	wait "$drv" || rc=$?
	((rc == 3)) || fail "driver exit $rc after the loss, expected 3" \
		"(SEED=$SEED, round $k): $(cat "$TMP/driver.err")"
	timeout 10 fusermount3 -u "$MNT" 2>/dev/null ||
		timeout 10 umount -l "$MNT" || fail "cannot remove the dead mount"

	fsck_consistent "after round $k (SEED=$SEED, delay $delay ms)" \
		--wait=30 "$STORE"
	orphans=$((orphans + $(fsck_value orphans)))

	mount_fs "$STORE" "$MNT" "${OPTS[@]}"
	out=$(T python3 "$DRIVER" check "$STATE" "$MNT" 2>&1) ||
		fail "round $k (SEED=$SEED, delay ${delay} ms): $out"$'\n'"$(keep)"
	((k % 10 == 0)) && log "round $k (delay ${delay} ms, $unsynced" \
		"files unsynced at the loss): $out"
	((k % CHECK_EVERY == 0 || k == ROUNDS)) && strict_clean "$k"
done
umount_fs
umount_fs "$PLFSMNT"
log "ok: $ROUNDS power losses, $orphans orphan object files seen" \
	"(all collected)"
