#!/bin/bash
# SPDX-License-Identifier: MIT
# A restore of an older snapshot on the original's own prefix (issue 45,
# item 6). The restore fences the original (29_restore_fork), and it
# must not destroy what the original wrote after that snapshot: its
# newer kept snapshot names those keys, and its fenced mount still reads
# them from the bucket (their local copies evicted).
#  - the restore reports the keys it keeps for the original (`kept`);
#  - the restored store writes, runs bucket GC at grace 0 and drains
#    three times with remote_delete_delay=0 and snapshot_keep=1 (which
#    pushes the original's newer snapshot out): every kept key stays,
#    and the original reads its newer files whole;
#  - tallyfsck of the restored store with the bucket: clean (kept keys
#    are named, not orphans);
#  - once the original's newer snapshot is gone and the kept time has
#    passed (set by hand here: 7 days otherwise), GC collects them.
# Before: the restored store's GC deleted them, and the original read 5
# of 19 files as EIO.
SCN_TIMEOUT=300
source "$(dirname "$0")/lib.sh"
source "$TALLY_SRC/tests/s3/lib.sh"
source "$(dirname "$0")/remote_lib.sh"

s3_start tally-same || fail "cannot start the S3 server"
PFX=same
REMOTE=(-o "remote=s3://$S3_BUCKET/$PFX,remote_endpoint=$S3_ENDPOINT")
evicted_at_least() { (($(remote_get evicted) >= $1)); }

mount_fs "$STORE" "$MNT" "${REMOTE[@]}" -o snapshot_interval=0 \
	-o snapshot_keep=5,remote_delete_delay=0,cache_size=1M,upload_delay=0
mkdir -p "$MNT/main"
for i in 1 2; do
	rand_file "$TMP/f$i" $((300 * 1024 + i))
	T cp "$TMP/f$i" "$MNT/main/f$i"
done
rep=$(ctl_report "drain remote 120") || fail "drain remote: $rep"
s1=$(report_get snapshot "$rep")
log "the older snapshot: $s1"
# written after it, in a newer snapshot, their copies evicted
for i in 3 4; do
	rand_file "$TMP/f$i" $((MIB + i))
	T cp "$TMP/f$i" "$MNT/main/f$i"
done
rep=$(ctl_report "drain remote 120") || fail "drain remote: $rep"
s2=$(report_get snapshot "$rep")
[[ $s2 != "$s1" ]] || fail "no newer snapshot"
mapfile -t newer < <(for i in 3 4; do objects "$MNT/main/f$i"; done)
((${#newer[@]} == 4)) || fail "objects of f3 and f4: ${newer[*]}"
wait_for 30 evicted_at_least 2 || fail "no copy evicted: $(remote_get evicted)"

log "the older snapshot restored on the same prefix"
RRC=0
ROUT=$(T "$TALLYFS" --restore "${REMOTE[@]}" -o "snapshot=${s1##*/}" \
	"$TMP/r1" 2>&1) || RRC=$?
assert_eq "restore of $s1 ($ROUT)" 0 "$RRC"
kept=$(sed -n 's/^kept: //p' <<<"$ROUT" | tail -n 1)
((kept >= 4)) || fail "the restore kept $kept key(s) for the original: $ROUT"
wait_for 30 fenced || fail "the original was not fenced: $(remote_get last_error)"

log "the restored store writes, collects and drains"
M2=$TMP/m2
mkdir "$M2"
# snapshot_keep=1: what GC queues goes once the next snapshot is the
# oldest kept, and the original's newer snapshot is pushed out too;
# its keys stay all the same (7 days)
mount_fs "$TMP/r1" "$M2" "${REMOTE[@]}" \
	-o snapshot_keep=1,remote_delete_delay=0
T cmp "$TMP/f1" "$M2/main/f1" || fail "f1 of the restored store"
rand_file "$TMP/g" $((200 * 1024))
T cp "$TMP/g" "$M2/main/g"
rep=$(ctl_report "gc grace=0" "$M2") || fail "gc: $rep"
for n in 1 2 3; do
	echo "$n" >"$M2/main/g$n"
	ctl_report "drain remote 60" "$M2" >/dev/null || fail "drain remote $n"
done
sleep 6 # deletions are looked at every 5 s (delay 0)
for o in "${newer[@]}"; do
	bucket_has "$o" || fail "the restored store deleted the original's $o"
done
for i in 1 2 3 4; do
	T cmp "$TMP/f$i" "$MNT/main/f$i" || fail "the original reads f$i otherwise"
done
umount_fs "$M2"
fsck_store --remote-endpoint="$S3_ENDPOINT" "$TMP/r1"
assert_eq "tallyfsck of the restored store ($FSCK_OUT)" clean \
	"$(fsck_value status)"
umount_fs

log "the original's snapshots gone and the time passed: GC collects them"
T python3 - "$TMP/r1/meta.db" <<-'EOF' || fail "cannot age the kept keys"
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
db.execute("UPDATE remote_conf SET value = '0' WHERE key = 'kept_until'")
db.commit()
db.close()
EOF
mount_fs "$TMP/r1" "$M2" "${REMOTE[@]}" \
	-o snapshot_keep=1,remote_delete_delay=0
snap_list | grep -qxF "$s2" && fail "snapshot_keep=1 kept $s2: $(snap_list)"
rep=$(ctl_report "gc grace=0" "$M2") || fail "gc: $rep"
((${#newer[@]} <= $(report_get remote_queued "$rep"))) ||
	fail "gc queued fewer than the released keys: $rep"
gone() {
	local o
	for o in "${newer[@]}"; do bucket_lacks "$o" || return 1; done
}
# queued after the newest snapshot: they go once a newer one is the
# oldest kept (snapshot_keep=1)
for ((n = 0; n < 10; n++)); do
	gone && break
	echo "$n" >"$M2/main/h"
	ctl_report "drain remote 60" "$M2" >/dev/null || fail "drain remote"
	sleep 2
done
gone || fail "the released keys stay: $(bucket_keys)"
umount_fs "$M2"
log "ok"
