# SPDX-License-Identifier: MIT
# shellcheck shell=bash
#
# Helpers of the power-loss cases (pl_cases.sh, pl_rekey.sh): sourced
# after tests/scenario/lib.sh, with PLFS naming the plfs binary.

: "${PLFS:?PLFS must name the plfs binary (set by meson test)}"

# plfs_start: plfs over $TMP/backing, mounted on $PL ($TMP/plfs); the
# store goes in $STORE ($PL/store).
plfs_start() {
	local i

	BACK=$TMP/backing
	PL=$TMP/plfs
	STORE=$PL/store
	mkdir "$BACK" "$PL"
	"$PLFS" -f "$BACK" "$PL" </dev/null >>"$TMP/plfs.log" 2>&1 &
	for ((i = 0; i < 100; i++)); do
		is_mounted "$PL" && break
		sleep 0.1
	done
	is_mounted "$PL" || fail "plfs did not mount: $(cat "$TMP/plfs.log")"
}

# power_loss: the daemon and the power go together.
power_loss() {
	kill9_fs
	echo powerloss >"$PL/.plfs_ctl" || fail "plfs refused powerloss"
}
