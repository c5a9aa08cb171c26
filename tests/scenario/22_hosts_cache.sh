#!/bin/bash
# SPDX-License-Identifier: MIT
# The caches of a shared store's nodes: two daemons on one PostgreSQL
# database (tests/pg/lib.sh) and one bucket (tests/s3/lib.sh), each with
# its own cache directory and cache_size:
#  - a node's cache_bytes (in /.tally/status) are the bytes of the object
#    files in its own cache directory, not the store's;
#  - A writes more than its cache holds: its copies (in the bucket) are
#    evicted down to cache_size, and A reads every byte back (fetched);
#  - B reads the same files: its cache fills and is evicted in turn;
#  - a mount on a cache directory holding copies counts them first, then
#    evicts down to a smaller cache_size;
#  - tallyfsck finds no reference dangling and nothing missing from the
#    bucket.
SCN_TIMEOUT=420
source "$(dirname "$0")/lib.sh"
source "$TALLY_SRC/tests/s3/lib.sh"
source "$TALLY_SRC/tests/pg/lib.sh"
source "$(dirname "$0")/remote_lib.sh"

shared_start tally-cache cache
for n in a b; do mkdir "$TMP/mnt_$n"; done
mnt() { echo "$TMP/mnt_$1"; }
mount_node() { # NODE CACHE_SIZE
	mount_fs "$TMP/cache_$1" "$(mnt "$1")" -o "$SHARED" \
		-o "heartbeat=1,cache_size=$2"
}
# local_bytes NODE: the bytes of the object files in NODE's cache
local_bytes() { object_bytes "$TMP/cache_$1"; }
# within NODE BYTES: the node's status and its directory agree, at most BYTES
within() {
	local s

	s=$(remote_get cache_bytes "$(mnt "$1")") || return 1
	[[ $s == "$(local_bytes "$1")" ]] && ((s <= $2))
}
# reads NODE: every file read back byte-exact, the page cache dropped
reads() {
	local i

	echo 3 >/proc/sys/vm/drop_caches
	for i in 1 2 3 4 5 6 7; do
		T cmp "$TMP/f$i" "$(mnt "$1")/ns/f$i" ||
			fail "node $1 reads f$i wrong"
	done
}

log "A writes 14 MiB with a cache of 6 MiB: evicted down to it"
mount_node a 6M
mkdir "$(mnt a)/ns"
for i in 1 2 3 4 5 6 7; do
	rand_file "$TMP/f$i" $((2 * MIB + i * 1000))
	T cp "$TMP/f$i" "$(mnt a)/ns/f$i"
done
ctl drain "$(mnt a)" >/dev/null || fail "drain failed"
wait_for 30 within a $((6 * MIB)) ||
	fail "A's cache: status $(remote_get cache_bytes "$(mnt a)"), on disk $(local_bytes a)"
(($(remote_get evicted "$(mnt a)") > 0)) || fail "A evicted nothing"
reads a
(($(remote_get fetched "$(mnt a)") > 0)) || fail "A's reads fetched nothing"
wait_for 30 within a $((6 * MIB)) || fail "A's cache not evicted after reads"

log "B reads them: its own cache fills and is evicted"
mount_node b 6M
reads b
(($(remote_get fetched "$(mnt b)") > 0)) || fail "B's reads fetched nothing"
wait_for 30 within b $((6 * MIB)) ||
	fail "B's cache: status $(remote_get cache_bytes "$(mnt b)"), on disk $(local_bytes b)"
(($(local_bytes b) > 0)) || fail "B keeps no copy"
wait_for 10 within a $((6 * MIB)) || fail "A's cache after B's reads"

log "a mount on a cache holding copies counts them, then evicts"
umount_fs "$(mnt a)"
held=$(local_bytes a)
((held > 3 * MIB)) || fail "A's cache holds $held bytes, want above 3 MiB"
mount_node a 3M
wait_for 30 within a $((3 * MIB)) ||
	fail "A's cache after the remount: status $(remote_get cache_bytes "$(mnt a)"), on disk $(local_bytes a)"
reads a
# what the reads fetched is evicted again before the unmount, so that
# tallyfsck finds copies missing from A's cache (remote_only)
wait_for 30 within a $((3 * MIB)) || fail "A's cache not evicted after reads"

log "tallyfsck: nothing dangling, nothing missing from the bucket"
for n in a b; do umount_fs "$(mnt "$n")"; done
fsck_store -o "meta=$PG_URI,remote_endpoint=$S3_ENDPOINT" "$TMP/cache_a"
((FSCK_RC == 0 || FSCK_RC == 1)) || fail "tallyfsck exit $FSCK_RC: $FSCK_OUT"
for key in dangling drift_under drift_over bucket_missing; do
	assert_eq "tallyfsck $key ($FSCK_OUT)" 0 "$(fsck_value "$key")"
done
(($(fsck_value remote_only) > 0)) || fail "tallyfsck: no remote_only: $FSCK_OUT"
