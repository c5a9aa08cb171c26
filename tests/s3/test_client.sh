#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# core/s3/s3.c against s3rver (tests/s3/client_test.c says what is checked):
# starts the server through lib.sh, runs the client as a coprocess,
# relays its TAP and kills or restarts the server when it asks ("@kill",
# "@restart"; answered "done" or "failed").
set -euo pipefail
export LC_ALL=C.UTF-8

: "${S3_CLIENT_TEST:?S3_CLIENT_TEST must name s3_client_test (set by meson test)}"
: "${TALLY_SRC:=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"

CLIENT_PID=
# chained behind s3_cleanup by lib.sh: the client goes too
trap '[[ -n $CLIENT_PID ]] && kill "$CLIENT_PID" 2>/dev/null; :' EXIT
# shellcheck source=tests/s3/lib.sh
. "$TALLY_SRC/tests/s3/lib.sh"

if ! s3_start tally-test; then
	echo "Bail out! s3rver did not start"
	exit 1
fi
echo "# s3rver on $S3_ENDPOINT, data in $S3_DIR"

# (bash unsets the coprocess's variables when it exits: copy them)
coproc S3C { timeout -k 5 240 "$S3_CLIENT_TEST"; }
CLIENT_PID=${S3C_PID:?}
exec {from}<&"${S3C[0]}" {to}>&"${S3C[1]}"
while IFS= read -r line <&"$from"; do
	case $line in
	@kill)
		if s3_kill; then echo "done"; else echo failed; fi >&"$to"
		echo "# s3rver killed"
		;;
	@restart)
		if s3_restart; then echo "done"; else echo failed; fi >&"$to"
		echo "# s3rver restarted on port $S3_PORT"
		;;
	*)
		printf '%s\n' "$line"
		;;
	esac
done
rc=0
wait "$CLIENT_PID" || rc=$?
CLIENT_PID=
exec {from}<&- {to}>&-
if ((rc != 0)); then
	echo "# s3_client_test exited $rc"
	exit 1
fi
