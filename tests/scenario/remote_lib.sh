# SPDX-License-Identifier: MIT
# shellcheck shell=bash
#
# Helpers of the remote tier's scenarios (18_remote, 19_remote_faults):
# sourced after lib.sh and tests/s3/lib.sh. $PFX is the scenario's key
# prefix in $S3_BUCKET. The bucket is read by a second client (botocore:
# tests/s3/s3cli.py), never by the daemon's own.

S3CLI=(/usr/bin/python3 "$TALLY_SRC/tests/s3/s3cli.py")
bucket_keys() { T "${S3CLI[@]}" ls "$S3_BUCKET" "$PFX/objects/"; }
# bucket_has NAME: a key of the bucket is object NAME's, of any
# generation (ends in /NAME or /NAME.gN; 1: not there, 2: the listing
# failed). The listing is read whole before grep looks at it: with
# pipefail a grep -q that stops early would fail the pipe on SIGPIPE.
bucket_has() {
	local keys
	keys=$(bucket_keys | awk '{ print $1 }') || return 2
	grep -Eq "/$1(\.g[1-9][0-9]*)?\$" <<<"$keys"
}
# bucket_key NAME: the key of object NAME (of its newest generation)
bucket_key() {
	local keys
	keys=$(bucket_keys | awk '{ print $1 }') || return 2
	grep -E "/$1(\.g[1-9][0-9]*)?\$" <<<"$keys" | sort -V | tail -n 1
}
# bucket_lacks NAME: the listing worked and no key ends in /NAME
bucket_lacks() {
	local rc=0
	bucket_has "$1" || rc=$?
	((rc == 1))
}
bucket_count() { T "${S3CLI[@]}" count "$S3_BUCKET" "$PFX/objects/"; }
# restore STORE [OPTIONS...]: tallyfs --restore with the options in
# REMOTE; sets ROUT (its output) and RRC (its status)
restore() {
	local store=$1

	shift
	RRC=0
	ROUT=$(T "$TALLYFS" --restore "${REMOTE[@]}" "$@" "$store" 2>&1) ||
		RRC=$?
}
# rget KEY: a value of the last restore's report
rget() { sed -n "s/^$1: //p" <<<"$ROUT" | tail -n 1; }
# remote_get KEY [MNT]: one value of the status's remote section
remote_get() { status_get remote "${2:-$MNT}" | python3 -c "
import json, sys
print(json.load(sys.stdin)['$1'])"; }

# snap_list: the metadata snapshots of $PFX in the bucket, a key a line
snap_list() { T "${S3CLI[@]}" ls "$S3_BUCKET" "$PFX/meta/" | awk '{ print $1 }'; }
# fenced [MNT]: the mount stopped using its bucket (a restore took it over)
fenced() { [[ $(remote_get last_error "${1:-$MNT}") == fenced* ]]; }

# wait_for SECONDS CMD...: until CMD succeeds
wait_for() {
	local n=$(($1 * 10))

	shift
	while ((n-- > 0)); do
		"$@" && return 0
		sleep 0.1
	done
	return 1
}

# object_bytes STORE: the bytes of the object files under STORE/shards
object_bytes() {
	find "$1/shards" -type f -regextype posix-extended \
		-regex '.*/[0-9a-f]{2}/[0-9a-f]{32}(-[0-9]+)?' -printf '%s\n' |
		awk '{ s += $1 } END { print s + 0 }'
}

# every key under objects/ holds bytes that hash to its name
check_bucket_bytes() {
	local key size name

	while read -r key size; do
		name=${key##*/}
		name=${name%.g*} # the object's name, without its generation
		T "${S3CLI[@]}" get "$S3_BUCKET" "$key" "$TMP/obj"
		[[ $(stat -c %s "$TMP/obj") == "$size" ]] ||
			fail "bucket key $key: size"
		# xxh128sum prints the XXH3-128 hash as object names do
		[[ $(T xxh128sum -q "$TMP/obj" | cut -d' ' -f1) == "${name%%-*}" ]] ||
			fail "bucket key $key does not hold the bytes of $name"
	done < <(bucket_keys)
}


# shared_start BUCKET PFX: the S3 server and a PostgreSQL cluster for a
# shared store (tests/pg/lib.sh sourced too); $SHARED: the -o options of
# its mounts. The mounts go first at the end, while their database is
# still there.
shared_start() {
	s3_start "$1" || fail "cannot start the S3 server"
	pg_start || fail "cannot start PostgreSQL"
	PG_BEFORE_STOP=daemons_down
	PFX=$2
	SHARED="meta=$PG_URI,remote=s3://$S3_BUCKET/$PFX,remote_endpoint=$S3_ENDPOINT"
}

# proxy_ports NAME: a proxy started with its stdout in $TMP/NAME.ports
# and its log in $TMP/NAME.log (faultproxy.py, pgproxy.py) listens: its
# port in $PROXY_P, its control port in $PROXY_C
proxy_ports() {
	wait_for 20 bash -c "[[ \$(wc -l <'$TMP/$1.ports') -ge 2 ]]" ||
		fail "proxy $1 did not start: $(cat "$TMP/$1.log")"
	PROXY_P=$(sed -n 1p "$TMP/$1.ports")
	PROXY_C=$(sed -n 2p "$TMP/$1.ports")
}

# proxy_start [EXIT_TRAP]: the fault proxy (tests/s3/faultproxy.py) in
# front of the S3 server started by s3_start; its ports are $PPORT
# (requests) and $PCTL (control). EXIT_TRAP (default: the proxy killed,
# then s3__on_exit, which lib.sh's cleanup follows) becomes the EXIT trap
# once the proxy runs; it must kill "$PROXY_PID".
proxy_start() {
	# shellcheck disable=SC2016 # expanded when the trap runs
	local on_exit=${1:-'rc=$?; set +e; kill "$PROXY_PID" 2>/dev/null
		(exit $rc); s3__on_exit'}

	"${PYTHON:-python3}" "$TALLY_SRC/tests/s3/faultproxy.py" \
		--upstream "127.0.0.1:$S3_PORT" --lifetime "$SCN_TIMEOUT" \
		>"$TMP/proxy.ports" 2>"$TMP/proxy.log" &
	PROXY_PID=$!
	trap "$on_exit" EXIT
	proxy_ports proxy
	PPORT=$PROXY_P
	PCTL=$PROXY_C
}

# pgproxy_start: the PostgreSQL fault proxy (tests/pg/pgproxy.py) in
# front of the cluster pg_start started; $PGPROXY_URI is the metadata
# address through it, $PGPROXY_CTL its control port, $PGPROXY_PID its
# process (killed after the mounts: PG_BEFORE_STOP; its lifetime is the
# scenario's bound anyway). pgproxy CMD: a command to it.
pgproxy_start() {
	python3 "$TALLY_SRC/tests/pg/pgproxy.py" --upstream "127.0.0.1:$PG_PORT" \
		--lifetime "$SCN_TIMEOUT" >"$TMP/pgproxy.ports" \
		2>"$TMP/pgproxy.log" &
	PGPROXY_PID=$!
	PG_BEFORE_STOP="${PG_BEFORE_STOP:-daemons_down}; kill $PGPROXY_PID"
	proxy_ports pgproxy
	PGPROXY_CTL=$PROXY_C
	PGPROXY_URI="postgres://tally@127.0.0.1:$PROXY_P/$PG_DB"
}
pgproxy() {
	T curl -fsS "http://127.0.0.1:$PGPROXY_CTL/$1" ||
		fail "the PostgreSQL proxy: $1"
}

# shared_start_proxied BUCKET PFX: shared_start, with the mounts reaching
# the S3 server through the fault proxy (tests/s3/faultproxy.py), whose
# ports are $PPORT (requests) and $PCTL (control). tallyfsck's options
# ($FSCK_OPTS) go to the server itself. At the end the mounts go first,
# then the proxy, PostgreSQL and the S3 server.
shared_start_proxied() {
	shared_start "$1" "$2"
	PG_BEFORE_STOP='daemons_down; kill "$PROXY_PID" 2>/dev/null'
	proxy_start 'rc=$?; set +e; eval "$PG_BEFORE_STOP"; (exit $rc); pg__on_exit'
	SHARED="meta=$PG_URI,remote=s3://$S3_BUCKET/$PFX"
	SHARED+=",remote_endpoint=http://127.0.0.1:$PPORT"
	FSCK_OPTS="meta=$PG_URI,remote_endpoint=$S3_ENDPOINT"
}

# Nodes of a shared store behind the fault proxy (24_hosts_claims,
# 26_hosts_late_delete). Node NAME caches in $TMP/cache_NAME and is
# mounted on $(mnt NAME). Set before use: NODE_REMOTE_TIMEOUT, the
# nodes' remote_timeout (default 30), and NODE_DRAIN_WAIT, the seconds
# that drained waits (default 30).
mnt() { echo "$TMP/mnt_$1"; }
# mount_node NODE: mount NODE (its mountpoint made if missing)
mount_node() {
	mkdir -p "$(mnt "$1")"
	mount_fs "$TMP/cache_$1" "$(mnt "$1")" -o "$SHARED" \
		-o heartbeat=1,remote_delete_delay=1,remote_retry_max=1 \
		-o "remote_timeout=${NODE_REMOTE_TIMEOUT:-30}" \
		-o remote_drain_timeout=10
}
# drained NODE WHAT: drain remote completes on NODE within
# NODE_DRAIN_WAIT seconds, nothing left queued
drained() {
	local rep wait=${NODE_DRAIN_WAIT:-30}

	rep=$(ctl_report "drain remote $wait" "$(mnt "$1")" 2>&1) ||
		fail "$2: drain remote on $1 did not complete: $rep;" \
			"$(remote_get last_error "$(mnt "$1")")"
	assert_eq "$2: queued" 0 "$(report_get queued "$rep")"
}

# proxy CMD: a command to the fault proxy; its answer on stdout.
proxy() { T curl -fsS "http://127.0.0.1:$PCTL/$1" || fail "proxy $1"; }
# proxy_stat NAME: the proxy's counter NAME (counted since it started).
proxy_stat() { proxy stats | awk -v k="$1" '$1 == k { print $2 }'; }
# proxy_least NAME N: that counter is at least N.
proxy_least() { (($(proxy_stat "$1") >= $2)); }

# key NAME: a fresh key file $TMP/NAME, mode 0600
key() {
	(umask 077 && head -c 32 /dev/urandom >"$TMP/$1")
}
# refused WHAT PATTERN ARGS...: a mount with ARGS fails, saying PATTERN
refused() {
	local what=$1 pat=$2 out

	shift 2
	out=$(T "$TALLYFS" "$@" 2>&1) && fail "$what: mounted"
	assert_match "$what" "$pat" "$out"
	is_mounted "$MNT" && fail "$what: a refused mount is mounted"
	return 0
}
