#!/bin/bash
# SPDX-License-Identifier: MIT
# The deletion claims of a shared store (PostgreSQL, tests/pg/lib.sh, and
# s3rver behind the fault proxy, tests/s3/faultproxy.py): a key's
# deletion is claimed before its DELETE goes, and the upload of the same
# content written again waits for the claim to end. A claim must end
# however its deletion ends:
#  - the DELETE fails (500): the content written again is uploaded and
#    drain remote completes;
#  - the node is killed (kill -9) with its DELETE in flight (held by the
#    proxy, then dropped): tallyfsck says so (claims_stale), and the next
#    mount takes the claim over, uploads the content written again and
#    drains;
#  - the same content written on node B while A's DELETE is in flight:
#    B's row is of a new generation, so its key is not the one A
#    deletes, and B's upload waits for nothing (drain remote on B
#    completes while A's DELETE is unanswered); B killed, A's DELETE
#    answered, the object reads back on B's next mount, and the bucket
#    keeps B's key alone.
#  - the bucket unreachable: a close fails with EIO within a remote
#    timeout and drops what it could not commit (the file reads as
#    committed: empty); written again once the bucket answers, it goes.
# At the end the bucket holds every object the store names.
SCN_TIMEOUT=300
source "$(dirname "$0")/lib.sh"
source "$TALLY_SRC/tests/s3/lib.sh"
source "$TALLY_SRC/tests/pg/lib.sh"
source "$(dirname "$0")/remote_lib.sh"

shared_start_proxied tally-claims claims

# nodes (remote_lib.sh): drain remote completes within 20 s
NODE_DRAIN_WAIT=20
# fsck_of NODE: tallyfsck of NODE's cache once no session lives (a
# killed node's expires after 5 heartbeats); its exit status in FSCK_RC
fsck_of() {
	local i

	for ((i = 0; i < 30; i++)); do
		FSCK_RC=0
		FSCK_OUT=$(T "$TALLYFSCK" -o "$FSCK_OPTS" "$TMP/cache_$1" 2>&1) ||
			FSCK_RC=$?
		((FSCK_RC != 2)) || [[ $FSCK_OUT != *"live session"* ]] && return 0
		sleep 0.5
	done
	fail "tallyfsck of $1: $FSCK_OUT"
}

mount_node a
mkdir "$(mnt a)/ns"

log "a failed DELETE, then the same content again: uploaded, drained"
rand_file "$TMP/c1" $((MIB / 2 + 11))
T cp "$TMP/c1" "$(mnt a)/ns/x"
drained a "first upload"
k1=$(objects "$(mnt a)/ns/x")
bucket_has "$k1" || fail "the bucket lacks $k1"
proxy "status/500?method=DELETE" >/dev/null
rm "$(mnt a)/ns/x"
wait_for 30 proxy_least status 1 || fail "no DELETE was tried"
T cp "$TMP/c1" "$(mnt a)/ns/x2"
drained a "after a failed DELETE"
proxy pass >/dev/null
bucket_has "$k1" || fail "the content written again is not in the bucket"
# the content written again has a key of its own (a new generation); the
# old key's failed DELETE is tried again, and goes
keys_of() { bucket_keys | awk '{ print $1 }' | grep -cE "/$1(\.g[0-9]+)?\$"; }
one_key() { [[ $(keys_of "$k1") == 1 ]]; }
wait_for 30 one_key || fail "the old key stays: $(keys_of "$k1") keys of $k1"

log "kill -9 with a DELETE in flight: the claim is taken over"
rand_file "$TMP/c2" $((MIB / 2 + 22))
T cp "$TMP/c2" "$(mnt a)/ns/y"
drained a "second upload"
k2=$(objects "$(mnt a)/ns/y")
proxy "stall?method=DELETE" >/dev/null
rm "$(mnt a)/ns/y"
wait_for 30 proxy_least stall 1 || fail "no DELETE was held"
kill9_fs "$(mnt a)"
# released: its client is gone, so the proxy drops it (never late)
proxy pass >/dev/null
fsck_of a
assert_match "tallyfsck names the claim left under way" \
	$'claims_stale: 1\n' "$FSCK_OUT"
assert_eq "tallyfsck exit status with a stale claim" 1 "$FSCK_RC"
mount_node a
T cp "$TMP/c2" "$(mnt a)/ns/y2"
drained a "after kill -9 with a DELETE in flight"
bucket_has "$k2" || fail "the content written again is not in the bucket"
grep -q 'took over 1 deletion claim' "$DLOG" ||
	fail "no claim was taken over: $(grep claim "$DLOG" | tail -3)"

log "the same content on another node while a DELETE is in flight"
rand_file "$TMP/c3" $((MIB / 2 + 33))
T cp "$TMP/c3" "$(mnt a)/ns/z"
drained a "third upload"
k3=$(objects "$(mnt a)/ns/z")
key_a=$(bucket_key "$k3")
mount_node b
held=$(proxy_stat stall)
proxy "stall?method=DELETE" >/dev/null
rm "$(mnt a)/ns/z"
wait_for 30 proxy_least stall $((held + 1)) || fail "no DELETE was held"
T cp "$TMP/c3" "$(mnt b)/ns/z2"
drained b "the same content while a's DELETE is held"
# (the proxy's stall forwards a DELETE whole and holds its answer: a's
# key may be gone already, and a's claim stands till the answer comes)
key_b=$(bucket_key "$k3")
[[ -n $key_b && $key_b != "$key_a" ]] ||
	fail "b's key of $k3 is [$key_b], a deletes $key_a"
kill9_fs "$(mnt b)"
# the DELETE's answer reaches a now
proxy pass >/dev/null
key_only() { [[ $(keys_of "$k3") == 1 && $(bucket_key "$k3") == "$key_b" ]]; }
wait_for 30 key_only || fail "keys of $k3 after the late DELETE:" \
	"$(bucket_keys | grep "$k3")"
umount_fs "$(mnt a)"
fsck_of a
assert_match "tallyfsck: nothing missing" $'bucket_missing: 0\n' "$FSCK_OUT"
assert_match "tallyfsck: nothing dangling" $'dangling: 0\n' "$FSCK_OUT"
mount_node b
T cmp "$TMP/c3" "$(mnt b)/ns/z2" || fail "b reads z2 wrong"
umount_fs "$(mnt b)"
mount_node a

log "the bucket unreachable: a close fails with EIO within a remote timeout"
mkdir "$TMP/mnt_c"
mount_fs "$TMP/cache_c" "$TMP/mnt_c" -o "$SHARED" \
	-o heartbeat=1,remote_timeout=3,remote_retry_max=1
proxy "stall?method=PUT" >/dev/null
rand_file "$TMP/c4" $((MIB / 2 + 44))
res=$(T python3 - "$TMP/mnt_c/ns/w" "$TMP/c4" <<-'EOF'
	import errno, os, sys, time
	t0 = time.monotonic()
	fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT, 0o644)
	os.write(fd, open(sys.argv[2], "rb").read())
	try:
	    os.close(fd)
	    res = "OK"
	except OSError as e:
	    res = errno.errorcode.get(e.errno, str(e.errno))
	print(res, int(time.monotonic() - t0))
	EOF
)
proxy pass >/dev/null
log "close with the bucket unreachable: $res (seconds)"
assert_eq "close with the bucket unreachable" EIO "${res% *}"
((${res#* } <= 10)) || fail "the close took ${res#* } s (remote_timeout 3)"
grep -q "remote: upload of" "$DLOG" || fail "the reason is not in the log"
# the close reported it, and dropped it: the file is as committed (its
# create), and a drain sends nothing of it later
# (at the release after the close, which the kernel sends on its own)
wait_for 10 grep -q "data of inode .* dropped at its last close" "$DLOG" ||
	fail "the close did not drop what it reported"
ctl drain "$TMP/mnt_c" >/dev/null || fail "drain on c failed"
assert_eq "size of w after the failed close" 0 \
	"$(stat -c %s "$TMP/mnt_c/ns/w")"
assert_eq "size of w on a" 0 "$(stat -c %s "$(mnt a)/ns/w")"
# written again with the bucket answering: it goes
T cp "$TMP/c4" "$TMP/mnt_c/ns/w"
T cmp "$TMP/c4" "$(mnt a)/ns/w" || fail "a reads w wrong"
umount_fs "$TMP/mnt_c"
umount_fs "$(mnt a)"

fsck_of a
assert_match "nothing missing from the bucket" $'bucket_missing: 0\n' \
	"$FSCK_OUT"
assert_match "no claim left" $'claims_stale: 0\n' "$FSCK_OUT"
assert_eq "tallyfsck at the end: $FSCK_OUT" 0 "$FSCK_RC"
log "ok"
