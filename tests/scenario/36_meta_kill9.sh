#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# kill -9 at random points of a metadata workload in several processes
# (tests/scenario/meta_kill9.py): after each remount, every operation that
# returned is there, and the one each process had in flight is there
# whole or not at all. Rounds go on from the state checked; at the end
# tallyfsck finds no drift and no dangling reference.
source "$(dirname "$0")/lib.sh"

ROUNDS=${ROUNDS:-30}
WORKERS=3
SEED=${SEED:-3030}
K9=(/usr/bin/python3 "$SCN_DIR/meta_kill9.py")
RANDOM=$SEED

mount_fs
mkdir "$MNT/main"
for w in $(seq 1 $WORKERS); do
	mkdir "$MNT/main/w$w"
done
total=0
for round in $(seq 1 "$ROUNDS"); do
	pids=()
	for w in $(seq 1 $WORKERS); do
		"${K9[@]}" work "$MNT/main/w$w" "$TMP/journal.$w" \
			$((SEED + round * 10 + w)) >"$TMP/work.$w" 2>&1 &
		pids+=($!)
	done
	# 0.3 to 1.5 s of work, then the daemon dies
	sleep "$(printf '%d.%03d' $((RANDOM % 2)) $((300 + RANDOM % 700)))"
	kill9_fs "$MNT"
	for w in $(seq 1 $WORKERS); do
		rc=0
		wait "${pids[$((w - 1))]}" || rc=$?
		((rc == 0)) || fail "worker $w of round $round: exit $rc: $(cat "$TMP/work.$w")"
	done
	# every other round keeps seconds of work in the log alone
	if ((round % 2)); then
		mount_fs "$STORE" "$MNT" -o group_ms=$((100 + RANDOM % 3000))
	else
		mount_fs
	fi
	for w in $(seq 1 $WORKERS); do
		out=$(T "${K9[@]}" check "$MNT/main/w$w" "$TMP/journal.$w") ||
			fail "round $round, worker $w: $out"
		n=${out%% *}
		total=$((total + n))
	done
	log "round $round: every answered operation is there ($out)"
done
umount_fs
T "$TALLYFSCK" "$STORE" >"$TMP/fsck.out" || true
bad=$(grep -E '^(drift_under|drift_over|dangling|ghost_drift|usage_drift|corrupt|nameless|homeless): [1-9]' \
	"$TMP/fsck.out" || true)
[[ -z $bad ]] || fail "tallyfsck after the rounds: $bad"
replays=$(sed -n 's/.*intent log: \([0-9]*\) operation(s) replayed.*/\1/p' \
	"$DLOG" | awk '{ n += $1 } END { print n + 0 }')
log "$ROUNDS rounds of kill -9, $WORKERS processes; the intent log gave back ${replays:-0} operations"
