# SPDX-License-Identifier: MIT
# shellcheck shell=bash
#
# The PostgreSQL test server for shell tests: sourced (never run) by
# tests/pg/*.sh, and by any scenario that needs a database. Each test gets
# a throwaway cluster of its own; the Debian "main" cluster (port 5432) is
# never used.
#
#   pg_start [DBNAME...]  initdb a cluster in a mktemp -d directory
#                         ($PG_DIR, owned by the postgres user when run as
#                         root: the server refuses to run as root), start
#                         it on a free port of 127.0.0.1 with its socket in
#                         $PG_DIR/sock and its log in $PG_DIR/log, wait at
#                         most PG_START_TIMEOUT seconds until it accepts
#                         connections, then create the role "tally" (LOGIN,
#                         password "tally-test-pw") and the databases named
#                         (default "tally"), owned by it. TCP connections
#                         to 127.0.0.1 authenticate by scram-sha-256; the
#                         socket lets in the superuser "postgres" alone,
#                         without a password. Exports PG_HOST (127.0.0.1),
#                         PG_PORT, PG_SOCKDIR, PG_DB (the first database),
#                         PG_USER (tally), PG_URI (postgres://tally@
#                         127.0.0.1:PORT/DB, no password), PGPASSWORD (so
#                         libpq clients find it), PG_BIN and PG_DIR, and
#                         unsets the libpq variables that would send a
#                         client elsewhere (PGHOST, PGSERVICE, PGSSLMODE...).
#   pg_stop               pg_ctl stop -m fast, bounded by PG_STOP_TIMEOUT
#                         seconds, then SIGKILL; the data stays.
#   pg_restart [MODE]     stop it (pg_ctl stop -m MODE: fast, the default,
#                         or immediate, which leaves recovery to the start)
#                         if it runs, and start it again: same port, same
#                         data. That is pg_ctl restart -m MODE, with the
#                         bounds and retries of pg_start. Also after
#                         pg_stop or pg_kill.
#   pg_kill               SIGKILL of the postmaster and of its processes at
#                         once: a crash of the server (the kernel's page
#                         cache survives: not a power loss).
#   pg_psql ARGS...       psql as the superuser over the socket, on $PG_DB
#                         (-d DB in ARGS picks another), with -X -q -v
#                         ON_ERROR_STOP=1.
#   pg_cleanup            stop it (immediate: no shutdown checkpoint) and
#                         remove $PG_DIR; idempotent.
#
# Whatever happens the server is stopped: sourcing this file puts
# pg_cleanup in front of the EXIT trap already set (and makes HUP, INT and
# TERM exit, unless they are trapped already). With tests/scenario/lib.sh,
# source that one first: its cleanup then runs after pg_cleanup, with the
# script's exit status. A caller that sets its own EXIT trap afterwards
# must call pg_cleanup from it. PG_BEFORE_STOP, if set, is a command the
# EXIT trap runs before it stops the server (daemons_down of
# tests/scenario/lib.sh: mounts whose metadata is in the cluster). The
# server is not our child (pg_ctl puts it in a session of its own), so
# nothing else would stop it: as a last
# resort, pg_start leaves a watchdog, a subshell in a process group of its
# own (meson's timeout kills the test's group: SIGTERM, then SIGKILL half a
# second later), which runs pg_cleanup within a second or two once the
# sourcing shell is gone without having called it.
#
# Run as root, initdb, pg_ctl and the server run as the postgres user
# (setpriv), which must be able to reach $PG_DIR: a TMPDIR below a
# directory closed to others will not do. Otherwise they run as the
# caller. The binaries are those of PG_BIN (default: Debian's
# postgresql-15, /usr/lib/postgresql/15/bin).
#
# The server runs with fsync on (the default), and with its dynamic shared
# memory in files of the data directory, so that a crash leaks nothing in
# /dev/shm; pg_cleanup removes the System V segment a crash leaves.
#
# The functions report failures on stderr and return 1.

: "${TALLY_SRC:=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
PG_START_TIMEOUT=${PG_START_TIMEOUT:-60}
PG_STOP_TIMEOUT=${PG_STOP_TIMEOUT:-30}
PG_DIR=
PG_DATA=
PG_SOCKDIR=
PG_PORT=
PG__WATCHDOG=
PG__IN_WATCHDOG=
PG_DBS=()
PG__AS=()

pg__say() { printf 'pg: %s\n' "$*" >&2; }

# pg__as CMD...: run CMD as the cluster's owner, from $PG_DIR.
pg__as() { (cd "$PG_DIR" && exec "${PG__AS[@]}" "$@"); }

# pg__put FILE: write stdin to FILE, owned by the cluster's owner.
pg__put() {
	cat >"$1" || return 1
	((${#PG__AS[@]} == 0)) || chown postgres:postgres "$1"
}

pg__alive() {
	[[ -n $1 ]] && kill -0 "$1" 2>/dev/null &&
		! grep -q '^State:.*Z' "/proc/$1/status" 2>/dev/null
}

# pg__pm_pid: print the pid of our postmaster if it runs (postmaster.pid
# names it, and its command line names our data directory: a recycled pid
# is not ours).
pg__pm_pid() {
	local pid

	[[ -n $PG_DATA && -f $PG_DATA/postmaster.pid ]] || return 1
	pid=$(head -n 1 "$PG_DATA/postmaster.pid" 2>/dev/null) || return 1
	[[ $pid =~ ^[0-9]+$ ]] && pg__alive "$pid" || return 1
	tr '\0' '\n' 2>/dev/null <"/proc/$pid/cmdline" |
		grep -qxF "$PG_DATA" || return 1
	echo "$pid"
}

# pg__gone SECONDS PID...: wait until none of the PIDs is alive.
pg__gone() {
	local n=$(($1 * 10)) p left

	shift
	while ((n-- > 0)); do
		left=0
		for p in "$@"; do
			pg__alive "$p" && left=1
		done
		((left)) || return 0
		sleep 0.1
	done
	return 1
}

# pg__reaped SECONDS PID: wait until PID has been reaped. Its zombie is
# not enough: postmaster.pid and the socket's lock file still name it, and
# the next server refuses to start while kill(PID, 0) succeeds. (The
# postmaster's parent is init, which may reap late: up to 2 s on some
# virtual machines' init.)
pg__reaped() {
	local n=$(($1 * 10))

	while ((n-- > 0)); do
		[[ -e /proc/$2 ]] || return 0
		sleep 0.1
	done
	return 1
}

# pg__kill_all: SIGKILL the postmaster and its processes at once. It is
# stopped first, so that it forks no process meanwhile.
pg__kill_all() {
	local pm
	local -a kids

	pm=$(pg__pm_pid) || return 0
	kill -STOP "$pm" 2>/dev/null || true
	mapfile -t kids < <(ps -o pid= --ppid "$pm" 2>/dev/null | tr -d ' ')
	kill -KILL "$pm" "${kids[@]}" 2>/dev/null || true
	if ! pg__gone 10 "$pm" "${kids[@]}"; then
		pg__say "the server (pid $pm ${kids[*]}) survived SIGKILL"
		return 1
	fi
	if ! pg__reaped 30 "$pm"; then
		pg__say "the killed postmaster (pid $pm) was not reaped in 30s"
		return 1
	fi
}

# pg__free_port: a port of 127.0.0.1 that the kernel has just given out
# (the server binds it a moment later: pg__launch retries if it lost it).
pg__free_port() {
	/usr/bin/python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}

# pg__config PORT: the settings of the cluster (included from
# postgresql.conf).
pg__config() {
	pg__put "$PG_DATA/tally.conf" <<-EOF
	listen_addresses = '127.0.0.1'
	port = $1
	unix_socket_directories = '${PG_SOCKDIR//\'/\'\'}'
	fsync = on
	password_encryption = 'scram-sha-256'
	ssl = off
	dynamic_shared_memory_type = mmap
	log_line_prefix = '%m [%p] %q%u@%d '
	EOF
}

# pg__launch PORT: start the server on PORT and wait until it accepts
# connections. Returns 2 when the port was taken (the caller retries).
pg__launch() {
	local off rc=0

	pg__config "$1" || return 1
	off=$(($(stat -c %s "$PG_DIR/log") + 1))
	printf '== start, port %s\n' "$1" >>"$PG_DIR/log"
	# pg_ctl's messages go to the server's log, both appending
	# shellcheck disable=SC2094
	pg__as "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_DIR/log" -w \
		-t "$PG_START_TIMEOUT" start </dev/null >>"$PG_DIR/log" 2>&1 ||
		rc=$?
	if ((rc == 0)); then
		PG_PORT=$1
		return 0
	fi
	# a server that is slow to start is still running: stop it
	pg__kill_all || return 1
	if tail -c +"$off" "$PG_DIR/log" |
		grep -q 'could not bind .*Address already in use'; then
		return 2
	fi
	pg__say "the server did not start (pg_ctl exit $rc); its log:"
	tail -c +"$off" "$PG_DIR/log" | tail -n 20 >&2
	return 1
}

# pg__setup: initdb and the files of the cluster, in $PG_DIR.
pg__setup() {
	PG__AS=()
	if (($(id -u) == 0)); then
		if ! getent passwd postgres >/dev/null; then
			pg__say "no user postgres (install postgresql-15:" \
				"tools/install-deps.sh)"
			return 1
		fi
		PG__AS=(setpriv --reuid=postgres --regid=postgres
			--init-groups --)
	fi
	PG_DIR=$(mktemp -d "${TMPDIR:-/tmp}/tallyfs-pg.XXXXXX") || return 1
	# spelled as pg_ctl will spell it on the server's command line
	PG_DIR=$(cd "$PG_DIR" && pwd -P) || return 1
	PG_DATA=$PG_DIR/data
	PG_SOCKDIR=$PG_DIR/sock
	((${#PG__AS[@]} == 0)) || chown postgres:postgres "$PG_DIR" ||
		return 1
	if ! pg__as test -w "$PG_DIR"; then
		pg__say "$PG_DIR: not writable by the postgres user" \
			"(a directory above it closed to others? set TMPDIR)"
		return 1
	fi
	# sun_path holds 107 bytes and a NUL: .../sock/.s.PGSQL.NNNNN
	if ((${#PG_SOCKDIR} + 17 > 107)); then
		pg__say "$PG_SOCKDIR: too long for a socket path (set TMPDIR)"
		return 1
	fi
	if ! pg__as "$PG_BIN/initdb" -N -A trust -U postgres -E UTF8 \
		--locale=C -D "$PG_DATA" </dev/null >"$PG_DIR/initdb.log" 2>&1; then
		pg__say "initdb failed:"
		tail -n 20 "$PG_DIR/initdb.log" >&2
		return 1
	fi
	pg__as mkdir -m 0700 "$PG_SOCKDIR" || return 1
	: | pg__put "$PG_DIR/log" || return 1
	printf "include 'tally.conf'\n" >>"$PG_DATA/postgresql.conf" ||
		return 1
	pg__put "$PG_DATA/pg_hba.conf" <<-EOF
	# TYPE	DATABASE	USER		ADDRESS		METHOD
	local	all		postgres			trust
	host	all		all		127.0.0.1/32	scram-sha-256
	EOF
}

# pg__watchdog: the last resort (see above).
pg__watchdog() {
	local shell=$$ opts=$-

	set -m
	(
		set +eu
		trap - ERR
		# shellcheck disable=SC2030 # the watchdog's own copy
		PG__IN_WATCHDOG=1
		trap 'kill "$s" 2>/dev/null; exit 0' TERM
		while pg__alive "$shell"; do
			sleep 1 &
			s=$!
			wait "$s"
		done
		pg_cleanup
	) </dev/null >/dev/null 2>&1 &
	PG__WATCHDOG=$!
	[[ $opts == *m* ]] || set +m
	disown "$PG__WATCHDOG"
}

pg_start() {
	local -a vars=() sql=()
	local i try rc port

	if pg__pm_pid >/dev/null; then
		pg__say "pg_start: already running (in $PG_DIR)"
		return 1
	fi
	if (($# > 0)); then
		PG_DBS=("$@")
	else
		PG_DBS=(tally)
	fi
	if [[ ! -x $PG_BIN/initdb ]]; then
		pg__say "$PG_BIN/initdb is missing (install postgresql-15:" \
			"tools/install-deps.sh)"
		return 1
	fi
	[[ -z $PG_DIR ]] || pg_cleanup
	pg__setup || return 1
	pg__watchdog
	for try in 1 2 3 4 5; do
		port=$(pg__free_port) || port=
		if [[ ! $port =~ ^[0-9]+$ ]]; then
			pg__say "no free port from /usr/bin/python3"
			return 1
		fi
		rc=0
		pg__launch "$port" || rc=$?
		((rc == 2)) || break
		pg__say "port $port was taken meanwhile (try $try)"
	done
	if ((rc == 2)); then
		pg__say "pg_start: every port tried was taken; see $PG_DIR/log"
	fi
	((rc == 0)) || return 1
	unset PGHOST PGHOSTADDR PGPORT PGDATABASE PGUSER PGSERVICE \
		PGSERVICEFILE PGOPTIONS PGSSLMODE PGREQUIRESSL PGGSSENCMODE \
		PGTARGETSESSIONATTRS PGCHANNELBINDING
	for i in "${!PG_DBS[@]}"; do
		vars+=(-v "db$i=${PG_DBS[i]}")
		sql+=("CREATE DATABASE :\"db$i\" OWNER tally;")
	done
	pg_psql -d postgres "${vars[@]}" >/dev/null <<-EOF || return 1
	CREATE ROLE tally LOGIN PASSWORD 'tally-test-pw';
	$(printf '%s\n' "${sql[@]}")
	EOF
	export PG_DIR PG_BIN PG_PORT PG_SOCKDIR
	export PG_HOST=127.0.0.1 PG_USER=tally PG_DB=${PG_DBS[0]}
	export PG_URI=postgres://tally@127.0.0.1:$PG_PORT/$PG_DB
	export PGPASSWORD=tally-test-pw
}

pg_psql() {
	if [[ -z $PG_PORT ]]; then
		pg__say "pg_psql: no server was started"
		return 1
	fi
	"$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$PG_SOCKDIR" \
		-p "$PG_PORT" -U postgres -d "${PG_DB:-${PG_DBS[0]}}" "$@"
}

# pg__stop MODE: pg_ctl stop -m MODE, bounded, then SIGKILL.
pg__stop() {
	local pm

	pm=$(pg__pm_pid) || return 0
	if pg__as "$PG_BIN/pg_ctl" -D "$PG_DATA" -m "$1" -w \
		-t "$PG_STOP_TIMEOUT" stop </dev/null >>"$PG_DIR/log" 2>&1 &&
		pg__gone 10 "$pm"; then
		return 0
	fi
	pg__say "the server (pid $pm) did not stop in ${PG_STOP_TIMEOUT}s:" \
		"SIGKILL"
	pg__kill_all
}

pg_stop() { pg__stop fast; }

pg_kill() {
	if ! pg__pm_pid >/dev/null; then
		pg__say "pg_kill: the server is not running"
		return 1
	fi
	pg__kill_all
}

pg_restart() {
	local mode=${1:-fast} try rc

	if [[ -z $PG_DIR || -z $PG_PORT ]]; then
		pg__say "pg_restart: no server was started"
		return 1
	fi
	case $mode in
	fast | immediate) ;;
	*)
		pg__say "pg_restart: mode $mode: fast or immediate"
		return 1
		;;
	esac
	pg__stop "$mode" || return 1
	# the port was free a moment ago; retry in case someone took it
	for try in 1 2 3 4 5; do
		rc=0
		pg__launch "$PG_PORT" || rc=$?
		((rc == 0)) && return 0
		((rc == 2)) || return 1
		pg__say "restart: port $PG_PORT is taken (try $try)"
		sleep 1
	done
	pg__say "pg_restart: port $PG_PORT stayed taken; see $PG_DIR/log"
	return 1
}

# pg__shm_cleanup: remove the System V segment a crashed server leaves
# (its id is on line 7 of postmaster.pid; the next start of the cluster
# would have removed it), when nothing is attached.
pg__shm_cleanup() {
	local id

	[[ -f $PG_DATA/postmaster.pid ]] || return 0
	id=$(sed -n '7{s/^ *[0-9]* *//;p}' "$PG_DATA/postmaster.pid") ||
		return 0
	[[ $id =~ ^[0-9]+$ ]] || return 0
	awk -v id="$id" '$2 == id && $7 == 0 { f = 1 } END { exit !f }' \
		/proc/sysvipc/shm 2>/dev/null || return 0
	ipcrm -m "$id" 2>/dev/null || true
}

# The data goes: an immediate stop, with no shutdown checkpoint to wait
# for. The watchdog goes last: it takes over if this shell is killed
# meanwhile.
pg_cleanup() {
	if [[ -n $PG_DIR ]]; then
		pg__stop immediate || true
		pg__shm_cleanup
		if [[ -d $PG_DIR ]]; then
			rm -rf --one-file-system "$PG_DIR" || true
		fi
	fi
	PG_DIR=
	PG_DATA=
	PG_PORT=
	# shellcheck disable=SC2031 # set in the watchdog's copy only
	if [[ -n $PG__WATCHDOG && -z $PG__IN_WATCHDOG ]]; then
		kill "$PG__WATCHDOG" 2>/dev/null || true
	fi
	PG__WATCHDOG=
	return 0
}

pg__on_exit() {
	local rc=$?

	set +e
	# clients that must go while the server is still up (mounts)
	[[ -n ${PG_BEFORE_STOP:-} ]] && eval "$PG_BEFORE_STOP"
	pg_cleanup
	if [[ -n $PG__PREV_EXIT ]]; then
		# the previous trap sees the script's exit status in $?
		(exit "$rc")
		eval "$PG__PREV_EXIT"
	fi
	exit "$rc"
}

pg__install_traps() {
	local t sig
	local -a parts

	PG__PREV_EXIT=
	t=$(trap -p EXIT)
	if [[ -n $t ]]; then
		# "trap -- 'COMMAND' EXIT", quoted for the shell
		eval "parts=($t)"
		PG__PREV_EXIT=${parts[2]}
	fi
	trap pg__on_exit EXIT
	for sig in HUP INT TERM; do
		[[ -n $(trap -p "$sig") ]] && continue
		case $sig in
		HUP) trap 'exit 129' HUP ;;
		INT) trap 'exit 130' INT ;;
		TERM) trap 'exit 143' TERM ;;
		esac
	done
}
pg__install_traps
