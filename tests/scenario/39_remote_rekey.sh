#!/bin/bash
# SPDX-License-Identifier: MIT
# rekey (core/remote/remote_rekey.c) against a real S3 server (s3rver),
# the bucket read raw by a second client (botocore):
#  - tallyctl MNT rekey NEWKEY on a mounted, encrypted store: the report
#    names both keys; files read and write on; the status, the store's
#    record and the bucket's marker name the new key only; no body is
#    sealed again (the bucket's keys and bytes are the same);
#  - afterwards the old key is refused by a mount, a restore and
#    tallyfsck, with a message naming the key wanted; the new key
#    mounts, restores byte-exact, and tallyfsck with the bucket is clean;
#  - bad input changes nothing: a relative path (EINVAL), a key file
#    open to others, one another user owns, one too short, the key in
#    force (changed: no), a
#    store without a key, a mount without a bucket;
#  - kill -9 after each step (TALLYFS_FAULT=rekey:N:9): until the next
#    mount ends it, both keys open the store where the step says they
#    should (the restore reads the marker, the mount the record); the
#    mount (with either key) ends it; then only the new key opens it,
#    the uploads queued when it died drain, and every key in the bucket
#    opens (verify remote);
#  - a bucket that refuses the marker's PUT (the fault proxy's 503s):
#    the rekey fails saying so, both keys open the store, and the next
#    mount ends it and writes the marker.
SCN_TIMEOUT=420
source "$(dirname "$0")/lib.sh"
source "$TALLY_SRC/tests/s3/lib.sh"
source "$(dirname "$0")/remote_lib.sh"

CTL=$TALLY_BUILD/tools/tallyctl
[[ -x $CTL ]] || fail "no tallyctl at $CTL"
s3_start tally-rekey || fail "cannot start the S3 server"
PFX=rekey1
REMOTE=(-o "remote=s3://$S3_BUCKET/$PFX,remote_endpoint=$S3_ENDPOINT")

for k in k1 k2 k3 k4 k5 k6 k7; do key "$k"; done

# marker: the bucket's marker of $PFX
marker() {
	T "${S3CLI[@]}" get "$S3_BUCKET" "$PFX/tallyfs-store" "$TMP/marker"
	cat "$TMP/marker"
}
# bucket_sums: every key of $PFX/objects/ with the SHA-256 of its body
bucket_sums() {
	local k s

	bucket_keys | sort | while read -r k s; do
		T "${S3CLI[@]}" get "$S3_BUCKET" "$k" "$TMP/body"
		echo "$k $(sha_of "$TMP/body")"
	done
}
# rekey KEY [MNT]: tallyctl rekey; sets OUT and RC
rekey() {
	RC=0
	OUT=$(T "$CTL" "${2:-$MNT}" rekey "$1" 2>&1) || RC=$?
}
# restore_copy KEY [OPTIONS...]: a restore with key file KEY from a copy
# of the bucket's prefix (a restore takes its bucket over) into a new
# store $RSTORE, bound to the copy $RPFX; sets ROUT and RRC
NCOPY=0
restore_copy() {
	local k=$1

	shift
	RPFX=copy$((++NCOPY))
	RSTORE=$TMP/$RPFX
	T python3 - "$S3_BUCKET" "$PFX/" "$RPFX/" <<-'EOF' || fail "copy of $PFX"
	import os, sys
	sys.path.insert(0, os.path.join(os.environ["TALLY_SRC"], "tests/s3"))
	import s3cli
	bucket, src, dst = sys.argv[1:4]
	c = s3cli.client()
	for key, _ in s3cli.keys(c, bucket, src):
	    c.copy_object(Bucket=bucket, Key=dst + key[len(src):],
	                  CopySource={"Bucket": bucket, "Key": key})
	EOF
	RRC=0
	ROUT=$(T "$TALLYFS" --restore \
		-o "remote=s3://$S3_BUCKET/$RPFX,remote_endpoint=$S3_ENDPOINT" \
		-o "key_file=$TMP/$k" "$@" "$RSTORE" 2>&1) || RRC=$?
}
# opens_restore KEY: a restore from the bucket alone opens with KEY (0/1)
opens_restore() {
	restore_copy "$1"
	return "$RRC"
}
# out_get KEY: a value of tallyctl's last report
out_get() { sed -n "s/^$1: *//p" <<<"$OUT" | head -n 1; }
# key_id KEY: the id of key file KEY in $STORE (unmounted), as tallyfsck
# reports it (ids are salted per store)
key_id() {
	fsck_store --key-file="$TMP/$1" "$STORE"
	fsck_value key_file_id
}
# key_opens KEY: whether key file KEY opens $STORE (yes/no), as tallyfsck
# reports it
key_opens() {
	fsck_store --key-file="$TMP/$1" "$STORE"
	fsck_value key_file_opens
}
# other_id KEY: the id of key file KEY in another store bound with it
other_id() {
	local s=$TMP/kid.$1 m=$TMP/kidm id

	mkdir -p "$m"
	mount_fs "$s" "$m" -o "remote=s3://$S3_BUCKET/kid-$1,remote_endpoint=$S3_ENDPOINT" \
		-o "key_file=$TMP/$1"
	id=$(remote_get key_id "$m")
	umount_fs "$m"
	echo "$id"
}

log "a store bound with key k1; rekey to k2 while mounted"
mount_fs "$STORE" "$MNT" "${REMOTE[@]}" -o "key_file=$TMP/k1" \
	-o snapshot_interval=0
umount_fs
kid1=$(key_id k1)
assert_eq "tallyfsck: k1 opens the store" yes "$(key_opens k1)"
kid2=$(key_id k2)
assert_eq "tallyfsck: k2 does not yet" no "$(key_opens k2)"
[[ $kid1 =~ ^[0-9a-f]{16}$ && $kid2 =~ ^[0-9a-f]{16}$ ]] ||
	fail "no key ids: '$kid1' '$kid2'"
# issue 45, item 7: a key file's id is its store's, salted: the same
# key file has another id in another store, and the marker holds a salt
# and a mac that authenticates its lines
assert_ne "k1's id in another store" "$kid1" "$(other_id k1)"
m=$(marker)
grep -q "^envelope 3$" <<<"$m" || fail "the marker is not envelope 3: $m"
grep -Eq "^salt [0-9a-f]{32}$" <<<"$m" || fail "the marker has no salt: $m"
grep -Eq "^mac [0-9a-f]{64}$" <<<"$m" || fail "the marker has no mac: $m"
mount_fs "$STORE" "$MNT" "${REMOTE[@]}" -o "key_file=$TMP/k1" \
	-o snapshot_interval=0
mkdir -p "$MNT/main/docs"
for i in $(seq 1 12); do
	rand_file "$MNT/main/docs/f$i" $((i * 100000 + 7))
done
rep=$(ctl_report "drain remote 120") || fail "drain remote: $rep"
snap1=$(report_get snapshot "$rep")
snap1=${snap1##*/}
[[ $snap1 == snap-* ]] || fail "no snapshot before the rekey: $rep"
assert_eq "bound with k1" "$kid1" "$(remote_get key_id)"
manifest "$MNT" --no-ctl >"$TMP/before.mf" || fail "manifest"
bucket_sums >"$TMP/sums.before"
[[ -s $TMP/sums.before ]] || fail "no object in the bucket"
marker | grep -q "keyring $kid1 " || fail "the marker has no ring of k1"
rekey "$TMP/k2"
assert_eq "rekey to k2 ($OUT)" 0 "$RC"
assert_eq "the report names the new key" "$kid2" "$(out_get key_id)"
assert_eq "the report names the old key" "$kid1" "$(out_get previous_key_id)"
assert_eq "the report says it changed" yes "$(out_get changed)"
assert_eq "status: k2 in force" "$kid2" "$(remote_get key_id)"
m=$(marker)
assert_match "the marker: k2 in force" "key_id $kid2" "$m"
grep -q "keyring $kid2 " <<<"$m" || fail "the marker has no ring of k2"
grep -q "$kid1" <<<"$m" && fail "the marker still names k1: $m"
# files read and write on, sealed with the same keys
manifest "$MNT" --no-ctl >"$TMP/after.mf" || fail "manifest after"
assert_same_manifest "files after the rekey" "$TMP/before.mf" "$TMP/after.mf"
rand_file "$MNT/main/docs/late" $((2 * MIB + 3))
rep=$(ctl_report "drain remote 120") || fail "drain remote 2: $rep"
bucket_sums >"$TMP/sums.after"
# no body was sealed again: every key of before is there, the same bytes
comm -23 "$TMP/sums.before" "$TMP/sums.after" >"$TMP/sums.gone"
[[ -s $TMP/sums.gone ]] && fail "bodies changed by the rekey: $(cat "$TMP/sums.gone")"
manifest "$MNT" --no-ctl >"$TMP/before.mf" || fail "manifest 2"
umount_fs

log "the old key is refused; the new one mounts, restores, checks"
refused "k1 after the rekey" "key_file holds key $kid1.*encrypted with key $kid2" \
	"${REMOTE[@]}" -o "key_file=$TMP/k1" "$STORE" "$MNT"
mount_fs "$STORE" "$MNT" "${REMOTE[@]}" -o "key_file=$TMP/k2"
manifest "$MNT" --no-ctl >"$TMP/after.mf" || fail "manifest with k2"
assert_same_manifest "mounted with k2" "$TMP/before.mf" "$TMP/after.mf"
umount_fs
fsck_store --remote-endpoint="$S3_ENDPOINT" --key-file="$TMP/k1" "$STORE"
assert_eq "tallyfsck with k1" 2 "$FSCK_RC"
assert_match "tallyfsck names k2" "encrypted with key $kid2" "$FSCK_OUT"
fsck_store --remote-endpoint="$S3_ENDPOINT" --key-file="$TMP/k2" "$STORE"
assert_eq "tallyfsck with k2 ($FSCK_OUT)" clean "$(fsck_value status)"
assert_eq "tallyfsck: none missing" 0 "$(fsck_value bucket_missing)"
restore "$TMP/r1" -o "key_file=$TMP/k1"
assert_eq "restore with k1" 1 "$RRC"
assert_match "restore with k1 says which" "encrypted with key $kid2" "$ROUT"
[[ -e $TMP/r1 ]] && fail "a refused restore left its store"
restore "$TMP/r1" -o "key_file=$TMP/k2"
assert_eq "restore with k2 ($ROUT)" 0 "$RRC"
M2=$TMP/m2
mkdir "$M2"
mount_fs "$TMP/r1" "$M2" "${REMOTE[@]}" -o "key_file=$TMP/k2"
manifest "$M2" --no-ctl >"$TMP/after.mf" || fail "manifest of the restore"
assert_same_manifest "restored with k2" "$TMP/before.mf" "$TMP/after.mf"
umount_fs "$M2"
# the restore took the bucket over: the store goes on from r1
STORE=$TMP/r1
# a snapshot from before the rekey names k1's ring: the restored store
# takes the marker's record (k2), and the old key stays out
restore_copy k2 -o "snapshot=$snap1"
assert_eq "restore of the snapshot before the rekey ($ROUT)" 0 "$RRC"
CREM=(-o "remote=s3://$S3_BUCKET/$RPFX,remote_endpoint=$S3_ENDPOINT")
refused "k1 on the old snapshot's restore" "encrypted with key $kid2" \
	"${CREM[@]}" -o "key_file=$TMP/k1" "$RSTORE" "$MNT"
mount_fs "$RSTORE" "$MNT" "${CREM[@]}" -o "key_file=$TMP/k2"
assert_eq "the old snapshot's restore: k2" "$kid2" "$(remote_get key_id)"
T cat "$MNT"/main/docs/f* >/dev/null || fail "files of the old snapshot"
umount_fs

log "bad input changes nothing"
mount_fs "$STORE" "$MNT" "${REMOTE[@]}" -o "key_file=$TMP/k2"
assert_eq "rekey of a relative path" EINVAL "$(ctl_errno "rekey k3")"
assert_eq "rekey without a path" EINVAL "$(ctl_errno "rekey")"
assert_eq "rekey of a key inside the mount" EINVAL \
	"$(ctl_errno "rekey $MNT/main/docs/f1")"
cp "$TMP/k3" "$TMP/k3open"
chmod 0644 "$TMP/k3open"
rekey "$TMP/k3open"
assert_ne "rekey with a key file open to others" 0 "$RC"
assert_match "says it is open to others" "open to group or others" "$OUT"
cp "$TMP/k3" "$TMP/k3other"
chmod 0600 "$TMP/k3other"
chown 65534 "$TMP/k3other"
rekey "$TMP/k3other"
assert_ne "rekey with another user's key file" 0 "$RC"
assert_match "says whose it is" "owned by uid 65534, not by this user" "$OUT"
head -c 16 /dev/urandom >"$TMP/short"
chmod 0600 "$TMP/short"
rekey "$TMP/short"
assert_ne "rekey with a short key file" 0 "$RC"
assert_match "says it is short" "a key is at least 32" "$OUT"
rekey "$TMP/nonexistent"
assert_ne "rekey with no such file" 0 "$RC"
rekey "$TMP/k2"
assert_eq "rekey to the key in force ($OUT)" 0 "$RC"
assert_eq "says nothing changed" no "$(out_get changed)"
assert_eq "still k2" "$kid2" "$(remote_get key_id)"
m=$(marker)
assert_match "the marker still says k2" "key_id $kid2" "$m"
umount_fs
mount_fs "$TMP/plain" "$MNT"
mkdir "$MNT/main"
rekey "$TMP/k3"
assert_ne "rekey without a bucket" 0 "$RC"
assert_match "says there is no remote tier" "no remote tier" "$OUT"
umount_fs
mount_fs "$TMP/zonly" "$MNT" \
	-o "remote=s3://$S3_BUCKET/zonly,remote_endpoint=$S3_ENDPOINT,compress=zstd"
rekey "$TMP/k3"
assert_ne "rekey of a store without a key" 0 "$RC"
assert_match "says its bodies are not encrypted" "not encrypted" "$OUT"
umount_fs

# crash STEP FROM TO: a rekey FROM -> TO killed after STEP
crash() {
	local step=$1 from=$2 to=$3

	export TALLYFS_FAULT="rekey:$step:9"
	mount_fs "$STORE" "$MNT" "${REMOTE[@]}" -o "key_file=$TMP/$from" \
		-o upload_delay=60
	unset TALLYFS_FAULT
	# no "Killed" job notice from bash for the death we ask for
	disown "${DAEMON_PID[$MNT]}"
	# a file committed and queued for upload (held back) when it dies
	rand_file "$MNT/main/docs/c$step" $((MIB + step))
	T sync "$MNT/main/docs/c$step"
	rep=$(ctl_report drain) || fail "drain before the rekey: $rep"
	manifest "$MNT" --no-ctl >"$TMP/before.mf" || fail "manifest"
	(($(remote_get queued) > 0)) || fail "nothing queued for upload"
	rekey "$TMP/$to"
	assert_ne "a rekey killed after step $step" 0 "$RC"
	wait_pid_gone "${DAEMON_PID[$MNT]}" 10 ||
		fail "the daemon survived the rekey's fault"
	grep -q "killed after step $step of a rekey" "$DLOG" ||
		fail "the daemon did not die at step $step"
	unset "DAEMON_PID[$MNT]" "DAEMON_CHILD[$MNT]"
	timeout 10 fusermount3 -u "$MNT" 2>/dev/null ||
		timeout 10 umount -l "$MNT" || fail "cannot remove the dead mount"
}
# ends_with KEY ID: a mount with KEY works, and the store is keyed with
# ID alone then (status, record and marker)
ends_with() {
	mount_fs "$STORE" "$MNT" "${REMOTE[@]}" -o "key_file=$TMP/$1"
	assert_eq "in force after the mount" "$2" "$(remote_get key_id)"
	manifest "$MNT" --no-ctl >"$TMP/after.mf" || fail "manifest"
	assert_same_manifest "files after the cut rekey" "$TMP/before.mf" \
		"$TMP/after.mf"
	# the queue drains, and every key in the bucket opens
	rep=$(ctl_report "drain remote 120") || fail "drain remote: $rep"
	assert_eq "drained" 0 "$(report_get queued "$rep")"
	rep=$(ctl_report "verify remote") || fail "verify remote: $rep"
	assert_eq "verify remote: corrupt" 0 "$(report_get corrupt "$rep")"
	assert_eq "verify remote: missing" 0 "$(report_get missing "$rep")"
	assert_eq "verify remote: every key opens" \
		"$(report_get checked "$rep")" "$(report_get ok "$rep")"
	umount_fs
	m=$(marker)
	assert_match "the marker: $2 in force" "key_id $2" "$m"
	[[ $(grep -o "keyring " <<<"$m" | wc -l) == 1 ]] ||
		fail "the marker keeps another ring: $m"
}

log "kill -9 after step 1 (the record has both rings; the marker not)"
kid3=$(key_id k3)
crash 1 k2 k3
opens_restore k2 || fail "the restore opens with k2 (the marker's)"
opens_restore k3 && fail "the restore opened with k3 before the marker"
ends_with k3 "$kid3" # the new key mounts, and ends it
refused "k2 after the end" "encrypted with key $kid3" \
	"${REMOTE[@]}" -o "key_file=$TMP/k2" "$STORE" "$MNT"
opens_restore k3 || fail "the restore opens with k3 after the end"

log "kill -9 after step 2 (both rings in the record and the marker)"
kid4=$(key_id k4)
crash 2 k3 k4
opens_restore k3 || fail "the restore opens with k3 (both rings)"
opens_restore k4 || fail "the restore opens with k4 (both rings)"
# the old key mounts too, and retires nothing (a rekey whose caller was
# told it failed may have been committed: issue 45, item 5); both keys
# open the store until a mount with the new one ends it
mount_fs "$STORE" "$MNT" "${REMOTE[@]}" -o "key_file=$TMP/k3"
assert_eq "in force after a mount with the old key" "$kid4" \
	"$(remote_get key_id)"
umount_fs
grep -q "did not end: this mount was given key" "$DLOG" ||
	fail "the mount with the old key did not say the rekey goes on"
ends_with k4 "$kid4" # the new key mounts, and ends it
refused "k3 after the end" "encrypted with key $kid4" \
	"${REMOTE[@]}" -o "key_file=$TMP/k3" "$STORE" "$MNT"
opens_restore k3 && fail "the restore opened with k3 after the end"

log "kill -9 after step 3 (the rekey ended; the marker behind)"
kid5=$(key_id k5)
crash 3 k4 k5
refused "k4 after step 3" "encrypted with key $kid5" \
	"${REMOTE[@]}" -o "key_file=$TMP/k4" "$STORE" "$MNT"
ends_with k5 "$kid5"
opens_restore k4 && fail "the restore opened with k4 after the end"
opens_restore k5 || fail "the restore opens with k5"

log "the bucket refuses the marker: the rekey says so, a mount ends it"
kid6=$(key_id k6)
proxy_start
mount_fs "$STORE" "$MNT" \
	-o "remote=s3://$S3_BUCKET/$PFX,remote_endpoint=http://127.0.0.1:$PPORT" \
	-o "key_file=$TMP/k5,remote_retry_max=1"
proxy "status/503/SlowDown?n=1000&method=PUT"
rekey "$TMP/k6"
assert_ne "a rekey whose marker cannot be written" 0 "$RC"
assert_match "says the marker could not be written" \
	"marker could not be written" "$OUT"
assert_eq "the record names k6 in force" "$kid6" "$(remote_get key_id)"
m=$(marker)
assert_match "the marker still says k5" "key_id $kid5" "$m"
proxy pass
# the mount's loop writes the marker once the bucket takes it: both
# rings, k6 in force
wait_for 30 bash -c "python3 '$TALLY_SRC/tests/s3/s3cli.py' get '$S3_BUCKET' \
	'$PFX/tallyfs-store' '$TMP/marker2' && grep -q 'key_id $kid6' '$TMP/marker2'" ||
	fail "the loop did not write the marker"
m=$(marker)
grep -q "keyring $kid5 " <<<"$m" || fail "the marker lost k5's ring early"
grep -q "keyring $kid6 " <<<"$m" || fail "the marker has no ring of k6"
umount_fs
ends_with k6 "$kid6"
fsck_store --remote-endpoint="$S3_ENDPOINT" --key-file="$TMP/k6" "$STORE"
assert_eq "tallyfsck with k6 ($FSCK_OUT)" clean "$(fsck_value status)"

# issue 45, item 5: the answer to the commit of step 1 is lost (it
# committed; the rekey was told EIO). The record is read back: the rekey
# goes on and reports success, never 'cannot write' for a record that
# was written
log "the answer to a rekey's commit is lost: read back, reported done"
kid7=$(key_id k7)
export TALLYFS_FAULT="rekeylost:1"
mount_fs "$STORE" "$MNT" "${REMOTE[@]}" -o "key_file=$TMP/k6"
unset TALLYFS_FAULT
rekey "$TMP/k7"
assert_eq "a rekey whose commit's answer was lost ($OUT)" 0 "$RC"
grep -q "the commit's answer was lost" "$DLOG" ||
	fail "the fault did not fire: $(tail -5 "$DLOG")"
assert_eq "in force after it" "$kid7" "$(remote_get key_id)"
umount_fs
refused "k6 after a rekey reported done" "encrypted with key $kid7" \
	"${REMOTE[@]}" -o "key_file=$TMP/k6" "$STORE" "$MNT"
ends_with k7 "$kid7"
log "ok"
