#!/bin/bash
# SPDX-License-Identifier: MIT
# A late bucket DELETE (design.md, section 10: generations of a key). Node A
# deletes key K: the fault proxy (tests/s3/faultproxy.py, hold) keeps the
# DELETE, which never reaches the S3 server while A waits, so A's request
# is cut by remote_timeout and its claim ends. Node B writes the same
# content again: it is shipped and recorded in the bucket. Then the held
# DELETE is delivered, as a request held in the network reaches the
# server late. S3 has no conditional DELETE: the content written again
# must still be readable, on a fresh node without any local copy, and
# tallyfsck must find nothing missing from the bucket.
#
# Content made again after its row went is a new row with a new
# generation of its key (design.md, section 10): the late DELETE names the
# old key only. Without generations the fresh node's read fails and
# tallyfsck reports bucket_missing: 1.
SCN_TIMEOUT=240
source "$(dirname "$0")/lib.sh"
source "$TALLY_SRC/tests/s3/lib.sh"
source "$TALLY_SRC/tests/pg/lib.sh"
source "$(dirname "$0")/remote_lib.sh"

shared_start_proxied tally-late late

# nodes (remote_lib.sh): a held DELETE is cut after 3 s
NODE_REMOTE_TIMEOUT=3
claims_under_way() {
	pg_psql -At -c 'SELECT count(*) FROM remote_deleting WHERE since > 0'
}
no_claim_under_way() { [[ $(claims_under_way) == 0 ]]; }

mount_node a
mount_node b
mkdir "$(mnt a)/ns"

log "A writes the content; it is shipped"
rand_file "$TMP/c1" $((MIB / 2 + 11))
T cp "$TMP/c1" "$(mnt a)/ns/x"
drained a "first upload"
k1=$(objects "$(mnt a)/ns/x")
bucket_has "$k1" || fail "the bucket lacks $k1"

log "A removes it: its DELETE is held in the network, A gives up on it"
proxy "hold?method=DELETE" >/dev/null
rm "$(mnt a)/ns/x"
wait_for 60 proxy_least held 1 || fail "no DELETE was held"
wait_for 60 no_claim_under_way ||
	fail "the claim did not end: $(claims_under_way) under way"
bucket_has "$k1" || fail "the held DELETE reached the server"

log "B writes the same content again: shipped and recorded"
T cp "$TMP/c1" "$(mnt b)/ns/x2"
drained b "the content written again"
bucket_has "$k1" || fail "the content written again is not in the bucket"

log "the held DELETE reaches the server late"
proxy pass >/dev/null
out=$(proxy deliver)
log "delivered: $(tr '\n' ';' <<<"$out")"
[[ $out == *DELETE* ]] || fail "no DELETE delivered: $out"
umount_fs "$(mnt a)"
umount_fs "$(mnt b)"

log "a fresh node reads the file, from the bucket alone"
mount_node c
read_rc=0
T cmp "$TMP/c1" "$(mnt c)/ns/x2" || read_rc=$?
umount_fs "$(mnt c)"
FSCK_RC=0
FSCK_OUT=$(T "$TALLYFSCK" -o "$FSCK_OPTS" "$TMP/cache_b" 2>&1) || FSCK_RC=$?
log "tallyfsck: $(grep -E '^(bucket_missing|bucket_orphans):' <<<"$FSCK_OUT" |
	tr '\n' ' ')exit $FSCK_RC"
((read_rc == 0)) ||
	fail "a fresh node cannot read the content written again (cmp: $read_rc)"
assert_match "nothing missing from the bucket" $'bucket_missing: 0\n' \
	"$FSCK_OUT"
assert_eq "tallyfsck: $FSCK_OUT" 0 "$FSCK_RC"
log "ok"
