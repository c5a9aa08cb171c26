#!/bin/bash
# SPDX-License-Identifier: MIT
# Crash points: a random workload (crash_driver.py: writes with and without
# fsync, in-block patches, hard links and links across namespaces, rm,
# rename, branch, drain, gc grace=0) runs against a real mount and the
# daemon is killed with SIGKILL at a random moment, KILLS times (default
# 100). After each kill:
#  * tallyfsck of the store: no drift (under- or over-counted), no
#    dangling reference; orphan object files are allowed (an interrupted
#    flush leaves them) because GC collects them, which is checked below;
#  * remount: every completed operation is visible, the one in flight
#    happened entirely or not at all, every fsync'ed file reads back
#    exactly, every other file holds one of its recent contents;
# and every CHECK_EVERY kills (and at the end): gc grace=0, clean
# unmount, and tallyfsck must say "status: clean" (no orphan left).
#
# Reproducible: the seed is printed; SEED=N replays its operations and kill
# delays (the kill lands at the same time offset, so the same moment up to
# scheduling). KILLS=N for a longer run, e.g.
#   SEED=1234 KILLS=2000 SCN_TIMEOUT=36000 TALLYFS=build/fs/tallyfs \
#     TALLYFSCK=build/tools/tallyfsck tests/scenario/15_crash.sh
KILLS=${KILLS:-100}
SEED=${SEED:-$(($(date +%s%N) % 1000000))}
CHECK_EVERY=${CHECK_EVERY:-25}
SCN_TIMEOUT=${SCN_TIMEOUT:-$((KILLS * 5 + 60))}
source "$(dirname "$0")/lib.sh"

DRIVER=$SCN_DIR/crash_driver.py
STATE=$TMP/model.json
OPTS=(-o block_size=4096,workers=2)
log "SEED=$SEED KILLS=$KILLS (replay with SEED=$SEED)"
RANDOM=$SEED
orphans=0

# strict_clean: gc grace=0 collects every leak, a clean unmount, tallyfsck
# clean, remount.
strict_clean() {
	ctl "gc grace=0" || fail "gc grace=0 failed (SEED=$SEED)"
	umount_fs
	fsck_store "$STORE"
	assert_eq "tallyfsck after gc and a clean unmount (SEED=$SEED, kill $1): $FSCK_OUT" \
		0 "$FSCK_RC"
	mount_fs "$STORE" "$MNT" "${OPTS[@]}"
	T python3 "$DRIVER" check "$STATE" "$MNT" >/dev/null ||
		fail "check after a clean remount (SEED=$SEED, kill $1)"
}

mount_fs "$STORE" "$MNT" "${OPTS[@]}"
for ((k = 1; k <= KILLS; k++)); do
	python3 "$DRIVER" run "$STATE" "$MNT" $((SEED * 1000 + k)) \
		2>"$TMP/driver.err" &
	drv=$!
	# 20 ms to 0.6 s: from before the first operation to dozens of them
	delay=$((20 + (RANDOM % 580)))
	sleep "$(printf '0.%03d' "$delay")"
	if ! pid_alive "$drv"; then
		rc=0
		wait "$drv" || rc=$?
		fail "the driver stopped (exit $rc) before the kill" \
			"(SEED=$SEED, kill $k): $(cat "$TMP/driver.err")"
	fi
	pid=${DAEMON_PID[$MNT]}
	disown "$pid"
	kill -9 "$pid"
	wait_pid_gone "$pid" 10 || fail "daemon $pid survived kill -9"
	unset "DAEMON_PID[$MNT]" "DAEMON_CHILD[$MNT]"
	# the driver must see the dead mount (not the bare directory
	# under it) before the mount goes
	wait_pid_gone "$drv" 20 || fail "the driver hangs after the kill"
	rc=0
	wait "$drv" || rc=$?
	((rc == 3)) || fail "driver exit $rc after the kill, expected 3" \
		"(SEED=$SEED, kill $k): $(cat "$TMP/driver.err")"
	timeout 10 fusermount3 -u "$MNT" 2>/dev/null ||
		timeout 10 umount -l "$MNT" || fail "cannot remove the dead mount"

	fsck_consistent "after kill $k (SEED=$SEED, delay $delay ms)" "$STORE"
	orphans=$((orphans + $(fsck_value orphans)))

	mount_fs "$STORE" "$MNT" "${OPTS[@]}"
	out=$(T python3 "$DRIVER" check "$STATE" "$MNT" 2>&1) ||
		fail "kill $k (SEED=$SEED, delay ${delay} ms): $out"
	((k % 10 == 0)) && log "kill $k (delay ${delay} ms): $out"
	((k % CHECK_EVERY == 0 || k == KILLS)) && strict_clean "$k"
done
umount_fs
log "ok: $KILLS kills, $orphans orphan object files seen (all collected)"
