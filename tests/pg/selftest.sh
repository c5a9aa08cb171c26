#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# Self-test of tests/pg/lib.sh. The script runs itself as a child for each
# case below; the child starts a cluster and writes down what it started
# (directory, postmaster and other server pids, System V segment), and
# the parent checks, once the child is gone, that none of it is left: no
# process running from the cluster (by pid, by command line, by working
# directory), no segment, no directory.
#
#   full    pg_start of two databases: over TCP, role tally with the
#           password of PGPASSWORD creates and reads a table in each; a
#           wrong password, no password, the superuser over TCP and tally
#           over the socket are refused; pg_psql is the superuser over the
#           socket; pg_restart (fast, immediate), pg_kill then pg_restart
#           (crash recovery), pg_stop then pg_restart keep the port and
#           every committed row. Exits 0.
#   fail    an EXIT trap set before sourcing lib.sh, pg_start (the default
#           database), pg_kill (which leaves the System V segment), exit 3:
#           the status stays 3, the previous trap runs after pg_cleanup
#           and sees it, the segment is gone.
#   term    in its own session, killed the way meson's timeout does it
#           during a query: SIGTERM to the process group, SIGKILL half a
#           second later.
#   orphan  SIGKILLs itself: the watchdog stops the cluster.
#
# Prints "# " lines and "ok CASE (N ms)" per case; exits 1 at the first
# failure.
set -euo pipefail
export LC_ALL=C.UTF-8

: "${TALLY_SRC:=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
SELF=$TALLY_SRC/tests/pg/selftest.sh

log() { printf '# %s\n' "$*"; }

# fail MESSAGE...: report the failing line of the script and exit 1.
fail() {
	printf 'FAIL [selftest.sh:%s%s]: %s\n' "${BASH_LINENO[0]}" \
		"${CASE:+ $CASE}" "$*" >&2
	exit 1
}

assert_eq() {
	[[ $2 == "$3" ]] || fail "$1: expected [$2], got [$3]"
}

# ---------------------------------------------------------------- child

# record FILE: what the running cluster consists of, for the parent.
record() {
	local pm

	pm=$(head -n 1 "$PG_DIR/data/postmaster.pid")
	{
		echo "dir=$PG_DIR"
		echo "pids=$pm $(ps -o pid= --ppid "$pm" | tr '\n' ' ')"
		echo "shm=$(sed -n '7{s/^ *[0-9]* *//;p}' \
			"$PG_DIR/data/postmaster.pid")"
	} >"$1"
}

# P ARGS...: psql as tally over TCP (the password from PGPASSWORD).
P() { "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 "$PG_URI" "$@"; }

pm_pid() { head -n 1 "$PG_DIR/data/postmaster.pid"; }

# refused WHAT MESSAGE CMD...: CMD fails, saying MESSAGE.
refused() {
	local what=$1 msg=$2 out rc=0

	shift 2
	out=$("$@" 2>&1) || rc=$?
	((rc != 0)) || fail "$what: succeeded, expected a refusal"
	[[ $out == *"$msg"* ]] ||
		fail "$what: failed (exit $rc) with [$out], expected [$msg]"
}

# log_count TEXT: how many lines of the server's log hold TEXT.
log_count() { grep -cF -- "$1" "$PG_DIR/log" || true; }

child_full() {
	local t0 ms port pm old kids

	t0=$EPOCHREALTIME
	pg_start tally tally2 || fail "pg_start failed"
	ms=$(((${EPOCHREALTIME/./} - ${t0/./}) / 1000))
	log "pg_start: $ms ms (initdb, start, a role, two databases)"
	assert_eq "PG_HOST" 127.0.0.1 "$PG_HOST"
	assert_eq "PG_URI" "postgres://tally@127.0.0.1:$PG_PORT/tally" \
		"$PG_URI"
	assert_eq "PGPASSWORD" tally-test-pw "$PGPASSWORD"
	assert_eq "PG_SOCKDIR" "$PG_DIR/sock" "$PG_SOCKDIR"
	[[ -S $PG_SOCKDIR/.s.PGSQL.$PG_PORT ]] || fail "no socket in $PG_SOCKDIR"
	port=$PG_PORT

	log "TCP, password: role tally creates and reads a table in each db"
	assert_eq "who, where" "tally|127.0.0.1|$PG_PORT" "$(P -At -c \
		'SELECT current_user, inet_server_addr(), inet_server_port()')"
	P -c "CREATE TABLE t (k int PRIMARY KEY, v text)" \
		-c "INSERT INTO t VALUES (1, 'one')"
	assert_eq "row" one "$(P -At -c 'SELECT v FROM t WHERE k = 1')"
	P -d "${PG_URI%/*}/tally2" -c "CREATE TABLE u (v text)" \
		-c "INSERT INTO u VALUES ('two')"
	assert_eq "row of tally2" two \
		"$(P -d "${PG_URI%/*}/tally2" -At -c 'SELECT v FROM u')"
	assert_eq "owners" $'tally|tally\ntally2|tally' "$(pg_psql -At -c \
		"SELECT datname, pg_get_userbyid(datdba) FROM pg_database
		 WHERE datname LIKE 'tally%' ORDER BY 1")"
	assert_eq "password stored as SCRAM" t "$(pg_psql -At -c \
		"SELECT rolpassword LIKE 'SCRAM-SHA-256\$%' FROM pg_authid
		 WHERE rolname = 'tally'")"

	log "refused: wrong password, none, postgres over TCP, tally on socket"
	refused "wrong password" \
		'password authentication failed for user "tally"' \
		env PGPASSWORD=wrong "$PG_BIN/psql" -X "$PG_URI" -c 'SELECT 1'
	refused "no password" "no password supplied" \
		env -u PGPASSWORD PGPASSFILE=/dev/null "$PG_BIN/psql" -X -w \
		"$PG_URI" -c 'SELECT 1'
	refused "postgres over TCP" \
		'password authentication failed for user "postgres"' \
		"$PG_BIN/psql" -X "postgres://postgres@127.0.0.1:$PG_PORT/tally" \
		-c 'SELECT 1'
	refused "tally over the socket" 'no pg_hba.conf entry' \
		"$PG_BIN/psql" -X -h "$PG_SOCKDIR" -p "$PG_PORT" -U tally \
		-d tally -c 'SELECT 1'
	assert_eq "pg_psql" "postgres|tally|" "$(pg_psql -At -c \
		'SELECT current_user, current_database(), inet_server_addr()')"
	assert_eq "pg_psql -d" postgres \
		"$(pg_psql -d postgres -At -c 'SELECT current_database()')"

	log "pg_restart: same port, same data, another postmaster"
	old=$(pm_pid)
	pg_restart || fail "pg_restart failed"
	assert_eq "port" "$port" "$PG_PORT"
	[[ $(pm_pid) != "$old" ]] || fail "pg_restart: the same postmaster"
	assert_eq "row after restart" one \
		"$(P -At -c 'SELECT v FROM t WHERE k = 1')"
	assert_eq "fast shutdowns logged" 1 \
		"$(log_count 'received fast shutdown request')"

	log "pg_restart immediate: recovery keeps the committed row"
	P -c "INSERT INTO t VALUES (2, 'two')"
	pg_restart immediate || fail "pg_restart immediate failed"
	assert_eq "rows after immediate restart" 2 \
		"$(P -At -c 'SELECT count(*) FROM t')"
	assert_eq "recoveries logged" 1 \
		"$(log_count 'automatic recovery in progress')"

	log "pg_kill: every process of the server dies at once"
	P -c "INSERT INTO t VALUES (3, 'three')"
	pm=$(pm_pid)
	kids=$(ps -o pid= --ppid "$pm" | tr '\n' ' ')
	[[ -n ${kids// /} ]] || fail "the postmaster $pm has no process"
	pg_kill # bare: under set -e, as a scenario would call it
	for p in $pm $kids; do
		kill -0 "$p" 2>/dev/null &&
			! grep -q '^State:.*Z' "/proc/$p/status" 2>/dev/null &&
			fail "process $p of the server survived pg_kill"
	done
	[[ -f $PG_DIR/data/postmaster.pid ]] ||
		fail "postmaster.pid is gone: that was no crash"
	refused "TCP after pg_kill" "Connection refused" P -c 'SELECT 1'
	refused "pg_kill of a dead server" "not running" pg_kill

	log "pg_restart after pg_kill: crash recovery, same port and data"
	pg_restart
	assert_eq "port" "$port" "$PG_PORT"
	assert_eq "rows after the crash" 3 \
		"$(P -At -c 'SELECT count(*) FROM t')"
	assert_eq "recoveries logged" 2 \
		"$(log_count 'automatic recovery in progress')"

	log "pg_stop, then pg_restart"
	pm=$(pm_pid)
	pg_stop
	kill -0 "$pm" 2>/dev/null &&
		! grep -q '^State:.*Z' "/proc/$pm/status" 2>/dev/null &&
		fail "the postmaster $pm survived pg_stop"
	refused "TCP after pg_stop" "Connection refused" P -c 'SELECT 1'
	pg_stop || fail "a second pg_stop failed"
	pg_restart || fail "pg_restart after pg_stop failed"
	assert_eq "rows after stop and start" 3 \
		"$(P -At -c 'SELECT count(*) FROM t')"
	record "$HAND"
}

child_fail() {
	local shm

	pg_start || fail "pg_start failed"
	assert_eq "PG_URI" "postgres://tally@127.0.0.1:$PG_PORT/tally" \
		"$PG_URI"
	assert_eq "table" 1 "$(P -At -c 'CREATE TABLE t (k int)' \
		-c 'INSERT INTO t VALUES (1)' -c 'SELECT count(*) FROM t')"
	record "$HAND"
	pg_kill || fail "pg_kill failed"
	shm=$(sed -n 's/^shm=//p' "$HAND")
	[[ -n $(awk -v id="$shm" '$2 == id' /proc/sysvipc/shm) ]] ||
		fail "no System V segment $shm left by pg_kill: nothing to check"
	exit 3
}

child_term() {
	pg_start || fail "pg_start failed"
	record "$HAND"
	: >"$HAND.ready"
	pg_psql -c 'SELECT pg_sleep(60)' >/dev/null 2>&1
	fail "pg_sleep(60) ended: the parent did not kill us"
}

child_orphan() {
	pg_start || fail "pg_start failed"
	record "$HAND"
	kill -KILL $$
}

if [[ ${1:-} == --child ]]; then
	CASE=$2
	HAND=$3
	if [[ $CASE == fail ]]; then
		# shellcheck disable=SC2154 # rc is set in the trap
		trap 'rc=$?; echo "previous trap: $rc" >"$HAND.prev"' EXIT
	fi
	# shellcheck source=tests/pg/lib.sh
	source "$TALLY_SRC/tests/pg/lib.sh"
	"child_$CASE"
	exit 0
fi

# --------------------------------------------------------------- parent

TMP=$(mktemp -d "${TMPDIR:-/tmp}/tallyfs-pgself.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

# leftovers HANDOFF: print what is left of the cluster the child wrote
# down.
leftovers() {
	local dir pids shm p link

	dir=$(sed -n 's/^dir=//p' "$1")
	pids=$(sed -n 's/^pids=//p' "$1")
	shm=$(sed -n 's/^shm=//p' "$1")
	[[ -e $dir ]] && echo "directory $dir"
	for p in $pids; do
		kill -0 "$p" 2>/dev/null &&
			! grep -q '^State:.*Z' "/proc/$p/status" 2>/dev/null &&
			echo "process $p ($(tr '\0' ' ' 2>/dev/null <"/proc/$p/cmdline"))"
	done
	for p in /proc/[0-9]*; do
		link=$(readlink "$p/cwd" 2>/dev/null) || continue
		if [[ $link == "$dir" || $link == "$dir/"* ]] ||
			tr '\0' '\n' 2>/dev/null <"$p/cmdline" | grep -qF "$dir/"; then
			echo "process ${p#/proc/} running from $dir"
		fi
	done
	[[ -n $shm ]] && awk -v id="$shm" '$2 == id { print "segment " id }' \
		/proc/sysvipc/shm
	return 0
}

# check_gone CASE SECONDS: nothing of the child's cluster is left, within
# SECONDS.
check_gone() {
	local hand=$TMP/$1 n=$(($2 * 10)) left

	[[ -s $hand ]] || fail "$1: the child wrote down no cluster"
	while ((n-- > 0)); do
		left=$(leftovers "$hand")
		[[ -z $left ]] && return 0
		sleep 0.1
	done
	fail "$1: left behind after ${2}s: $left"
}

# ok CASE: one line per case passed, with the time it took.
ok() {
	echo "ok $1 ($(((${EPOCHREALTIME/./} - ${T0/./}) / 1000)) ms)"
	T0=$EPOCHREALTIME
}

# run CASE: the child; its exit status in RC. (From a subshell whose
# stderr is /dev/null, where bash reports a death by SIGKILL; the child's
# stderr is ours.)
run() {
	RC=0
	(bash "$SELF" --child "$1" "$TMP/$1" 2>&3 & wait "$!") 3>&2 \
		2>/dev/null || RC=$?
}

T0=$EPOCHREALTIME
log "full: start, TCP, passwords, restarts, crash, stop"
run full
assert_eq "full: exit status" 0 "$RC"
check_gone full 5
ok full

log "fail: pg_kill, exit 3, a previous EXIT trap"
run fail
assert_eq "fail: exit status" 3 "$RC"
assert_eq "fail: the previous trap" "previous trap: 3" \
	"$(cat "$TMP/fail.prev" 2>/dev/null)"
check_gone fail 5
ok fail

log "term: SIGTERM to the group during a query, SIGKILL 0.5 s later"
setsid bash "$SELF" --child term "$TMP/term" &
pid=$!
for ((i = 0; i < 600; i++)); do
	[[ -e $TMP/term.ready ]] && break
	kill -0 "$pid" 2>/dev/null || break
	sleep 0.1
done
[[ -e $TMP/term.ready ]] || fail "term: the child did not start a cluster"
pgid=$(ps -o pgid= -p "$pid" | tr -d ' ')
assert_eq "term: the child leads its group" "$pid" "$pgid"
kill -TERM -- "-$pgid"
sleep 0.5
kill -KILL -- "-$pgid" 2>/dev/null || true
rc=0
wait "$pid" || rc=$?
log "term: the child exited $rc"
check_gone term 15
ok term

log "orphan: the child SIGKILLs itself, the watchdog cleans up"
run orphan
assert_eq "orphan: exit status" 137 "$RC"
check_gone orphan 15
ok orphan
