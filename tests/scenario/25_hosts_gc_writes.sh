#!/bin/bash
# SPDX-License-Identifier: MIT
# GC with grace 0 on the node that writes, in a shared store (PostgreSQL,
# tests/pg/lib.sh, and s3rver, tests/s3/lib.sh): a flush of a shared store
# writes its objects to the node's cache, then puts them into the bucket
# before its commit names them; a GC cycle in between finds each such
# copy named by nothing (no row yet, and the node's report lists only
# the flushes that finished their stream) and collects it. No close may
# fail for that:
#  - 60 files written and closed one after the other while `gc grace=0`
#    runs in a loop on the same node: every close returns 0;
#  - every file reads back byte-exact after the page cache is dropped,
#    drain remote completes, and tallyfsck finds nothing missing from the
#    bucket and nothing dangling.
SCN_TIMEOUT=360
source "$(dirname "$0")/lib.sh"
source "$TALLY_SRC/tests/s3/lib.sh"
source "$TALLY_SRC/tests/pg/lib.sh"
source "$(dirname "$0")/remote_lib.sh"

shared_start tally-gcw gcw
# blocks of 4 KiB: a file of 40-60 KiB is 10-15 objects, each put into
# the bucket in turn by its flush, each a window for a GC cycle
mount_fs "$STORE" "$MNT" -o "$SHARED" -o heartbeat=1,block_size=4096
mkdir "$MNT/ns"
FILES=60

# gc_loop: gc grace=0 until $TMP/stop exists (each cycle's failure noted)
gc_loop() {
	local n=0

	while [[ ! -e $TMP/stop ]]; do
		ctl "gc grace=0" >/dev/null 2>&1 || echo "gc $n failed" >>"$TMP/gc.err"
		n=$((n + 1))
	done
	echo "$n" >"$TMP/gc.count"
}

log "$FILES files written and closed while gc grace=0 runs in a loop"
for ((i = 0; i < FILES; i++)); do
	head -c $((40960 + i * 131)) /dev/urandom >"$TMP/src_$i"
done
gc_loop &
GC_PID=$!
failed=0
for ((i = 0; i < FILES; i++)); do
	# cp reports a failed close(2) as its own failure
	T cp "$TMP/src_$i" "$MNT/ns/f$i" 2>>"$TMP/cp.err" || failed=$((failed + 1))
done
touch "$TMP/stop"
wait "$GC_PID" || fail "the gc loop failed"
log "gc cycles meanwhile: $(cat "$TMP/gc.count"), closes failed: $failed"
((failed == 0)) || fail "$failed of $FILES closes failed:" \
	"$(sort "$TMP/cp.err" | uniq -c | head -3)"
(($(cat "$TMP/gc.count") >= 5)) || fail "too few gc cycles ran"

log "every file reads back, the bucket holds every object"
rep=$(ctl_report "drain remote 60") || fail "drain remote failed: $rep"
echo 3 >/proc/sys/vm/drop_caches
for ((i = 0; i < FILES; i++)); do
	T cmp "$TMP/src_$i" "$MNT/ns/f$i" || fail "f$i reads wrong"
done
umount_fs "$MNT"
FSCK_OUT=$(T "$TALLYFSCK" --wait=10 -o "meta=$PG_URI,remote_endpoint=$S3_ENDPOINT" \
	"$STORE" 2>&1) || fail "tallyfsck: $FSCK_OUT"
assert_match "nothing missing from the bucket" $'bucket_missing: 0\n' \
	"$FSCK_OUT"
assert_match "nothing dangling" $'dangling: 0\n' "$FSCK_OUT"
log "ok"
