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
	mount_fs "$TMP/cache_$n" "$(mnt "$n")" -o "$SHARED" \
		-o heartbeat=1,remote_delete_delay=2 "$@"
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

# refs PATH: the reference counts of a file's objects (user.tally.refs)
refs() { T getfattr --only-values -n user.tally.refs "$1" 2>/dev/null; }
objects_of() { T getfattr --only-values -n user.tally.objects "$1" 2>/dev/null; }

log "ln across namespaces on A, rm of the source on B"
mkdir "$(mnt a)/ns2"
T head -c $((MIB / 2)) /dev/urandom >"$TMP/small"
T cp "$TMP/small" "$(mnt a)/ns/src"
ln "$(mnt a)/ns/src" "$(mnt a)/ns2/dst"
obj=$(objects_of "$(mnt a)/ns2/dst")
obj=${obj%%@*} # NAME@SHARD
[[ $obj =~ ^[0-9a-f]{32} ]] || fail "no object name for ns2/dst: '$obj'"
for n in a b c; do
	wait_for 5 test "$(refs "$(mnt "$n")/ns2/dst")" = 2 ||
		fail "node $n: refs of the linked file $(refs "$(mnt "$n")/ns2/dst"), want 2"
done
rm "$(mnt b)/ns/src"
for n in a b c; do
	wait_for 5 test "$(refs "$(mnt "$n")/ns2/dst")" = 1 ||
		fail "node $n: refs after rm on B $(refs "$(mnt "$n")/ns2/dst"), want 1"
	T cmp "$TMP/small" "$(mnt "$n")/ns2/dst" || fail "node $n: ns2/dst"
done
bucket_keys | grep -q "/$obj" ||
	fail "the object $obj is not in the bucket: $(bucket_keys | head -5)"
rm "$(mnt c)/ns2/dst"
# nothing names it: gone from the bucket after the deletion delay (2 s)
key_gone() { ! bucket_keys | grep -q "/$1"; }
wait_for 30 key_gone "$obj" ||
	fail "the object stays in the bucket once nothing names it"

# workload NODE SECONDS: copies of shared seeds (the same objects on every
# node), links across namespaces, copies inside the mount, removals
workload() {
	local n=$1 end=$((SECONDS + $2)) i=0 m

	m=$(mnt "$n")
	mkdir -p "$m/ns/w_$n" "$m/ns2/w_$n" || return 1
	while ((SECONDS < end)); do
		i=$((i + 1))
		cp "$TMP/seed$((i % 3))" "$m/ns/w_$n/f$i" || return 1
		ln "$m/ns/w_$n/f$i" "$m/ns2/w_$n/l$i" || return 1
		cp "$m/ns2/w_$n/l$i" "$m/ns/w_$n/c$i" || return 1
		if ((i > 3)); then
			rm "$m/ns/w_$n/f$((i - 3))" "$m/ns2/w_$n/l$((i - 3))" \
				"$m/ns/w_$n/c$((i - 3))" || return 1
		fi
	done
	echo "$i" >"$TMP/rounds_$n"
}
for s in 0 1 2; do
	T head -c $((2 * MIB + s * 1000)) /dev/urandom >"$TMP/seed$s"
done

log "three nodes link, copy and unlink shared objects for ${WORK_SECONDS:=60} s"
pids=()
for n in "${NODES[@]}"; do
	workload "$n" "$WORK_SECONDS" 2>"$TMP/work_$n.err" &
	pids+=($!)
done
for i in "${!pids[@]}"; do
	wait "${pids[$i]}" ||
		fail "the workload on node ${NODES[$i]} failed: $(head -3 "$TMP/work_${NODES[$i]}.err")"
done
log "rounds: $(cat "$TMP"/rounds_*| tr '\n' ' ')"
for n in "${NODES[@]}"; do
	for f in "$(mnt "$n")"/ns/w_"$n"/c*; do
		T cmp "$TMP/seed$(( ${f##*/c} % 3 ))" "$f" || fail "$f"
	done
done

log "every node unmounted: tallyfsck finds no drift"
for n in "${NODES[@]}"; do umount_fs "$(mnt "$n")"; done
FSCK_OUT=$(T "$TALLYFSCK" -o "meta=$PG_URI" "$TMP/cache_a" 2>&1) ||
	fail "tallyfsck after the workload: $FSCK_OUT"
grep -q '^status: clean' <<<"$FSCK_OUT" || fail "tallyfsck: $FSCK_OUT"
FSCK_OUT=$(T "$TALLYFSCK" -o "meta=$PG_URI,remote_endpoint=$S3_ENDPOINT" \
	"$TMP/cache_b" 2>&1) || true
grep -q '^bucket_missing: 0$' <<<"$FSCK_OUT" ||
	fail "objects missing from the bucket: $FSCK_OUT"
