#!/bin/bash
# SPDX-License-Identifier: MIT
# A store bound with a key in envelope 2 (the seal record before issue
# 45's item 7), made by that format: fixtures/envelope2 (its make.sh
# says how), the local store and its bucket as the previous build left
# them, with its key file (the bytes 0 to 31) and its files' sums.
#  - it mounts with its key, its files read back, and it stays envelope
#    2 (a mount does not change it: a shared store's nodes that run an
#    older build could not read envelope 3), saying how to change it;
#  - a rekey to its own key makes it envelope 3: the key's id salted
#    (not the id envelope 2 named), a salt and a mac, in the record and
#    in the marker; `changed: no`;
#  - it mounts again; tallyfsck with the key says it opens it, under
#    that salted id; another key file does not;
#  - a restore from the bucket alone (no local copy: every file is read
#    from bodies sealed by the previous format) is byte-exact;
#  - a rekey of it to another key; the old key is refused after.
SCN_TIMEOUT=300
source "$(dirname "$0")/lib.sh"
source "$TALLY_SRC/tests/s3/lib.sh"
source "$(dirname "$0")/remote_lib.sh"

FX=$TALLY_SRC/tests/scenario/fixtures/envelope2
CTL=$TALLY_BUILD/tools/tallyctl
OLD_ID=f7e9a31e39b86620 # the key's id in envelope 2 (unsalted)

s3_start tally-env2 || fail "cannot start the S3 server"
PFX=env2fx
REMOTE=(-o "remote=s3://$S3_BUCKET/$PFX,remote_endpoint=$S3_ENDPOINT")

log "the fixture: a store and its bucket made by envelope 2"
T tar xzf "$FX/store.tar.gz" -C "$TMP" || fail "cannot unpack the store"
(cd "$FX/bucket" && find . -type f -printf '%P\n') | while read -r k; do
	T "${S3CLI[@]}" put "$S3_BUCKET" "$k" "$FX/bucket/$k" >/dev/null ||
		fail "cannot put $k"
done
T python3 -c "import sys; sys.stdout.buffer.write(bytes(range(32)))" \
	>"$TMP/k"
chmod 600 "$TMP/k"
key k2
grep -q "^envelope 2$" <(T "${S3CLI[@]}" get "$S3_BUCKET" "$PFX/tallyfs-store" \
	/dev/stdout) || fail "the fixture's marker is not envelope 2"
# marker: the bucket's marker
marker() {
	T "${S3CLI[@]}" get "$S3_BUCKET" "$PFX/tallyfs-store" "$TMP/marker"
	cat "$TMP/marker"
}
# sums MNT: the fixture's files read back there
sums() {
	(cd "$1/main" && T sha256sum -c --quiet "$FX/sums") ||
		fail "the files differ in $1"
}

log "a mount with its key reads it; the record stays envelope 2"
mount_fs "$STORE" "$MNT" "${REMOTE[@]}" -o "key_file=$TMP/k"
sums "$MNT"
grep -q "seal record is envelope 2: 'tallyctl MOUNTPOINT rekey" "$DLOG" ||
	fail "the mount did not say how to upgrade: $(tail "$DLOG")"
assert_eq "the key's id, unsalted" "$OLD_ID" "$(remote_get key_id)"
grep -q "^envelope 2$" <(marker) || fail "the mount changed the marker"

log "a rekey to its own key makes it envelope 3"
out=$(T "$CTL" "$MNT" rekey "$TMP/k" 2>&1) || fail "rekey: $out"
kid=$(sed -n 's/^key_id: *//p' <<<"$out")
[[ $kid =~ ^[0-9a-f]{16}$ ]] || fail "no key id: $out"
assert_ne "the key's id is salted" "$OLD_ID" "$kid"
assert_eq "the report: the id it had" "$OLD_ID" \
	"$(sed -n 's/^previous_key_id: *//p' <<<"$out")"
assert_eq "the report: the same key" no "$(sed -n 's/^changed: *//p' <<<"$out")"
assert_eq "the status names the salted id" "$kid" "$(remote_get key_id)"
grep -q "seal record is envelope 3 now: its key, $OLD_ID in envelope 2" \
	"$DLOG" || fail "the rekey did not say so: $(tail "$DLOG")"
m=$(marker)
grep -q "^envelope 3$" <<<"$m" || fail "the marker is not envelope 3: $m"
assert_match "the marker names the salted id" "key_id $kid" "$m"
grep -Eq "^salt [0-9a-f]{32}$" <<<"$m" || fail "the marker has no salt: $m"
grep -Eq "^mac [0-9a-f]{64}$" <<<"$m" || fail "the marker has no mac: $m"
[[ $(grep -c "^keyring " <<<"$m") == 1 ]] || fail "not one ring: $m"
grep -q "$OLD_ID" <<<"$m" && fail "the marker names the unsalted id: $m"
sums "$MNT"
umount_fs

log "it mounts again; tallyfsck knows the key by its salted id"
mount_fs "$STORE" "$MNT" "${REMOTE[@]}" -o "key_file=$TMP/k"
sums "$MNT"
assert_eq "the same id after a remount" "$kid" "$(remote_get key_id)"
grep -c "seal record is envelope 2" "$DLOG" | grep -qx 1 ||
	fail "the second mount says envelope 2 still"
umount_fs
fsck_store --remote-endpoint="$S3_ENDPOINT" --key-file="$TMP/k" "$STORE"
assert_eq "tallyfsck ($FSCK_OUT)" clean "$(fsck_value status)"
assert_eq "tallyfsck: the key's id" "$kid" "$(fsck_value key_file_id)"
assert_eq "tallyfsck: the key opens it" yes "$(fsck_value key_file_opens)"
fsck_store --key-file="$TMP/k2" "$STORE"
assert_eq "tallyfsck: k2 does not open it" no \
	"$(fsck_value key_file_opens)"
refused "k2" "encrypted with key $kid" "${REMOTE[@]}" \
	-o "key_file=$TMP/k2" "$STORE" "$MNT"

log "a restore from the bucket alone reads the old bodies"
restore "$TMP/r" -o "key_file=$TMP/k"
assert_eq "restore ($ROUT)" 0 "$RRC"
mount_fs "$TMP/r" "$MNT" "${REMOTE[@]}" -o "key_file=$TMP/k"
sums "$MNT"
assert_eq "the restored store's id of the key" "$kid" "$(remote_get key_id)"

log "a rekey to another key, then the old one is refused"
out=$(T "$CTL" "$MNT" rekey "$TMP/k2" 2>&1) || fail "rekey: $out"
kid2=$(sed -n 's/^key_id: *//p' <<<"$out")
assert_eq "the report names the old key" "$kid" \
	"$(sed -n 's/^previous_key_id: *//p' <<<"$out")"
umount_fs
refused "the old key after the rekey" "encrypted with key $kid2" \
	"${REMOTE[@]}" -o "key_file=$TMP/k" "$TMP/r" "$MNT"
mount_fs "$TMP/r" "$MNT" "${REMOTE[@]}" -o "key_file=$TMP/k2"
sums "$MNT"
umount_fs
log "ok"
