# SPDX-License-Identifier: MIT
# shellcheck shell=bash
#
# The S3 test server for shell tests: sourced (never run) by tests/s3/*.sh,
# and by any scenario that needs a bucket.
#
#   s3_start [BUCKET...]  install s3rver if needed (install-s3rver.sh),
#                         start it on a free port of 127.0.0.1 with its
#                         data in a mktemp -d directory ($S3_DIR) and wait,
#                         at most S3_START_TIMEOUT seconds, until it
#                         listens; exports S3_ENDPOINT, S3_BUCKET (the
#                         first bucket; default "tally-test"), S3_PORT,
#                         AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY
#                         (s3rver's account), unsets AWS_SESSION_TOKEN and
#                         adds 127.0.0.1 to no_proxy and NO_PROXY.
#   s3_stop               SIGTERM, SIGKILL after 10 s; the data stays.
#   s3_kill               SIGKILL: a crash.
#   s3_restart            start it again after a stop or a kill: same port,
#                         same data.
#   s3_cleanup            stop it and remove $S3_DIR; idempotent.
#
# Whatever happens the server is stopped: sourcing this file puts
# s3_cleanup in front of the EXIT trap already set (and makes HUP, INT and
# TERM exit, unless they are trapped already). With tests/scenario/lib.sh,
# source that one first: its cleanup then runs after s3_cleanup, with the
# script's exit status. A caller that sets its own EXIT trap afterwards
# must call s3_cleanup from it. As a last resort s3rver.js exits by itself
# once the shell that started it is gone.
#
# The functions report failures on stderr and return 1.

: "${TALLY_SRC:=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
S3_LIB_DIR=$TALLY_SRC/tests/s3
S3_START_TIMEOUT=${S3_START_TIMEOUT:-60}
S3_DIR=
S3_PID=
S3_PORT=
S3_BUCKETS=()

s3__say() { printf 's3: %s\n' "$*" >&2; }

# s3__launch PORT: start s3rver.js in the background and wait until it
# prints its port.
s3__launch() {
	local n=$((S3_START_TIMEOUT * 10)) port=""

	: >"$S3_DIR/port"
	echo "== start, port $1" >>"$S3_DIR/server.log"
	# s3rver's continuation tokens are DES-encrypted: OpenSSL 3 keeps
	# DES in its legacy provider
	TALLY_S3RVER_DIR=$S3RVER_DIR node --openssl-legacy-provider \
		"$S3_LIB_DIR/s3rver.js" "$1" \
		"$S3_DIR/data" "${S3_BUCKETS[@]}" </dev/null \
		>"$S3_DIR/port" 2>>"$S3_DIR/server.log" &
	S3_PID=$!
	while ((n-- > 0)); do
		if [[ $(wc -l <"$S3_DIR/port") -ge 1 ]]; then
			port=$(head -n 1 "$S3_DIR/port")
			break
		fi
		if ! kill -0 "$S3_PID" 2>/dev/null; then
			wait "$S3_PID" 2>/dev/null || true
			S3_PID=
			s3__say "s3rver exited at start:"
			tail -n 20 "$S3_DIR/server.log" >&2
			return 1
		fi
		sleep 0.1
	done
	if [[ ! $port =~ ^[0-9]+$ ]]; then
		s3__say "s3rver did not listen within ${S3_START_TIMEOUT}s"
		s3_kill
		return 1
	fi
	S3_PORT=$port
}

s3_start() {
	if [[ -n $S3_PID ]]; then
		s3__say "s3_start: already running (pid $S3_PID)"
		return 1
	fi
	if (($# > 0)); then
		S3_BUCKETS=("$@")
	else
		S3_BUCKETS=(tally-test)
	fi
	if [[ -n ${TALLY_S3RVER_DIR:-} ]]; then
		S3RVER_DIR=$TALLY_S3RVER_DIR
	elif [[ -n ${TALLY_BUILD:-} ]]; then
		S3RVER_DIR=$TALLY_BUILD/s3rver
	else
		S3RVER_DIR=$S3_LIB_DIR
	fi
	TALLY_S3RVER_DIR=$S3RVER_DIR "$S3_LIB_DIR/install-s3rver.sh" \
		>/dev/null || return 1
	[[ -n $S3_DIR ]] ||
		S3_DIR=$(mktemp -d "${TMPDIR:-/tmp}/tallyfs-s3.XXXXXX")
	s3__launch 0 || return 1
	export S3_PORT S3_DIR
	export S3_ENDPOINT=http://127.0.0.1:$S3_PORT
	export S3_BUCKET=${S3_BUCKETS[0]}
	export AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER
	unset AWS_SESSION_TOKEN
	# libcurl honours proxy variables: not for this server
	export no_proxy=${no_proxy:+$no_proxy,}127.0.0.1
	export NO_PROXY=${NO_PROXY:+$NO_PROXY,}127.0.0.1
}

# s3__gone SECONDS: wait until the server has exited, reap it. (Callers
# silence its stderr: bash may report the death of the job meanwhile.)
s3__gone() {
	local n=$(($1 * 10))

	while ((n-- > 0)); do
		if ! kill -0 "$S3_PID" 2>/dev/null ||
			grep -q '^State:.*Z' "/proc/$S3_PID/status" 2>/dev/null; then
			wait "$S3_PID" 2>/dev/null || true
			S3_PID=
			return 0
		fi
		sleep 0.1
	done
	return 1
}

s3_stop() {
	[[ -n $S3_PID ]] || return 0
	kill -TERM "$S3_PID" 2>/dev/null || true
	s3__gone 10 2>/dev/null && return 0
	s3__say "s3rver (pid $S3_PID) ignored SIGTERM: SIGKILL"
	s3_kill
}

s3_kill() {
	[[ -n $S3_PID ]] || return 0
	kill -KILL "$S3_PID" 2>/dev/null || true
	s3__gone 10 2>/dev/null || {
		s3__say "s3rver (pid $S3_PID) survived SIGKILL"
		return 1
	}
}

s3_restart() {
	local try

	if [[ -z $S3_DIR || -z $S3_PORT ]]; then
		s3__say "s3_restart: no server was started"
		return 1
	fi
	s3_stop || return 1
	# the port was free a moment ago; retry in case it is still closing
	for try in 1 2 3 4 5; do
		s3__launch "$S3_PORT" && return 0
		s3__say "restart on port $S3_PORT failed (try $try)"
		sleep 1
	done
	return 1
}

s3_cleanup() {
	s3_stop || true
	if [[ -n $S3_DIR && -d $S3_DIR ]]; then
		rm -rf --one-file-system "$S3_DIR"
	fi
	S3_DIR=
}

s3__on_exit() {
	local rc=$?

	set +e
	s3_cleanup
	if [[ -n $S3__PREV_EXIT ]]; then
		# the previous trap sees the script's exit status in $?
		(exit "$rc")
		eval "$S3__PREV_EXIT"
	fi
	exit "$rc"
}

s3__install_traps() {
	local t sig
	local -a parts

	S3__PREV_EXIT=
	t=$(trap -p EXIT)
	if [[ -n $t ]]; then
		# "trap -- 'COMMAND' EXIT", quoted for the shell
		eval "parts=($t)"
		S3__PREV_EXIT=${parts[2]}
	fi
	trap s3__on_exit EXIT
	for sig in HUP INT TERM; do
		[[ -n $(trap -p "$sig") ]] && continue
		case $sig in
		HUP) trap 'exit 129' HUP ;;
		INT) trap 'exit 130' INT ;;
		TERM) trap 'exit 143' TERM ;;
		esac
	done
}
s3__install_traps
