#!/bin/bash
# SPDX-License-Identifier: MIT
# Issue 45, item 5: a node that starts mounting while another rekeys
# must not write the retired key's ring back into the bucket's marker.
# Node B reads the store's seal record (key k1 alone) as its mount
# begins; its first request to the bucket (the LIST of its check) is
# stalled by the fault proxy (tests/s3/faultproxy.py) while node A
# rekeys to k2 and ends the rekey (record and marker: k2 alone). Then
# B's check goes on: the marker (k2) differs from what B read (k1), and
# B writes the rings again. They must be the record's as it is then
# (k2 alone), read again before the write (core/remote/remote.c,
# put_rings()), never what B read at its start: the marker names no
# ring of k1, then and after B's next checks.
SCN_TIMEOUT=180
source "$(dirname "$0")/lib.sh"
source "$TALLY_SRC/tests/s3/lib.sh"
source "$TALLY_SRC/tests/pg/lib.sh"
source "$(dirname "$0")/remote_lib.sh"

shared_start_proxied tally-hmarker hmarker
key k1
key k2
# A reaches the S3 server itself, B through the proxy
DIRECT="meta=$PG_URI,remote=s3://$S3_BUCKET/$PFX,remote_endpoint=$S3_ENDPOINT"
mount_with() { # NODE SHARED KEY
	mkdir -p "$(mnt "$1")"
	mount_fs "$TMP/cache_$1" "$(mnt "$1")" -o "$2" \
		-o "heartbeat=1,key_file=$TMP/$3"
}
# the ring lines of the bucket's marker, by key id
marker_rings() {
	T "${S3CLI[@]}" get "$S3_BUCKET" "$PFX/tallyfs-store" "$TMP/marker"
	awk '$1 == "keyring" { print $2 }' "$TMP/marker"
}

mount_with a "$DIRECT" k1
k1id=$(remote_get key_id "$(mnt a)")
mkdir "$(mnt a)/ns"
echo before >"$(mnt a)/ns/f"
drained a "A's file"
assert_eq "the marker's rings before" "$k1id" "$(marker_rings)"

log "B begins to mount with k1; A rekeys to k2 meanwhile"
proxy "stall?n=1&method=LIST" >/dev/null
(
	wait_for 30 proxy_least stall 1 || { echo "no stall" >"$TMP/bg"; exit; }
	ctl_report "rekey $TMP/k2" "$(mnt a)" >"$TMP/rekey.out" 2>&1 ||
		echo "rekey failed" >>"$TMP/bg"
	proxy pass >/dev/null
	echo done >>"$TMP/bg"
) &
bg=$!
mount_with b "$SHARED" k1
wait "$bg"
grep -qx done "$TMP/bg" || fail "the rekey beside B's mount: $(cat "$TMP/bg" \
	"$TMP/rekey.out")"
k2id=$(report_get key_id "$(cat "$TMP/rekey.out")")
assert_ne "a new key" "$k1id" "$k2id"
assert_eq "the stall hit B's check" 1 "$(proxy_stat stall)"

# B's check has run (within the mount, or its loop's first after a
# timeout): the marker names k2 alone, now and after B's next checks
b_reached() { [[ $(remote_get reachable "$(mnt b)") == True ]]; }
wait_for 30 b_reached || fail "B never reached the bucket"
for i in 1 2 3; do
	rings=$(marker_rings)
	[[ $rings == "$k2id" ]] || fail "check $i: the marker names the" \
		"rings '$rings' after the rekey to $k2id ended (k1: $k1id)"
	sleep 2
done
echo after >"$(mnt b)/ns/g"
drained b "B's file"
assert_eq "B reads A's file" before "$(cat "$(mnt b)/ns/f")"
assert_eq "the marker's rings at the end" "$k2id" "$(marker_rings)"
log "ok"
