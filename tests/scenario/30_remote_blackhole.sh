#!/bin/bash
# SPDX-License-Identifier: MIT
# A bucket whose server accepts connections and never answers (a
# blackhole: the fault proxy holds every request) when a store bound to
# it is mounted (issue 28, finding 12):
#  - the mount does not wait for it more than a few seconds (the bucket
#    check's requests are bounded, 5 s), mounts, and says in the log
#    which bucket cannot be reached; the status says unreachable;
#  - writes go on and their uploads wait, queued;
#  - once the server answers again, the storage loop's own check passes
#    and drain remote ships everything; tallyfsck with the bucket is clean.
SCN_TIMEOUT=300
source "$(dirname "$0")/lib.sh"
source "$TALLY_SRC/tests/s3/lib.sh"
source "$(dirname "$0")/remote_lib.sh"

s3_start tally-blackhole || fail "cannot start the S3 server"
PFX=blackhole
proxy_start
REMOTE=(-o "remote=s3://$S3_BUCKET/$PFX,remote_endpoint=http://127.0.0.1:$PPORT")

log "bound to the bucket, then unmounted"
mount_fs "$STORE" "$MNT" "${REMOTE[@]}"
mkdir "$MNT/main"
rand_file "$TMP/a" $((MIB + 1000))
T cp "$TMP/a" "$MNT/main/a"
rep=$(ctl_report "drain remote 60") || fail "drain remote failed: $rep"
umount_fs

log "the server holds every request: the mount waits 5 s at most"
proxy hold >/dev/null
start=$(date +%s%N)
# (in the foreground: the time until the kernel lists the mount; before,
# the mount waited 30 s, and mount_fs fails after 10)
mount_fs "$STORE" "$MNT" "${REMOTE[@]}"
ms=$((($(date +%s%N) - start) / 1000000))
log "mounted in $ms ms"
((ms < 10000)) || fail "the mount took $ms ms with the server silent"
grep -q "remote 's3://$S3_BUCKET/$PFX' at 'http://127.0.0.1:$PPORT' cannot be reached" \
	"$DLOG" || fail "the log does not name the unreachable bucket"
assert_eq "reachable" False "$(remote_get reachable)"
rand_file "$TMP/b" $((MIB + 2000))
T cp "$TMP/b" "$MNT/main/b"
assert_same_content "$TMP/b" "$MNT/main/b"
# the storage loop counts the queue between its checks of the bucket
queued_least() { (($(remote_get queued) >= $1)); }
wait_for 30 queued_least 2 || fail "b's uploads are not queued"

log "the server answers again: the loop's check passes, uploads go"
proxy pass >/dev/null
rep=$(ctl_report "drain remote 60") || fail "drain remote failed: $rep"
assert_eq "queued after the drain" 0 "$(report_get queued "$rep")"
assert_eq "reachable" True "$(remote_get reachable)"
assert_eq "bucket keys" "$(status_get objects)" "$(bucket_count)"
umount_fs
fsck_store --remote-endpoint="$S3_ENDPOINT" "$STORE"
assert_eq "tallyfsck ($FSCK_OUT)" 0 "$FSCK_RC"
