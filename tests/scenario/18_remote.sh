#!/bin/bash
# SPDX-License-Identifier: MIT
# The remote tier against a real S3 server (s3rver, which checks SigV4
# signatures), checked by a second client (botocore):
#  - committed objects reach the bucket; `drain remote` waits for them and
#    durable_remote_seq catches up with durable_seq; every key holds the
#    bytes its name says;
#  - a cache smaller than the data: copies in the bucket are evicted, and
#    reading everything back fetches them, byte-exact;
#  - the server down at mount: the mount goes on, uploads wait, and drain
#    after the restart ships them; the server killed and restarted;
#  - kill -9 of the daemon with uploads queued: the next mount resumes
#    them (a persistent queue);
#  - rm: local files at once, bucket keys after remote_delete_delay;
#  - wrong credentials, another store's bucket, a store bound to a bucket
#    mounted without it: refused with a message that says so;
#  - tallyfsck is clean, evicted objects counted as remote_only.
SCN_TIMEOUT=420
source "$(dirname "$0")/lib.sh"
source "$TALLY_SRC/tests/s3/lib.sh"
source "$(dirname "$0")/remote_lib.sh"

s3_start tally-remote || fail "cannot start the S3 server"
PFX=st1
REMOTE=(-o "remote=s3://$S3_BUCKET/$PFX,remote_endpoint=$S3_ENDPOINT")

# the local object bytes are within cache_size (6 MiB)
cache_within() {
	local b

	b=$(T python3 -c 'import json, sys
print(json.load(open(sys.argv[1]))["remote"]["cache_bytes"])' \
		"$MNT/.tally/status") || return 1
	((b <= 6 * MIB))
}

log "uploads, drain remote, durable_remote_seq"
mount_fs "$STORE" "$MNT" "${REMOTE[@]}" -o max_uploads=4,cache_size=6M \
	-o remote_delete_delay=3
mkdir "$MNT/main"
for i in 1 2 3 4 5 6; do
	rand_file "$TMP/f$i" $((2 * MIB + i * 1000))
	T cp "$TMP/f$i" "$MNT/main/f$i"
done
rep=$(ctl_report "drain remote 120") || fail "drain remote failed: $rep"
assert_eq "drain remote: queued" 0 "$(report_get queued "$rep")"
assert_eq "drain remote: durable_remote_seq" \
	"$(report_get durable_seq "$rep")" \
	"$(report_get durable_remote_seq "$rep")"
nobj=$(status_get objects)
assert_eq "bucket keys" "$nobj" "$(bucket_count)"
check_bucket_bytes
assert_eq "remote.failed" 0 "$(remote_get failed)"
T "${S3CLI[@]}" get "$S3_BUCKET" "$PFX/tallyfs-store" "$TMP/marker"
assert_match "bucket marker" '^tallyfs store' "$(cat "$TMP/marker")"

log "eviction below cache_size, reads fetch and check"
wait_for 30 cache_within || fail "cache not evicted: $(remote_get cache_bytes)"
local_n=$(object_count)
((local_n < nobj)) || fail "evicted objects still local ($local_n of $nobj)"
echo 3 >/proc/sys/vm/drop_caches
for i in 1 2 3 4 5 6; do
	assert_same_content "$TMP/f$i" "$MNT/main/f$i"
done
(($(remote_get fetched) > 0)) || fail "reads fetched nothing"
(($(remote_get read_ahead) > 0)) || fail "sequential reads read nothing ahead"

log "a short local copy is fetched again, never served short"
mapfile -t fobjs < <(objects "$MNT/main/f2")
obj=${fobjs[0]}
file=$STORE/shards/0/${obj:0:2}/$obj
# its copies local again (the newest read: evicted last); the page cache
# dropped first, so that the read reaches the daemon (f2's copies, read
# before f3..f6, may have been evicted since)
local_again() {
	echo 3 >/proc/sys/vm/drop_caches
	T cat "$MNT/main/f2" >/dev/null && [[ -e $file ]]
}
wait_for 20 local_again || fail "$file is not fetched back"
T truncate -s 1000 "$file"
echo 3 >/proc/sys/vm/drop_caches
assert_same_content "$TMP/f2" "$MNT/main/f2"
assert_eq "corrupt_objects" 0 "$(status_get corrupt_objects)"
# (unless evicted again meanwhile)
[[ ! -e $file ]] ||
	assert_eq "the copy is whole again" $((1 << 20)) "$(stat -c %s "$file")"
wait_for 30 cache_within || fail "cache not evicted again"
umount_fs
fsck_store "$STORE"
assert_eq "tallyfsck after eviction ($FSCK_OUT)" clean "$(fsck_value status)"
(($(fsck_value remote_only) > 0)) || fail "tallyfsck: no remote_only: $FSCK_OUT"

log "the server down at mount: the mount goes on, uploads wait"
s3_stop
mount_fs "$STORE" "$MNT" "${REMOTE[@]}" -o remote_retry_max=1
rand_file "$TMP/g" $((3 * MIB))
T cp "$TMP/g" "$MNT/main/g"
drain
assert_eq "reachable while down" False "$(remote_get reachable)"
(($(remote_get queued) >= 3)) || fail "nothing queued while down"
assert_eq "drain remote while down" ETIMEDOUT "$(ctl_errno "drain remote 2")"
s3_restart || fail "restart"
rep=$(ctl_report "drain remote 120" 2>&1) || fail "drain remote after restart: $rep $(tail -5 $DLOG)"
assert_eq "queued after restart" 0 "$(report_get queued "$rep")"

log "kill -9 with uploads queued: the next mount resumes them"
s3_stop
rand_file "$TMP/h" $((4 * MIB))
T cp "$TMP/h" "$MNT/main/h"
T sync "$MNT/main/h"
kill9_fs
s3_restart || fail "restart"
mount_fs "$STORE" "$MNT" "${REMOTE[@]}"
rep=$(ctl_report "drain remote 120") || fail "drain remote after kill: $rep"
assert_eq "resumed: queued" 0 "$(report_get queued "$rep")"
assert_eq "bucket keys after resume" "$(status_get objects)" "$(bucket_count)"
assert_same_content "$TMP/h" "$MNT/main/h"

log "upload_delay: objects wait, unless someone waits for them"
umount_fs
mount_fs "$STORE" "$MNT" "${REMOTE[@]}" -o upload_delay=30
rand_file "$TMP/u" $((2 * MIB))
T cp "$TMP/u" "$MNT/main/u"
drain
sleep 2
assert_eq "uploaded within upload_delay" 0 "$(remote_get uploaded)"
(($(remote_get queued) >= 2)) || fail "nothing queued"
rep=$(ctl_report "drain remote 60") || fail "drain remote: $rep"
assert_eq "drain remote does not wait for upload_delay" 0 \
	"$(report_get queued "$rep")"

log "rm: keys leave the bucket after the delay, once no snapshot kept names them"
before=$(bucket_count)
mapfile -t hobjs < <(objects "$MNT/main/h")
T rm "$MNT/main/h"
drain
umount_fs
mount_fs "$STORE" "$MNT" "${REMOTE[@]}" -o remote_delete_delay=1 \
	-o snapshot_keep=1
sleep 2
bucket_keys >"$TMP/keys" || fail "listing"
for o in "${hobjs[@]}"; do
	grep -Eq "/$o(\.g[0-9]+)? " "$TMP/keys" ||
		fail "key of $o gone while a kept snapshot names it"
done
# a snapshot after the rm: the one before it goes (snapshot_keep=1)
ctl_report "drain remote 60" >/dev/null || fail "drain remote after rm"
gone() {
	local o

	bucket_keys >"$TMP/keys" || return 1
	for o in "${hobjs[@]}"; do
		grep -Eq "/$o(\.g[0-9]+)? " "$TMP/keys" && return 1
	done
	return 0
}
wait_for 60 gone || fail "keys of the removed file still in the bucket"
assert_eq "keys left (${hobjs[*]} went from $(cat "$TMP/keys"))" \
	$((before - ${#hobjs[@]})) "$(bucket_count)"
assert_same_content "$TMP/g" "$MNT/main/g"

log "GC of the bucket: a key nothing names goes, the others stay"
stray=0123456789abcdef0123456789abcdef
printf 'stray bytes\n' >"$TMP/stray"
T "${S3CLI[@]}" put "$S3_BUCKET" "$PFX/objects/01/$stray" "$TMP/stray"
keys=$(bucket_count)
rep=$(ctl_report "gc dry-run grace=0") || fail "gc dry-run: $rep"
assert_eq "gc dry-run: remote_unreferenced" 1 \
	"$(report_get remote_unreferenced "$rep")"
assert_eq "gc dry-run: remote_keys" "$keys" "$(report_get remote_keys "$rep")"
rep=$(ctl_report "gc grace=0") || fail "gc: $rep"
assert_eq "gc: remote_queued" 1 "$(report_get remote_queued "$rep")"
# queued after the newest snapshot: it goes once a newer one is the
# oldest kept (snapshot_keep=1)
ctl_report "drain remote 60" >/dev/null || fail "drain remote after gc"
wait_for 60 bucket_lacks "$stray" || fail "the stray key is still in the bucket"
assert_eq "keys after gc" $((keys - 1)) "$(bucket_count)"

log "verify and verify remote"
rep=$(ctl_report "verify remote") || fail "verify remote: $rep"
assert_eq "verify remote: ok" "$(report_get checked "$rep")" \
	"$(report_get ok "$rep")"
assert_eq "verify remote: corrupt" 0 "$(report_get corrupt "$rep")"
(($(report_get checked "$rep") > 0)) || fail "verify remote checked none"
rep=$(ctl_report "verify") || fail "verify: $rep"
assert_eq "verify with evicted objects: missing" 0 \
	"$(report_get missing "$rep")"
# a key overwritten with other bytes, and a key lost
mapfile -t gkeys < <(bucket_keys | awk '{ print $1 }' | grep -v "/$stray\$")
T "${S3CLI[@]}" put "$S3_BUCKET" "${gkeys[0]}" "$TMP/stray"
T "${S3CLI[@]}" rm "$S3_BUCKET" "${gkeys[1]}"
rep=$(ctl_report "verify remote") || fail "verify remote: $rep"
assert_eq "verify remote: corrupt key" 1 "$(report_get corrupt "$rep")"
assert_eq "verify remote: missing key" 1 "$(report_get missing "$rep")"
bad=${gkeys[0]##*/}
assert_match "verify remote: names" "${bad%.g*}" "$rep"
umount_fs

log "refusals"
out=$(AWS_SECRET_ACCESS_KEY=wrong T "$TALLYFS" "${REMOTE[@]}" "$STORE" \
	"$MNT" 2>&1) && fail "mounted with a wrong secret"
assert_match "wrong secret" "refuses the credentials" "$out"
out=$(T "$TALLYFS" "$STORE" "$MNT" 2>&1) && fail "mounted a bound store" \
	"without its bucket"
assert_match "bound store without remote" "is bound to bucket" "$out"
mkdir "$TMP/other"
out=$(T "$TALLYFS" "${REMOTE[@]}" "$TMP/other/store" "$MNT" 2>&1) &&
	fail "mounted a new store on another store's bucket"
assert_match "foreign bucket" "holds another store" "$out"
is_mounted "$MNT" && fail "a refused mount is mounted"

fsck_store "$STORE"
assert_eq "tallyfsck at the end ($FSCK_OUT)" clean "$(fsck_value status)"
assert_match "tallyfsck names the bucket" "not checked" "$FSCK_OUT"
# with the bucket: the key removed by the other client is lost
fsck_store --remote-endpoint="$S3_ENDPOINT" "$STORE"
assert_eq "tallyfsck --remote-endpoint: bucket_missing ($FSCK_OUT)" 1 \
	"$(fsck_value bucket_missing)"
assert_eq "tallyfsck --remote-endpoint: bucket_orphans" 0 \
	"$(fsck_value bucket_orphans)"
assert_match "tallyfsck names the lost object" "(bucket key '${gkeys[1]##*/}')" \
	"$FSCK_OUT"
assert_eq "tallyfsck --remote-endpoint: status" "problems found" \
	"$(fsck_value status)"

log "tallyfsck: an object queued for upload without its local copy is lost"
s3_stop
mount_fs "$TMP/s2" "$MNT" -o "remote=s3://$S3_BUCKET/st2,remote_endpoint=$S3_ENDPOINT" \
	-o remote_drain_timeout=1
mkdir "$MNT/main"
rand_file "$TMP/q" $((2 * MIB))
T cp "$TMP/q" "$MNT/main/q"
mapfile -t qobjs < <(objects "$MNT/main/q")
umount_fs
rm "$TMP/s2/shards/0/${qobjs[0]:0:2}/${qobjs[0]}"
fsck_store "$TMP/s2"
assert_eq "queued_missing ($FSCK_OUT)" 1 "$(fsck_value queued_missing)"
assert_match "queued and lost" "lost: object '${qobjs[0]}' is queued" "$FSCK_OUT"
