#!/bin/bash
# SPDX-License-Identifier: MIT
# Issue 45, item 7: a cache disk that is full, a mount without
# cache_size (nothing evicts to a bound), files whose local copies were
# evicted before: a read fetches each from the bucket, and the copy it
# must keep makes room by evicting copies the bucket holds. It failed
# with EIO ("cannot fetch object ...: No space left on device") before.
SCN_TIMEOUT=240
source "$(dirname "$0")/lib.sh"
source "$TALLY_SRC/tests/s3/lib.sh"
source "$(dirname "$0")/remote_lib.sh"

s3_start tally-cachefull || fail "cannot start the S3 server"
REMOTE=(-o "remote=s3://$S3_BUCKET/cfull,remote_endpoint=$S3_ENDPOINT")
# the store on a disk of its own (below $TMP: lib.sh unmounts it)
DISK=$TMP/disk
mkdir "$DISK"
mount -t tmpfs -o size=48m tallyfs-cachefull "$DISK" ||
	fail "cannot mount a tmpfs for the store"
STORE=$DISK/store
evicted_at_least() { (($(remote_get evicted) >= $1)); }

log "set A written and uploaded; its copies evicted (cache_size=1M)"
mount_fs "$STORE" "$MNT" "${REMOTE[@]}" -o cache_size=1M,upload_delay=0
mkdir "$MNT/main"
for i in 1 2 3 4 5 6; do
	rand_file "$TMP/a$i" $((MIB + i))
	T cp "$TMP/a$i" "$MNT/main/a$i"
done
rep=$(ctl_report "drain remote 120") || fail "drain remote: $rep"
wait_for 30 evicted_at_least 5 || fail "A's copies not evicted: $(remote_get evicted)"
umount_fs

log "remounted without cache_size: set B written and uploaded, kept"
mount_fs "$STORE" "$MNT" "${REMOTE[@]}" -o upload_delay=0
for i in 1 2 3 4 5 6 7 8; do
	rand_file "$TMP/b$i" $((MIB + 100 + i))
	T cp "$TMP/b$i" "$MNT/main/b$i"
done
rep=$(ctl_report "drain remote 120") || fail "drain remote: $rep"
assert_eq "nothing evicted without cache_size" 0 "$(remote_get evicted)"

log "the disk filled from outside; A read back from the bucket"
avail=$(df --output=avail -B1 "$DISK" | tail -n 1)
fallocate -l "$avail" "$DISK/filler" || fail "cannot fill the disk"
echo 3 >/proc/sys/vm/drop_caches
for i in 1 2 3 4 5 6; do
	T cmp "$TMP/a$i" "$MNT/main/a$i" ||
		fail "a$i does not read back on a full cache disk"
done
((${evicted:=$(remote_get evicted)} > 0)) ||
	fail "no copy of B was evicted to make room"
grep -q "cannot fetch object" "$DLOG" && fail "a fetch failed: $(grep \
	'cannot fetch object' "$DLOG" | tail -n 1)"
log "$evicted copies the bucket holds evicted to make room"
# B still reads (from the bucket where its copy went)
for i in 1 2 3 4 5 6 7 8; do
	T cmp "$TMP/b$i" "$MNT/main/b$i" || fail "b$i reads otherwise"
done
rm -f "$DISK/filler"
umount_fs
fsck_store --remote-endpoint="$S3_ENDPOINT" "$STORE"
assert_eq "tallyfsck ($FSCK_OUT)" clean "$(fsck_value status)"
log "ok"
