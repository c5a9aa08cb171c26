# SPDX-License-Identifier: MIT
# shellcheck shell=bash
#
# Helpers of the remote tier's scenarios (18_remote, 19_remote_faults):
# sourced after lib.sh and tests/s3/lib.sh. $PFX is the scenario's key
# prefix in $S3_BUCKET. The bucket is read by a second client (botocore:
# tests/s3/s3cli.py), never by the daemon's own.

S3CLI=(/usr/bin/python3 "$TALLY_SRC/tests/s3/s3cli.py")
bucket_keys() { T "${S3CLI[@]}" ls "$S3_BUCKET" "$PFX/objects/"; }
# bucket_has NAME: a key of the bucket ends in /NAME (1: not there, 2: the
# listing failed). The listing is read whole before grep looks at it: with
# pipefail a grep -q that stops early would fail the pipe on SIGPIPE.
bucket_has() {
	local keys
	keys=$(bucket_keys | awk '{ print $1 }') || return 2
	grep -q "/$1\$" <<<"$keys"
}
# bucket_lacks NAME: the listing worked and no key ends in /NAME
bucket_lacks() {
	local rc=0
	bucket_has "$1" || rc=$?
	((rc == 1))
}
bucket_count() { T "${S3CLI[@]}" count "$S3_BUCKET" "$PFX/objects/"; }
# remote_get KEY [MNT]: one value of the status's remote section
remote_get() { status_get remote "${2:-$MNT}" | python3 -c "
import json, sys
print(json.load(sys.stdin)['$1'])"; }

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

# every key under objects/ holds bytes that hash to its name
check_bucket_bytes() {
	local key size name

	while read -r key size; do
		name=${key##*/}
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
