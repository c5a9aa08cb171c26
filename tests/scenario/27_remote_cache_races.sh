#!/bin/bash
# SPDX-License-Identifier: MIT
# The cache of a store bound to a bucket, against the writes that replace
# what it fetches (issue 28, finding 12):
#  - a fetch that outlives its object: read-ahead fetches the short last
#    block of a file (its GET stalled by the fault proxy) while a write
#    that extends the file replaces that block, commits, and the old
#    object's file is reaped; the fetch ends after that. Its copy must not
#    stay on disk as a file no row names (an orphan, never counted in the
#    cache nor evicted);
#  - a random workload of writes that extend files' short last blocks,
#    overwrites, truncates and unlinks, with cache_size=8M: after a clean
#    unmount tallyfsck, with the bucket, finds no orphan file and no key
#    nothing names; no upload found its local copy gone; the cache is
#    within its bound, and its count is the bytes on disk.
SCN_TIMEOUT=420
source "$(dirname "$0")/lib.sh"
source "$TALLY_SRC/tests/s3/lib.sh"
source "$(dirname "$0")/remote_lib.sh"

s3_start tally-races || fail "cannot start the S3 server"
PFX=races
proxy_start
REMOTE=(-o "remote=s3://$S3_BUCKET/$PFX,remote_endpoint=http://127.0.0.1:$PPORT")

# the object file of NAME in shard 0
objfile() { echo "$STORE/shards/0/${1:0:2}/$1"; }
evicted() { [[ ! -e $(objfile "$1") ]]; }
# the bytes of the object files on disk
disk_bytes() { object_bytes "$STORE"; }
# fsck_bucket_clean WHAT: tallyfsck of the unmounted store, with the
# bucket, is clean
fsck_bucket_clean() {
	fsck_store --remote-endpoint="$S3_ENDPOINT" "$STORE"
	assert_eq "$1: tallyfsck orphan files" 0 "$(fsck_value orphans)"
	assert_eq "$1: tallyfsck bucket keys nothing names" 0 \
		"$(fsck_value bucket_orphans)"
	assert_eq "$1: tallyfsck ($FSCK_OUT)" 0 "$FSCK_RC"
}

log "a fetch by read-ahead that ends after its block was replaced"
mount_fs "$STORE" "$MNT" "${REMOTE[@]}" -o cache_size=64K
mkdir "$MNT/main"
rand_file "$TMP/f" $((MIB + 300000))
T cp "$TMP/f" "$MNT/main/f"
mapfile -t fobjs < <(objects "$MNT/main/f")
assert_eq "blocks of f" 2 "${#fobjs[@]}"
last=${fobjs[1]}
rep=$(ctl_report "drain remote 60") || fail "drain remote failed: $rep"
wait_for 30 evicted "${fobjs[0]}" || fail "block 0 of f not evicted"
wait_for 30 evicted "$last" || fail "the last block of f not evicted"
echo 3 >/proc/sys/vm/drop_caches
# the read of block 0 fetches it and queues block 1 for read-ahead, whose
# GET stalls
proxy "stall?n=1&method=GET&key=$last" >/dev/null
T dd if="$MNT/main/f" of=/dev/null bs=4096 count=1 status=none
wait_for 20 proxy_least stall 1 ||
	fail "read-ahead did not ask for the last block"
# the last block written whole (nothing read), beyond the old end; the
# commit kills the old object and reaps its file
head -c 400000 /dev/urandom >"$TMP/tail"
T python3 - "$MNT/main/f" "$TMP/tail" $MIB <<-'EOF'
import os, sys
fd = os.open(sys.argv[1], os.O_WRONLY)
os.pwrite(fd, open(sys.argv[2], "rb").read(), int(sys.argv[3]))
os.fsync(fd)
os.close(fd)
EOF
T truncate -s "$MIB" "$TMP/f"
cat "$TMP/tail" >>"$TMP/f"
ctl drain >/dev/null || fail "drain failed"
mapfile -t fobjs < <(objects "$MNT/main/f")
assert_ne "the new last block" "$last" "${fobjs[1]}"
# the stalled GET goes on; the fetch ends with no row for its object
proxy pass >/dev/null
wait_for 20 proxy_least forwarded_GET 2 ||
	fail "the stalled GET was not released"
sleep 1
evicted "$last" ||
	fail "the fetched copy of the replaced block stays: $(objfile "$last")"
echo 3 >/proc/sys/vm/drop_caches
assert_same_content "$TMP/f" "$MNT/main/f"
umount_fs
fsck_bucket_clean "after a fetch of a replaced block"
grep -q 'unreadable' "$DLOG" &&
	fail "an upload found its copy gone: $(grep unreadable "$DLOG" | head -3)"

log "random writes, extends, truncates and unlinks with cache_size=8M"
mount_fs "$STORE" "$MNT" "${REMOTE[@]}" -o cache_size=8M
mkdir "$MNT/rand"
T python3 - "$MNT/rand" "${SEED:-$RANDOM}" <<-'EOF'
import os, random, sys, time
root, seed = sys.argv[1], int(sys.argv[2])
print("# seed", seed)
rnd = random.Random(seed)
MIB = 1 << 20
names = ["f%02d" % i for i in range(12)]
end = time.monotonic() + 25
while time.monotonic() < end:
    time.sleep(rnd.random() * 0.05)
    path = os.path.join(root, rnd.choice(names))
    op = rnd.random()
    try:
        if op < 0.55:  # across the end of the short last block
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            size = os.fstat(fd).st_size
            off = max(0, size - rnd.randrange(0, 200000))
            os.pwrite(fd, os.urandom(rnd.randrange(1, 3 * MIB // 2)), off)
            if rnd.random() < 0.3:
                os.fsync(fd)
            os.close(fd)
        elif op < 0.75:  # inside
            fd = os.open(path, os.O_RDWR)
            size = os.fstat(fd).st_size
            if size:
                os.pwrite(fd, os.urandom(rnd.randrange(1, 300000)),
                          rnd.randrange(0, size))
            os.close(fd)
        elif op < 0.85:
            os.truncate(path, rnd.randrange(0, os.path.getsize(path) + 1))
        else:
            os.unlink(path)
    except FileNotFoundError:
        pass
EOF
# evicted down to the bound, counted as the bytes on disk
within() {
	local b

	b=$(remote_get cache_bytes) || return 1
	[[ $b == "$(disk_bytes)" ]] && ((b <= 8 * MIB))
}
rep=$(ctl_report "drain remote 120") || fail "drain remote failed: $rep"
wait_for 30 within ||
	fail "cache: $(remote_get cache_bytes) counted, $(disk_bytes) on disk"
umount_fs
grep -q 'unreadable' "$DLOG" &&
	fail "an upload found its copy gone: $(grep unreadable "$DLOG" | head -3)"
fsck_bucket_clean "after the random workload"

# issue 45, item 3: sequential readers of evicted files through a cache
# smaller than read-ahead (16 blocks of 1 MiB into 4 MiB): a fetched copy
# evicted before its read got to it is fetched again (the first one by
# fault injection, TALLYFS_FAULT=evict:1:1: before, that read was EIO),
# and read-ahead stays within half the cache; no read fails for the
# cache's own bound
log "readers of evicted files through a cache smaller than read-ahead"
export TALLYFS_FAULT="evict:1:1"
mount_fs "$STORE" "$MNT" "${REMOTE[@]}" -o cache_size=4M
unset TALLYFS_FAULT
mkdir "$MNT/seq"
for i in 1 2 3; do
	rand_file "$TMP/seq$i" $((12 * MIB + i))
	T cp "$TMP/seq$i" "$MNT/seq/s$i"
done
rep=$(ctl_report "drain remote 120") || fail "drain remote failed: $rep"
wait_for 30 within || fail "cache: $(remote_get cache_bytes) counted"
echo 3 >/proc/sys/vm/drop_caches # the reads reach the daemon
seen=$(wc -l <"$DLOG")
for round in 1 2; do
	pids=()
	for i in 1 2 3; do
		T cmp "$TMP/seq$i" "$MNT/seq/s$i" >"$TMP/cmp$i" 2>&1 &
		pids+=($!)
	done
	for i in 1 2 3; do
		wait "${pids[$((i - 1))]}" ||
			fail "round $round: s$i read otherwise: $(cat "$TMP/cmp$i")"
	done
done
said=$(tail -n +$((seen + 1)) "$DLOG")
grep -q "is evicted before the read" <<<"$said" ||
	fail "the fault did not fire: $(tail -n 5 <<<"$said")"
grep -q "cannot read block" <<<"$said" &&
	fail "a read failed for the cache: $(grep "cannot read block" <<<"$said" | head -3)"
umount_fs
