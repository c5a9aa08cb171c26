# SPDX-License-Identifier: MIT
# shellcheck shell=bash disable=SC2119,SC2120
# (SC2119/SC2120: helpers take optional arguments, e.g. drain [MNT])
#
# Common set-up of the shell scenarios: sourced (never run) by every
# tests/scenario/NN_*.sh.
#
# Each scenario gets its own directory from mktemp -d ($TMP) holding the
# store ($STORE) and the mountpoint ($MNT). Mounts started through mount_fs
# are remembered; the EXIT trap unmounts them (fusermount3 -u, falling back
# to umount -l; the newest first, so a mount holding another's store goes
# before it), kills their daemons by pid and removes $TMP, whatever
# happened. Commands that touch the mount run under `timeout`, and a
# watchdog kills the daemons (which unblocks every process waiting on the
# mount: it then sees ENOTCONN) if the whole scenario overruns
# $SCN_TIMEOUT seconds, so a hung daemon fails the test instead of hanging
# it.
#
# The assertions print what was expected and what was seen, then exit 1.

set -euo pipefail
export LC_ALL=C.UTF-8

: "${TALLYFS:?TALLYFS must name the tallyfs binary (set by meson test)}"
: "${TALLYFSCK:?TALLYFSCK must name the tallyfsck binary (set by meson test)}"
: "${TALLY_SRC:=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"

SCN_NAME=$(basename "$0" .sh)
SCN_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
STEP_TIMEOUT=${STEP_TIMEOUT:-120}   # one command on the mount
SCN_TIMEOUT=${SCN_TIMEOUT:-540}     # the whole scenario (watchdog)
# a slower build (sanitizers: tools/test.sh) scales it as it scales
# meson's timeouts (--timeout-multiplier)
SCN_TIMEOUT=$((SCN_TIMEOUT * ${SCN_TIMEOUT_SCALE:-1}))
# shellcheck disable=SC2034 # for the scenarios
MIB=1048576

TMP=$(mktemp -d "${TMPDIR:-/tmp}/tallyfs-$SCN_NAME.XXXXXX")
STORE=$TMP/store
MNT=$TMP/mnt
DLOG=$TMP/daemon.log    # stdout and stderr of every daemon we start
mkdir "$MNT"
: >"$TMP/pids"
: >"$DLOG"

declare -A DAEMON_PID=()    # mountpoint -> daemon pid
declare -A DAEMON_CHILD=()  # mountpoint -> 1 when the daemon is our child

# ---------------------------------------------------------------- output

log() { printf "# %s (%d s)\n" "$*" "$SECONDS"; }

# fail MESSAGE...: report the failing scenario line and exit 1.
fail() {
	local i where=""

	for ((i = 1; i < ${#BASH_LINENO[@]}; i++)); do
		if [[ ${BASH_SOURCE[i]} != "${BASH_SOURCE[0]}" ]]; then
			where="$(basename "${BASH_SOURCE[i]}"):${BASH_LINENO[i - 1]}"
			break
		fi
	done
	printf 'FAIL [%s]: %s\n' "${where:-$SCN_NAME}" "$*" >&2
	SCN_FAILED=1
	exit 1
}

# --------------------------------------------------------------- cleanup

# Mountpoints below $TMP that the kernel still lists (ours, by definition).
mounts_under_tmp() {
	awk -v p="$TMP/" 'index($2, p) == 1 { print $2 }' /proc/mounts
}

is_mounted() {
	awk -v m="$1" '$2 == m { found = 1 } END { exit !found }' /proc/mounts
}

pid_alive() {
	[[ -n $1 ]] && kill -0 "$1" 2>/dev/null &&
		! grep -q '^State:.*Z' "/proc/$1/status" 2>/dev/null
}

# is_our_daemon PID: PID is (still) a daemon of this scenario: its command
# line names a path below $TMP. Guards every kill against recycled pids.
is_our_daemon() {
	[[ -r /proc/$1/cmdline ]] &&
		tr '\0' '\n' <"/proc/$1/cmdline" 2>/dev/null | grep -qF "$TMP/"
}

# wait_pid_gone PID SECONDS: true when PID has exited within SECONDS.
wait_pid_gone() {
	local pid=$1 n=$(($2 * 10))

	while ((n-- > 0)); do
		pid_alive "$pid" || return 0
		sleep 0.1
	done
	! pid_alive "$pid"
}

# wait_threads_gone PID SECONDS: no thread of PID is left but a zombie
# leader (its open files, the store's lock among them, are released).
wait_threads_gone() {
	local pid=$1 n=$(($2 * 10)) t

	while ((n-- > 0)); do
		t=$(ls "/proc/$pid/task" 2>/dev/null | wc -l)
		((t <= 1)) && ! pid_alive "$pid" && return 0
		sleep 0.1
	done
	return 1
}

# daemons_down: unmount every mount of ours and see every daemon gone
# (kill -9 after 10 s). cleanup does it first; a scenario whose daemons
# need a server that an earlier EXIT trap stops (PostgreSQL) puts it in
# front of that trap.
daemons_down() {
	local m pid

	# newest first, each daemon gone before the mount below it goes: a
	# daemon whose store is on another mount of ours keeps files open
	# on it until it has exited
	for m in $(mounts_under_tmp | tac) "${!DAEMON_PID[@]}"; do
		if is_mounted "$m"; then
			timeout 10 fusermount3 -u "$m" 2>/dev/null ||
				timeout 10 umount -l "$m" 2>/dev/null
		fi
		pid=${DAEMON_PID[$m]:-}
		[[ -n $pid ]] && wait_pid_gone "$pid" 10
	done
	for m in "${!DAEMON_PID[@]}"; do
		pid=${DAEMON_PID[$m]}
		if ! wait_pid_gone "$pid" 10 && is_our_daemon "$pid"; then
			echo "cleanup: daemon $pid of $m still alive: kill -9" >&2
			kill -9 "$pid" 2>/dev/null
		fi
	done
	for m in $(mounts_under_tmp); do
		timeout 10 umount -l "$m" 2>/dev/null
	done
}

cleanup() {
	local rc=$?

	set +e
	trap - EXIT INT TERM HUP
	[[ -n ${WATCHDOG_PID:-} ]] && kill "$WATCHDOG_PID" 2>/dev/null
	daemons_down
	if ((rc != 0)) && [[ -z ${SCN_FAILED:-} ]]; then
		echo "FAIL [$SCN_NAME]: a command failed (exit $rc) inside a" \
			"helper; see the messages above" >&2
	fi
	if [[ -e $TMP/watchdog ]]; then
		cat "$TMP/watchdog" >&2
		rc=1
	fi
	if ((rc != 0)) && [[ -s $DLOG ]]; then
		echo "---- last lines of the daemon log ($DLOG) ----" >&2
		tail -n 40 "$DLOG" >&2
		echo "----" >&2
		# SCN_SAVE_LOG=FILE: the whole log kept there (a replay)
		[[ -z ${SCN_SAVE_LOG:-} ]] || cp "$DLOG" "$SCN_SAVE_LOG"
	fi
	if [[ -z $(mounts_under_tmp) ]]; then
		rm -rf --one-file-system "$TMP"
	else
		echo "cleanup: mounts remain under $TMP; not removing it" >&2
	fi
	exit "$rc"
}
trap cleanup EXIT
# set -e stops at an unchecked failing command: say which
# shellcheck disable=SC2154
trap 'scn_rc=$?; SCN_FAILED=1; echo "FAIL [${0##*/}:$LINENO]: exit" \
	"$scn_rc from: $BASH_COMMAND" >&2' ERR
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM

# The watchdog: a scenario that overruns SCN_TIMEOUT kills its daemons.
(
	for ((i = 0; i < SCN_TIMEOUT; i++)); do
		sleep 1
		kill -0 $$ 2>/dev/null || exit 0
	done
	echo "FAIL [$SCN_NAME]: watchdog: scenario overran ${SCN_TIMEOUT}s," \
		"killed the daemons" >"$TMP/watchdog"
	while read -r p; do
		is_our_daemon "$p" && kill -9 "$p"
	done <"$TMP/pids"
	for m in $(awk -v p="$TMP/" 'index($2, p) == 1 { print $2 }' \
		/proc/mounts); do
		umount -l "$m"
	done
) </dev/null >/dev/null 2>&1 &
WATCHDOG_PID=$!

# ---------------------------------------------------------------- mounts

# T CMD...: run CMD bounded by STEP_TIMEOUT.
T() { timeout -k 5 "$STEP_TIMEOUT" "$@"; }

# daemon_pid_of MNT: the pid of the tallyfs process serving MNT.
daemon_pid_of() {
	local m=$1 p exe

	for p in /proc/[0-9]*; do
		exe=$(readlink "$p/exe" 2>/dev/null) || continue
		[[ $exe == "$(readlink -f "$TALLYFS")" ]] || continue
		if tr '\0' '\n' <"$p/cmdline" 2>/dev/null | grep -qxF "$m"; then
			echo "${p#/proc/}"
			return 0
		fi
	done
	return 1
}

wait_mounted() {
	local m=$1 pid=${2:-} n=100

	while ((n-- > 0)); do
		is_mounted "$m" && return 0
		if [[ -n $pid ]] && ! pid_alive "$pid"; then
			return 1
		fi
		sleep 0.1
	done
	is_mounted "$m"
}

# mount_fs [-d] [STORE [MNT [DAEMON ARGS...]]]: mount and wait (bounded)
# until the kernel lists the mount. Without -d the daemon runs with -f in
# the background as our child (so its exit status can be checked); with -d
# it daemonizes itself, and the exit status of the launcher is checked.
mount_fs() {
	local daemonize=0 store m pid rc

	if [[ ${1:-} == -d ]]; then
		daemonize=1
		shift
	fi
	store=${1:-$STORE}
	m=${2:-$MNT}
	shift $(($# > 2 ? 2 : $#))
	is_mounted "$m" && fail "mount_fs: $m is already mounted"
	echo "== mount $store on $m ($( ((daemonize)) && echo daemonized ||
		echo foreground))" >>"$DLOG"
	if ((daemonize)); then
		rc=0
		T "$TALLYFS" "$@" "$store" "$m" >>"$DLOG" 2>&1 || rc=$?
		((rc == 0)) || fail "tallyfs $* $store $m exited $rc"
		is_mounted "$m" ||
			fail "tallyfs $store $m exited 0 but $m is not mounted"
		pid=$(daemon_pid_of "$m") ||
			fail "no tallyfs process serves $m after mounting"
		DAEMON_CHILD[$m]=0
	else
		"$TALLYFS" -f "$@" "$store" "$m" </dev/null >>"$DLOG" 2>&1 &
		pid=$!
		DAEMON_CHILD[$m]=1
	fi
	DAEMON_PID[$m]=$pid
	echo "$pid" >>"$TMP/pids"
	wait_mounted "$m" "$pid" || fail "$m did not appear in /proc/mounts" \
		"within 10s (daemon pid $pid alive: $(pid_alive "$pid" &&
			echo yes || echo no))"
}

# umount_fs [MNT]: fusermount3 -u, then the daemon must exit, with status
# 0 when it is our child.
umount_fs() {
	local m=${1:-$MNT} pid rc=0 i

	pid=${DAEMON_PID[$m]:-}
	# EBUSY while some process of the machine still has the new mount
	# open for a moment (seen once in CI right after a mount, with the
	# other test of the run elsewhere): tried again, 5 s at most
	for ((i = 0; i < 10; i++)); do
		T fusermount3 -u "$m" 2>>"$TMP/umount.err" && break
		sleep 0.5
	done
	((i < 10)) || fail "fusermount3 -u $m failed: $(tail -1 "$TMP/umount.err")"
	is_mounted "$m" && fail "$m still mounted after fusermount3 -u"
	if [[ -n $pid ]]; then
		wait_pid_gone "$pid" 60 ||
			fail "daemon $pid of $m still running 60s after unmount"
		if [[ ${DAEMON_CHILD[$m]} == 1 ]]; then
			wait "$pid" || rc=$?
			((rc == 0)) || fail "daemon of $m exited $rc after a" \
				"clean unmount (expected 0)"
		fi
		unset "DAEMON_PID[$m]" "DAEMON_CHILD[$m]"
	fi
}

# kill9_fs [MNT]: kill -9 the daemon, then clean up the dead mount.
kill9_fs() {
	local m=${1:-$MNT} pid

	pid=${DAEMON_PID[$m]:?no daemon known for $m}
	# no "Killed" job notice from bash for the death we asked for
	[[ ${DAEMON_CHILD[$m]} == 1 ]] && disown "$pid"
	is_our_daemon "$pid" || fail "daemon $pid of $m is gone already"
	kill -9 "$pid"
	wait_pid_gone "$pid" 10 || fail "daemon $pid survived kill -9"
	# a zombie leader whose other threads still finish a syscall (a
	# sync under load) holds the store's files, its lock among them
	wait_threads_gone "$pid" 30 ||
		fail "threads of daemon $pid survived kill -9"
	unset "DAEMON_PID[$m]" "DAEMON_CHILD[$m]"
	if is_mounted "$m"; then
		timeout 10 fusermount3 -u "$m" 2>/dev/null ||
			timeout 10 umount -l "$m" ||
			fail "cannot remove the dead mount $m"
	fi
	is_mounted "$m" && fail "dead mount $m is still listed"
	return 0
}

remount_fs() {
	umount_fs "${2:-$MNT}"
	mount_fs "$@"
}

# ------------------------------------------------------------- the model

# ctl CMD [MNT]: write one command line to the control file (bounded).
ctl() {
	T bash -c 'printf "%s\n" "$1" >"$2"' _ "$1" "${2:-$MNT}/.tally/ctl"
}

drain() { ctl drain "${1:-$MNT}" || fail "drain failed"; }

# ctl_report CMD [MNT]: write CMD to the control file and print the
# job's report, read back from the same open file; fails (exit 1, the
# errno name on stderr) if the write fails.
ctl_report() {
	T python3 - "$1" "${2:-$MNT}/.tally/ctl" <<-'EOF'
	import errno, os, sys
	fd = os.open(sys.argv[2], os.O_RDWR)
	try:
	    os.write(fd, (sys.argv[1] + "\n").encode())
	except OSError as e:
	    print(errno.errorcode.get(e.errno, str(e.errno)), file=sys.stderr)
	    sys.exit(1)
	out = b""
	while True:
	    b = os.read(fd, 65536)
	    if not b:
	        break
	    out += b
	os.close(fd)
	sys.stdout.write(out.decode())
	EOF
}

# report_get KEY REPORT: the value of "KEY: value" in a ctl report.
report_get() { sed -n "s/^$1: //p" <<<"$2" | head -n 1; }

# ctl_errno CMD [MNT]: write CMD (as given, no newline added) to ctl from
# a fresh fd; print OK or the errno name of the failed write.
ctl_errno() {
	T python3 - "$1" "${2:-$MNT}/.tally/ctl" <<-'EOF'
	import errno, os, sys
	fd = os.open(sys.argv[2], os.O_WRONLY)
	try:
	    os.write(fd, sys.argv[1].encode("utf-8", "surrogateescape"))
	    print("OK")
	except OSError as e:
	    print(errno.errorcode.get(e.errno, str(e.errno)))
	finally:
	    os.close(fd)
	EOF
}

# status_json [MNT]: the status document.
# status_json [MNT]: the status document once the flushes in flight have
# finished (a close does not wait for its own).
status_json() {
	ctl drain "${1:-$MNT}" >/dev/null || fail "drain failed"
	T cat "${1:-$MNT}/.tally/status"
}

# status_get KEY [MNT]: one top-level value of the status document.
status_get() {
	status_json "${2:-$MNT}" | python3 -c '
import json, sys
d = json.load(sys.stdin)
v = d[sys.argv[1]]
print(json.dumps(v) if isinstance(v, (dict, list)) else v)' "$1"
}

# status_counts [MNT]: the counts that must only change with the data.
status_counts() {
	status_json "${1:-$MNT}" | python3 -c '
import json, sys
d = json.load(sys.stdin)
print(" ".join("%s=%s" % (k, d[k]) for k in ("namespaces", "inodes",
      "objects", "bytes_logical", "bytes_stored", "block_size")))'
}

# xattr FILE NAME: the value of one extended attribute.
xattr() {
	T getfattr --absolute-names --only-values -n "$2" -- "$1"
}

refs() { xattr "$1" user.tally.refs; }

# objects FILE: the block hashes of FILE (the @SHARD suffix dropped), one
# per line, in block order.
objects() {
	local v

	v=$(xattr "$1" user.tally.objects) || return 1
	tr ' ' '\n' <<<"$v" | sed -e '/^$/d' -e 's/@.*//'
}

# store_objects [STORE]: the object files of shard 0, as sorted hashes.
store_objects() {
	local s=${1:-$STORE}

	# a close does not wait for its flush: let them all finish first
	if [[ $s == "$STORE" ]] && is_mounted "$MNT"; then
		ctl drain "$MNT" >/dev/null || fail "drain failed"
	fi
	[[ -d $s/shards/0 ]] || return 0
	find "$s/shards/0" -type f -regextype posix-extended \
		-regex '.*/[0-9a-f]{32}' -printf '%f\n' | sort
}

object_count() { store_objects "$@" | wc -l; }

# ------------------------------------------------------------ assertions

assert_eq() {
	local what=$1 expected=$2 got=$3

	[[ $expected == "$got" ]] ||
		fail "$what: expected [$expected], got [$got]"
}

assert_ne() {
	local what=$1 unexpected=$2 got=$3

	[[ $unexpected != "$got" ]] ||
		fail "$what: expected anything but [$unexpected], got it"
}

assert_match() {
	local what=$1 regex=$2 got=$3

	[[ $got =~ $regex ]] ||
		fail "$what: expected to match /$regex/, got [$got]"
}

# assert_fails MESSAGE CMD...: CMD must fail and its output contain
# MESSAGE (e.g. the strerror text of the expected errno).
assert_fails() {
	local msg=$1 out rc=0

	shift
	out=$(T "$@" 2>&1) || rc=$?
	((rc != 0)) || fail "'$*' succeeded; expected failure with '$msg'"
	((rc != 124 && rc != 137)) || fail "'$*' timed out"
	[[ $out == *"$msg"* ]] ||
		fail "'$*' failed (exit $rc) with [$out]; expected '$msg'"
}

# assert_errno ERRNAME PYEXPR...: the python statement must raise OSError
# with that errno (e.g. assert_errno EPERM 'os.symlink("x", M + "/l")').
# M is the mountpoint, T the scenario directory.
assert_errno() {
	local want=$1 got

	shift
	got=$(T python3 - "$MNT" "$TMP" "$*" <<-'EOF'
	import errno, os, sys
	M, T = sys.argv[1], sys.argv[2]
	try:
	    exec(sys.argv[3])
	    print("OK")
	except OSError as e:
	    print(errno.errorcode.get(e.errno, str(e.errno)))
	EOF
	) || fail "python helper failed for: $*"
	assert_eq "errno of [$*]" "$want" "$got"
}

assert_exists() { [[ -e $1 || -L $1 ]] || fail "$1 should exist"; }
assert_absent() { [[ ! -e $1 && ! -L $1 ]] || fail "$1 should not exist"; }

# assert_same_content A B
assert_same_content() {
	T cmp -- "$1" "$2" >/dev/null 2>&1 ||
		fail "contents differ: $1 ($(sha_of "$1")) vs $2 ($(sha_of "$2"))"
}

sha_of() { T sha256sum -- "$1" 2>&1 | cut -d' ' -f1; }

# manifest DIR [--ino] [--tally] [--no-ctl]: every attribute that a copy
# should keep (see manifest.py), one line per entry, for comparisons.
manifest() { T python3 "$SCN_DIR/manifest.py" "$@"; }

# assert_same_manifest WHAT EXPECTED_FILE GOT_FILE: the files are equal
assert_same_manifest() {
	local what=$1 d

	d=$(diff -u "$2" "$3") ||
		fail "$what: differ (- expected, + got):"$'\n'"$d"
}

# fsck_store [ARGS...]: run tallyfsck; sets FSCK_OUT and FSCK_RC.
fsck_store() {
	FSCK_RC=0
	FSCK_OUT=$(T "$TALLYFSCK" "$@" 2>&1) || FSCK_RC=$?
}

# fsck_value KEY: the value of a summary "key: value" line of the last
# fsck output (the summary comes last, after the per-problem lines).
fsck_value() {
	sed -n "s/^$1: //p" <<<"$FSCK_OUT" | tail -n 1
}

# fsck_consistent WHAT [ARGS...]: tallyfsck ARGS (the store last) ran and
# found no drift and no dangling reference; orphan object files are
# allowed (an interrupted flush leaves them, GC collects them).
fsck_consistent() {
	local what=$1 key

	shift
	fsck_store "$@"
	for key in drift_under drift_over dangling; do
		assert_eq "$what: tallyfsck $key ($FSCK_OUT)" 0 \
			"$(fsck_value "$key")"
	done
	[[ $FSCK_RC == 0 || $FSCK_RC == 1 ]] ||
		fail "$what: tallyfsck could not run (exit $FSCK_RC): $FSCK_OUT"
}

# rand_file PATH BYTES: random (so never deduplicated by chance) data.
rand_file() {
	T head -c "$2" /dev/urandom >"$1"
	[[ $(stat -c %s "$1") == "$2" ]] || fail "rand_file $1 $2: short"
}
