#!/bin/bash
# SPDX-License-Identifier: MIT
# Faults between the remote tier and its S3 server (s3rver), injected by
# the project's fault proxy (tests/s3/faultproxy.py) on the real traffic:
#  - 503 SlowDown and 500 answers: retried with backoff, nothing lost;
#  - every upload refused: durable_remote_seq stays below durable_seq
#    (never overstated) until the fault clears;
#  - a connection stalled mid-body (cut by remote_timeout) and one cut
#    mid-body: retried;
#  - the bucket full (507): retried, drained once there is room;
#  - the server killed during a drain and restarted;
#  - kill -9 of the daemon with uploads in flight: resumed at the next
#    mount.
# After each fault clears, drain remote empties the queue, the bucket holds
# exactly the objects the store names (every key hashing to its name), and
# at the end the files read back byte-exact and tallyfsck is clean.
SCN_TIMEOUT=540
source "$(dirname "$0")/lib.sh"
source "$TALLY_SRC/tests/s3/lib.sh"
source "$(dirname "$0")/remote_lib.sh"

s3_start tally-faults || fail "cannot start the S3 server"
PFX=faults
# the proxy goes first, then the server, then the mounts (lib.sh)
proxy_start
REMOTE=(-o "remote=s3://$S3_BUCKET/$PFX,remote_endpoint=http://127.0.0.1:$PPORT"
	-o remote_retry_max=1,remote_timeout=3,max_uploads=4)

# proxy MODE: set the proxy's fault mode (see faultproxy.py)
proxy() { T curl -fsS "http://127.0.0.1:$PCTL/$1" >/dev/null ||
	fail "proxy $1"; }
proxy_stat() { T curl -fsS "http://127.0.0.1:$PCTL/stats" |
	awk -v k="$1" '$1 == k { print $2 }'; }
# proxy_least NAME N: the proxy's counter NAME is at least N
proxy_least() { (($(proxy_stat "$1") >= $2)); }

# drained WHAT: drain remote succeeds, the bucket holds exactly the
# objects of the store
drained() {
	local rep

	rep=$(ctl_report "drain remote 150" 2>&1) ||
		fail "$1: drain remote failed: $rep"
	assert_eq "$1: queued" 0 "$(report_get queued "$rep")"
	assert_eq "$1: durable_remote_seq" "$(report_get durable_seq "$rep")" \
		"$(report_get durable_remote_seq "$rep")"
	assert_eq "$1: bucket keys" "$(status_get objects)" "$(bucket_count)"
}

# put NAME MIB: a new random file
put() {
	rand_file "$TMP/$1" $(($2 * MIB + 777))
	T cp "$TMP/$1" "$MNT/main/$1"
}

mount_fs "$STORE" "$MNT" "${REMOTE[@]}"
mkdir "$MNT/main"

log "503 SlowDown and 500: retried"
proxy "status/503/SlowDown?n=5&method=PUT"
put a 3
drained "503"
proxy "status/500?n=3&method=PUT"
put b 2
drained "500"
assert_eq "faults answered" 8 "$(proxy_stat status)"
(($(remote_get retries) > 0)) || fail "no retry counted"

log "uploads refused: durable_remote_seq is never overstated"
proxy "status/500?method=PUT"
put c 2
drain
wait_for 20 proxy_least status 9 ||
	fail "no upload was tried"
# a server that fails is probed one job at a time, each backoff
# (remote_retry_max=1): not every queued object on its own
n0=$(proxy_stat status)
sleep 4
n1=$(proxy_stat status)
log "attempts against the failing server in 4 s: $((n1 - n0))"
(((n1 - n0) <= 8)) ||
	fail "$((n1 - n0)) attempts in 4 s against a failing server"
st=$(status_json)
python3 -c '
import json, sys
d = json.loads(sys.argv[1])
r = d["remote"]
assert r["durable_remote_seq"] < d["durable_seq"], (r, d["durable_seq"])
assert r["queued"] >= 3, r
assert "500" in r["last_error"], r
' "$st" || fail "while refused: $st"
proxy pass
drained "after the refusals"

log "stalled and cut mid-body: retried"
proxy "stall?n=2&method=PUT"
put d 3
wait_for 30 proxy_least stall 2 || fail "no stall"
drained "stall"
proxy "cut?n=3&method=PUT"
put e 3
drained "cut"
assert_eq "cuts" 3 "$(proxy_stat cut)"

log "the bucket full: retried, drained once there is room"
proxy "full?method=PUT"
put f 2
wait_for 20 proxy_least full 1 || fail "no full answer"
# (a 507 may also reach curl as a reset, the proxy closing the
# connection while the body goes: a later try reads the answer)
full_seen() { [[ $(remote_get last_error) =~ 507|StorageFull ]]; }
wait_for 20 full_seen ||
	assert_match "last_error when full" "507|StorageFull" \
		"$(remote_get last_error)"
proxy pass
drained "full"

log "the server killed during a drain, then restarted"
put g 12
ctl_report "drain remote 150" >"$TMP/drain.out" 2>&1 &
drainer=$!
sleep 0.3
s3_kill || fail "s3_kill"
sleep 2
s3_restart || fail "s3_restart"
wait "$drainer" || fail "drain across the restart: $(cat "$TMP/drain.out")"
drained "restart"

log "kill -9 of the daemon with uploads in flight"
proxy "stall?method=PUT"
put h 4
T sync "$MNT/main/h"
wait_for 20 bash -c "(( \$(python3 -c 'import json, sys
print(json.load(open(sys.argv[1]))[\"remote\"][\"in_flight\"])' \
	'$MNT/.tally/status') > 0 ))" || fail "no upload in flight"
kill9_fs
proxy pass
mount_fs "$STORE" "$MNT" "${REMOTE[@]}"
drained "resumed after kill -9"

log "GC with a listing that fails collects nothing from the bucket"
printf 'stray\n' >"$TMP/stray"
stray=fedcba9876543210fedcba9876543210
T "${S3CLI[@]}" put "$S3_BUCKET" "$PFX/objects/fe/$stray" "$TMP/stray"
proxy "status/500?method=LIST"
rep=$(ctl_report "gc grace=0") || fail "gc: $rep"
assert_eq "gc, listing refused" failed "$(report_get remote_listing "$rep")"
assert_eq "gc, listing refused: queued" 0 "$(report_get remote_queued "$rep")"
proxy pass
rep=$(ctl_report "gc grace=0") || fail "gc: $rep"
assert_eq "gc, listing whole" whole "$(report_get remote_listing "$rep")"
assert_eq "gc, listing whole: the stray key queued" 1 \
	"$(report_get remote_queued "$rep")"
T "${S3CLI[@]}" rm "$S3_BUCKET" "$PFX/objects/fe/$stray"

log "everything reads back, every key holds its bytes"
for f in a b c d e f g h; do
	assert_same_content "$TMP/$f" "$MNT/main/$f"
done
check_bucket_bytes
umount_fs
fsck_store "$STORE"
assert_eq "tallyfsck ($FSCK_OUT)" clean "$(fsck_value status)"
