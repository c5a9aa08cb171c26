#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The signatures of core/s3/s3.c, checked by an independent signer: every
# kind of request (tests/s3/sig_client.c) goes to sigcheck.py, which
# recomputes each SigV4 signature with botocore and logs OK or MISMATCH.
#  1. right credentials: every request accepted, as many OK lines as
#     requests sent, no MISMATCH;
#  2. the same with a session token (x-amz-security-token signed);
#  3. negative control, a wrong secret: every request refused, as many
#     MISMATCH lines as requests, no OK (so the checker does check).
# Prints TAP. Needs Debian's python3-botocore, hence /usr/bin/python3.
set -euo pipefail
export LC_ALL=C.UTF-8
# libcurl honours proxy variables: not for the checker on 127.0.0.1
export no_proxy=${no_proxy:+$no_proxy,}127.0.0.1
export NO_PROXY=${NO_PROXY:+$NO_PROXY,}127.0.0.1

: "${S3_SIG_CLIENT:?S3_SIG_CLIENT must name s3_sig_client (set by meson test)}"
: "${TALLY_SRC:=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
PY=/usr/bin/python3
AK=AKIDTALLYSIGTEST
SK='tally/Secret+Key=42' # '/', '+' and '=' like real secrets
TOKEN='FwoGZXIvYXdzEBYaDH+session/token=='

TMP=$(mktemp -d "${TMPDIR:-/tmp}/tallyfs-s3sig.XXXXXX")
CHECKER_PID=
N=0
FAILED=0

# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
	local rc=$?

	trap - EXIT
	stop_checker
	rm -rf "$TMP"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM

if ! "$PY" -c 'import botocore.auth' 2>/dev/null; then
	echo "Bail out! $PY cannot import botocore: install python3-botocore" \
		"(tools/install-deps.sh)"
	exit 1
fi

# start_checker LOG [ARGS...]: sigcheck.py on a free port; sets PORT.
start_checker() {
	local log=$1 n=100

	shift
	: >"$TMP/port"
	"$PY" "$TALLY_SRC/tests/s3/sigcheck.py" --log "$log" --access "$AK" \
		--secret "$SK" "$@" >"$TMP/port" 2>>"$TMP/checker.err" \
		</dev/null &
	CHECKER_PID=$!
	while ((n-- > 0)); do
		PORT=$(head -n 1 "$TMP/port")
		[[ $PORT =~ ^[0-9]+$ ]] && return 0
		kill -0 "$CHECKER_PID" 2>/dev/null || break
		sleep 0.1
	done
	echo "Bail out! sigcheck.py did not start: $(cat "$TMP/checker.err")"
	exit 1
}

stop_checker() {
	if [[ -n $CHECKER_PID ]]; then
		kill "$CHECKER_PID" 2>/dev/null || true
		wait "$CHECKER_PID" 2>/dev/null || true
		CHECKER_PID=
	fi
}

# run NAME MODE [--token]: one client run against a fresh checker, and
# one TAP line for it.
run() {
	local name=$1 mode=$2 log=$TMP/log.$((N + 1)) out rc=0 reqs ok bad line
	local -a cargs=() cenv=(AWS_ACCESS_KEY_ID="$AK"
		AWS_SECRET_ACCESS_KEY="$SK" AWS_SESSION_TOKEN=)

	if [[ ${3:-} == --token ]]; then
		cargs=(--token "$TOKEN")
		cenv+=(AWS_SESSION_TOKEN="$TOKEN")
	fi
	[[ $mode == bad ]] && cenv+=(AWS_SECRET_ACCESS_KEY='tally/Wrong+Key=42')
	: >"$log"
	start_checker "$log" "${cargs[@]}"
	out=$(env "${cenv[@]}" SIG_ENDPOINT="http://127.0.0.1:$PORT" \
		timeout -k 5 120 "$S3_SIG_CLIENT" "$mode" 2>&1) || rc=$?
	stop_checker
	while IFS= read -r line; do
		printf '# %s\n' "$line"
	done <<<"$out"
	reqs=$(sed -n 's/^# requests: //p' <<<"$out")
	ok=$(grep -c '^OK ' "$log" || true)
	bad=$(grep -c '^MISMATCH ' "$log" || true)
	echo "# checker: $ok OK, $bad MISMATCH; client: ${reqs:-?} requests," \
		"exit $rc"
	N=$((N + 1))
	if [[ $mode == good ]]; then
		[[ $rc == 0 && -n $reqs && $reqs -gt 0 && $ok == "$reqs" &&
			$bad == 0 ]] && { echo "ok $N - $name"; return; }
	else
		[[ $rc == 0 && -n $reqs && $reqs -gt 0 && $bad == "$reqs" &&
			$ok == 0 ]] && { echo "ok $N - $name"; return; }
	fi
	grep -v '^OK ' "$log" | sed 's/^/# /' | head -n 40
	echo "not ok $N - $name"
	FAILED=1
}

run "right credentials: every signature matches" good
run "session token: signed and sent, every signature matches" good --token
run "negative control, wrong secret: every signature refused" bad
echo "1..$N"
exit "$FAILED"
