#!/bin/bash
# SPDX-License-Identifier: MIT
# A rekey under power loss: the store lives on plfs (tests/powerloss/
# plfs.c keeps every unsynced write in memory and drops it on
# "powerloss"), its bucket on s3rver, and the power goes (the daemon
# killed with SIGKILL, then plfs told to drop what was not synced):
#  1. right after `rekey` reported success: the new key opens the store,
#     the old one is refused (the rekey synced its end before it
#     answered);
#  2. after step 1 of a rekey (TALLYFS_FAULT=rekey:1:9, the power gone
#     with the daemon): the record with both rings was synced, so the
#     new key opens the store (and its mount ends the rekey), the old
#     one no more.
# After each, the files read back whole and tallyfsck is clean.
SCN_TIMEOUT=${SCN_TIMEOUT:-300}
source "$(dirname "$0")/../scenario/lib.sh"
source "$TALLY_SRC/tests/s3/lib.sh"
source "$TALLY_SRC/tests/scenario/remote_lib.sh"
source "$(dirname "$0")/pl_lib.sh"

plfs_start
CTL=$TALLY_BUILD/tools/tallyctl
[[ -x $CTL ]] || fail "no tallyctl at $CTL"

s3_start tally-plrekey || fail "cannot start the S3 server"
PFX=plrekey
REMOTE=(-o "remote=s3://$S3_BUCKET/$PFX,remote_endpoint=$S3_ENDPOINT")
for k in k1 k2 k3; do key "$k"; done

# opens KEY: a mount with key file KEY, the files whole; then unmounted
opens() {
	mount_fs "$STORE" "$MNT" "${REMOTE[@]}" -o "key_file=$TMP/$1"
	manifest "$MNT" --no-ctl >"$TMP/after.mf" || fail "manifest"
	assert_same_manifest "files with $1" "$TMP/before.mf" "$TMP/after.mf"
	KID=$(remote_get key_id)
	umount_fs
}

mount_fs "$STORE" "$MNT" "${REMOTE[@]}" -o "key_file=$TMP/k1"
mkdir "$MNT/main"
for i in 1 2 3; do rand_file "$MNT/main/f$i" $((MIB + i)); done
drain
manifest "$MNT" --no-ctl >"$TMP/before.mf" || fail "manifest"

log "1: power loss right after a rekey answered"
rep=$(T "$CTL" "$MNT" rekey "$TMP/k2") || fail "rekey to k2: $rep"
kid2=$(sed -n 's/^key_id: *//p' <<<"$rep")
[[ $kid2 =~ ^[0-9a-f]{16}$ ]] || fail "no key id in the report: $rep"
power_loss
refused "k1 after the loss" "encrypted with key $kid2" \
	"${REMOTE[@]}" -o "key_file=$TMP/k1" "$STORE" "$MNT"
opens k2
assert_eq "k2 in force after the loss" "$kid2" "$KID"

log "2: power loss after step 1 of a rekey"
export TALLYFS_FAULT="rekey:1:9"
mount_fs "$STORE" "$MNT" "${REMOTE[@]}" -o "key_file=$TMP/k2"
unset TALLYFS_FAULT
disown "${DAEMON_PID[$MNT]}"
RC=0
T "$CTL" "$MNT" rekey "$TMP/k3" >/dev/null 2>&1 || RC=$?
((RC != 0)) || fail "the rekey killed after step 1 answered"
wait_pid_gone "${DAEMON_PID[$MNT]}" 10 || fail "the daemon survived"
grep -q "killed after step 1 of a rekey" "$DLOG" ||
	fail "the daemon did not die at step 1"
unset "DAEMON_PID[$MNT]" "DAEMON_CHILD[$MNT]"
timeout 10 fusermount3 -u "$MNT" 2>/dev/null ||
	timeout 10 umount -l "$MNT" || fail "cannot remove the dead mount"
echo powerloss >"$PL/.plfs_ctl" || fail "plfs refused powerloss"
opens k3 # the record with both rings was synced: k3 in force; ended
kid3=$KID
[[ $kid3 != "$kid2" ]] || fail "k3 not in force after the loss"
refused "k2 after the end" "encrypted with key $kid3" \
	"${REMOTE[@]}" -o "key_file=$TMP/k2" "$STORE" "$MNT"
fsck_store --key-file="$TMP/k3" "$STORE"
assert_eq "tallyfsck ($FSCK_OUT)" clean "$(fsck_value status)"
log "ok"
