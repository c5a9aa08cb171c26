#!/bin/bash
# SPDX-License-Identifier: MIT
# A restore beside the store it came from (issue 28, finding 6): the
# restored store has an identity of its own and takes the bucket over.
#  - the original, still mounted, finds the marker names another store
#    and stops uploading, deleting and snapshotting there, and says so;
#  - so its rm and its snapshots cannot push out the snapshot the
#    restore came from and delete the keys the restored store reads;
#  - the restored store reads everything, tallyfsck finds nothing missing
#    from the bucket, and its snapshots sort after the original's.
# Before: the original's next snapshot pushed the restored one's out and
# its deletions removed objects the restored store named, and the
# restored store's snapshots sorted below the original's.
SCN_TIMEOUT=300
source "$(dirname "$0")/lib.sh"
source "$TALLY_SRC/tests/s3/lib.sh"
source "$(dirname "$0")/remote_lib.sh"

s3_start tally-fork || fail "cannot start the S3 server"
PFX=f1
REMOTE=(-o "remote=s3://$S3_BUCKET/$PFX,remote_endpoint=$S3_ENDPOINT")

mount_fs "$STORE" "$MNT" "${REMOTE[@]}" -o snapshot_interval=0 \
	-o snapshot_keep=1,remote_delete_delay=0,remote_drain_timeout=5
mkdir -p "$MNT/main"
for i in 1 2; do
	rand_file "$TMP/f$i" $((300 * 1024 + i))
	T cp "$TMP/f$i" "$MNT/main/f$i"
done
rep=$(ctl_report "drain remote 120") || fail "drain remote: $rep"
s1=$(report_get snapshot "$rep")
mapfile -t f1objs < <(objects "$MNT/main/f1")

log "a drill: restored from a copy of the prefix, mounted on the copy"
marker() { T "${S3CLI[@]}" get "$S3_BUCKET" "$PFX/tallyfs-store" "$TMP/marker" &&
	cat "$TMP/marker"; }
m0=$(marker) || fail "no marker"
T "${S3CLI[@]}" cp "$S3_BUCKET" "$PFX/" drill/ || fail "copying the prefix"
DRILL=(-o "remote=s3://$S3_BUCKET/drill,remote_endpoint=$S3_ENDPOINT")
RRC=0
ROUT=$(T "$TALLYFS" --restore "${DRILL[@]}" "$TMP/d1" 2>&1) || RRC=$?
assert_eq "restore from the copy ($ROUT)" 0 "$RRC"
# bound to the copy it came from (before: to the snapshot's prefix, and
# the mount on the copy was refused)
M3=$TMP/m3
mkdir "$M3"
mount_fs "$TMP/d1" "$M3" "${DRILL[@]}"
T cmp "$TMP/f1" "$M3/main/f1" || fail "f1 of the drill"
T cmp "$TMP/f2" "$M3/main/f2" || fail "f2 of the drill"
umount_fs "$M3"
assert_eq "the original's marker after the drill" "$m0" "$(marker)"
[[ $(remote_get last_error) != fenced* ]] || fail "a drill fenced the original"

log "restored beside the original, which stays mounted"
RRC=0
ROUT=$(T "$TALLYFS" --restore "${REMOTE[@]}" "$TMP/r1" 2>&1) || RRC=$?
assert_eq "restore ($ROUT)" 0 "$RRC"
assert_match "the restore takes the bucket over" "marker names it now" "$ROUT"
wait_for 30 fenced || fail "the original was not fenced: $(remote_get last_error)"

log "the original's rm and snapshot delete nothing there"
T rm "$MNT/main/f1"
rep=$(ctl_report "drain remote 20" 2>&1) &&
	fail "a fenced store made a snapshot: $rep"
sleep 6 # deletions are looked at every 5 s (delay 0)
for o in "${f1objs[@]}"; do
	bucket_has "$o" || fail "the fenced original deleted $o"
done
assert_match "the snapshot restored from stays" "$s1" "$(snap_list)"
umount_fs

log "the restored store reads it all, and its snapshots sort last"
M2=$TMP/m2
mkdir "$M2"
mount_fs "$TMP/r1" "$M2" "${REMOTE[@]}"
T cmp "$TMP/f1" "$M2/main/f1" || fail "f1 of the restored store"
T cmp "$TMP/f2" "$M2/main/f2" || fail "f2 of the restored store"
rep=$(ctl_report "drain remote 120" "$M2") || fail "drain remote on r1: $rep"
s2=$(report_get snapshot "$rep")
assert_eq "the newest snapshot is the restored store's" "$s2" \
	"$(snap_list | sort | tail -n 1)"
umount_fs "$M2"
fsck_store --remote-endpoint="$S3_ENDPOINT" "$TMP/r1"
assert_eq "tallyfsck of the restored store: bucket_missing ($FSCK_OUT)" 0 \
	"$(fsck_value bucket_missing)"

log "restores in a row: the marker's ancestors grow, each restore mounts"
# (before: a marker naming 4 ancestors or more was cut short in the
# mount's comparison, and the mount was refused as of another store)
for i in 2 3 4 5 6; do
	RRC=0
	ROUT=$(T "$TALLYFS" --restore "${REMOTE[@]}" "$TMP/r$i" 2>&1) || RRC=$?
	assert_eq "restore $i ($ROUT)" 0 "$RRC"
	mount_fs "$TMP/r$i" "$M2" "${REMOTE[@]}"
	T cmp "$TMP/f2" "$M2/main/f2" || fail "f2 of restore $i"
	umount_fs "$M2"
done
# the original, r1 and restores 2 to 5
assert_match "the marker names 6 ancestors" \
	$'\nancestors [0-9]+( [0-9]+){5}$' "$(marker)"
log "ok"
