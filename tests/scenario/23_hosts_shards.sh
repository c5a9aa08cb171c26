#!/bin/bash
# SPDX-License-Identifier: MIT
# The shards of a shared store's node: its cache spread over directories
# of its own (legs of shard 0, which no row names), with the metadata in
# a real PostgreSQL cluster (tests/pg/lib.sh) and the objects in a real
# S3 server (tests/s3/lib.sh):
#  - `shard add DIR` on node A makes DIR a leg of A's cache, listed in
#    A's status; a leg twice, a directory that is not empty, one inside
#    the mount: refused;
#  - A's new copies go to both legs, and every file reads back
#    byte-exact; B (its own cache, no legs) reads them from the bucket;
#  - a remount of A attaches the leg again from A's cache directory;
#  - a leg gone (its disk lost): A reads every file again from the
#    bucket into the leg that is left; an empty directory in its place
#    is not taken for it; back, it is reachable again;
#  - tallyfsck finds nothing dangling, no drift, nothing missing from
#    the bucket, no orphan in either leg.
SCN_TIMEOUT=360
source "$(dirname "$0")/lib.sh"
source "$TALLY_SRC/tests/s3/lib.sh"
source "$TALLY_SRC/tests/pg/lib.sh"
source "$(dirname "$0")/remote_lib.sh"

shared_start tally-legs legs
for n in a b; do mkdir "$TMP/mnt_$n"; done
mnt() { echo "$TMP/mnt_$1"; }
mount_node() { mount_fs "$TMP/cache_$1" "$(mnt "$1")" -o "$SHARED" \
	-o heartbeat=1; }
# copies DIR: the object files under DIR
copies() {
	find "$1" -type f -regextype posix-extended \
		-regex '.*/[0-9a-f]{2}/[0-9a-f]{32}(-[0-9]+)?' | wc -l
}
# legs MNT: "id:path:state" of every shard in the status
legs() {
	status_json "$1" | python3 -c '
import json, sys
print(" ".join("%d:%s:%s" % (s["id"], s["path"], s["state"])
               for s in json.load(sys.stdin)["shards"]))'
}
# remount_a STATE WHY: A mounted again, its leg then in STATE
remount_a() {
	umount_fs "$(mnt a)"
	mount_node a
	[[ $(legs "$(mnt a)") == *"1:$TMP/leg1:$1"* ]] ||
		fail "$2: $(legs "$(mnt a)")"
}
# reads NODE: every file read back byte-exact, the page cache dropped
reads() {
	local i

	echo 3 >/proc/sys/vm/drop_caches
	for ((i = 1; i <= 24; i++)); do
		T cmp "$TMP/f$i" "$(mnt "$1")/ns/f$i" ||
			fail "node $1 reads f$i wrong"
	done
}

log "shard add on node A: a leg of its cache"
mount_node a
mkdir "$TMP/leg1" "$TMP/full"
: >"$TMP/full/x"
r=$(ctl_report "shard add $TMP/leg1" "$(mnt a)") || fail "shard add leg1"
assert_eq "id of the leg" 1 "$(report_get shard "$r")"
[[ $(legs "$(mnt a)") == *"1:$TMP/leg1:active"* ]] ||
	fail "A's status does not list the leg: $(legs "$(mnt a)")"
assert_eq "a leg twice" EEXIST "$(ctl_errno "shard add $TMP/leg1" "$(mnt a)")"
assert_eq "a directory that is not empty" ENOTEMPTY \
	"$(ctl_errno "shard add $TMP/full" "$(mnt a)")"
assert_eq "a leg inside the mount" EINVAL \
	"$(ctl_errno "shard add $(mnt a)/x" "$(mnt a)")"
grep -qx "1 $TMP/leg1" "$TMP/cache_a/legs" ||
	fail "the leg is not in A's cache directory: $(cat "$TMP/cache_a/legs")"

log "A writes 24 files: copies in both legs, every byte read back"
mkdir "$(mnt a)/ns"
for ((i = 1; i <= 24; i++)); do
	rand_file "$TMP/f$i" $((100000 + i * 1000))
	T cp "$TMP/f$i" "$(mnt a)/ns/f$i"
done
ctl drain "$(mnt a)" >/dev/null || fail "drain failed"
n0=$(copies "$TMP/cache_a/shards/0")
n1=$(copies "$TMP/leg1")
log "copies: $n0 in shard 0, $n1 in the leg"
((n0 > 0 && n1 > 0)) || fail "copies not spread: $n0 and $n1"
assert_eq "copies in A's legs" 24 $((n0 + n1))
reads a

log "B (no legs) reads them from the bucket"
mount_node b
reads b
[[ $(legs "$(mnt b)") != *"$TMP/leg1"* ]] || fail "B lists A's leg"

log "A remounted: the leg is attached again"
ctl_report "drain remote 60" "$(mnt a)" >/dev/null || fail "drain remote"
remount_a active "A's leg after a remount"
reads a
(($(remote_get fetched "$(mnt a)") == 0)) ||
	fail "A fetched what its legs hold: $(remote_get fetched "$(mnt a)")"

log "the leg's disk lost: A reads from the bucket into the leg left"
mv "$TMP/leg1" "$TMP/leg1.gone"
remount_a unreachable "A's lost leg"
reads a
(($(remote_get fetched "$(mnt a)") > 0)) || fail "A fetched nothing"
mkdir "$TMP/leg1"
remount_a unreachable "an empty directory taken for the leg"
rmdir "$TMP/leg1"
mv "$TMP/leg1.gone" "$TMP/leg1"
remount_a active "the leg back"
reads a

log "tallyfsck: nothing dangling, no drift, nothing missing"
for n in a b; do umount_fs "$(mnt "$n")"; done
fsck_store -o "meta=$PG_URI,remote_endpoint=$S3_ENDPOINT" "$TMP/cache_a"
for key in dangling drift_under drift_over bucket_missing orphans \
	unreachable_shards; do
	assert_eq "tallyfsck $key ($FSCK_OUT)" 0 "$(fsck_value "$key")"
done
log "ok"
