#!/bin/bash
# SPDX-License-Identifier: MIT
# Several mounts of one store, as on several hosts: three daemons, each
# with its own mountpoint, cache directory and node, the metadata in a
# real PostgreSQL cluster (tests/pg/lib.sh) and the objects in a real S3
# server (tests/s3/lib.sh):
#  - write on A, close, read on B and C, byte-exact; rename and rmdir on
#    one node seen from the others;
#  - every node is a session in /.tally/status, with its host and pid;
SCN_TIMEOUT=600
source "$(dirname "$0")/lib.sh"
source "$TALLY_SRC/tests/s3/lib.sh"
source "$TALLY_SRC/tests/pg/lib.sh"
source "$(dirname "$0")/remote_lib.sh"

s3_start tally-hosts || fail "cannot start the S3 server"
pg_start || fail "cannot start PostgreSQL"
# the mounts go first, while their database is still there
PG_BEFORE_STOP=daemons_down
PFX=hosts
SHARED="meta=$PG_URI,remote=s3://$S3_BUCKET/$PFX,remote_endpoint=$S3_ENDPOINT"
NODES=(a b c)
for n in "${NODES[@]}"; do mkdir "$TMP/mnt_$n"; done
mnt() { echo "$TMP/mnt_$1"; }
mount_node() {
	local n=$1

	shift
	mount_fs "$TMP/cache_$n" "$(mnt "$n")" -o "$SHARED" -o heartbeat=1 "$@"
}

log "three nodes mount one store"
for n in "${NODES[@]}"; do mount_node "$n"; done
nodes=$(status_json "$(mnt a)" | python3 -c '
import json, sys
d = json.load(sys.stdin)
print(len(d["nodes"]), len({n["pid"] for n in d["nodes"]}))')
[[ $nodes == "3 3" ]] || fail "status lists nodes: $nodes (want 3 sessions)"

log "write on A, close, read on B and C"
mkdir "$(mnt a)/ns"
T head -c $((3 * MIB + 12345)) /dev/urandom >"$TMP/data"
T cp "$TMP/data" "$(mnt a)/ns/file"
for n in b c; do
	T cmp "$TMP/data" "$(mnt "$n")/ns/file" ||
		fail "node $n does not read what A wrote"
done

log "rename on B, rmdir on C: seen from the other nodes"
mkdir "$(mnt a)/ns/dir"
mv "$(mnt b)/ns/file" "$(mnt b)/ns/renamed"
for n in a c; do
	wait_for 5 test -e "$(mnt "$n")/ns/renamed" ||
		fail "node $n does not see the rename"
	wait_for 5 test ! -e "$(mnt "$n")/ns/file" ||
		fail "node $n still sees the old name"
	T cmp "$TMP/data" "$(mnt "$n")/ns/renamed" ||
		fail "node $n reads the renamed file wrong"
done
rmdir "$(mnt c)/ns/dir"
for n in a b; do
	wait_for 5 test ! -e "$(mnt "$n")/ns/dir" ||
		fail "node $n still sees the removed directory"
done
