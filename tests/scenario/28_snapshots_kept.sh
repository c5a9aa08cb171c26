#!/bin/bash
# SPDX-License-Identifier: MIT
# Kept metadata snapshots stay restorable (issue 28, finding 5):
#  - a change of the metadata alone (here an rm -rf) reaches a snapshot
#    within snapshot_interval, with no data written;
#  - with remote_delete_delay=0 the keys of the removed files stay while
#    a kept snapshot names them: the older snapshot restores byte-exact;
#  - once newer snapshots pushed it out (snapshot_keep), the keys go.
# Before: no snapshot followed the rm -rf, and the older snapshot was
# refused ("object(s) the snapshot names are not in the bucket").
SCN_TIMEOUT=300
source "$(dirname "$0")/lib.sh"
source "$TALLY_SRC/tests/s3/lib.sh"
source "$(dirname "$0")/remote_lib.sh"

s3_start tally-kept || fail "cannot start the S3 server"
PFX=k1
REMOTE=(-o "remote=s3://$S3_BUCKET/$PFX,remote_endpoint=$S3_ENDPOINT")
last_snap() { remote_get last_snapshot; }
# snap_after KEY: a snapshot other than KEY was made
snap_after() { local l; l=$(last_snap) && [[ $l != "$1" && $l != None ]]; }

mount_fs "$STORE" "$MNT" "${REMOTE[@]}" -o snapshot_interval=1 \
	-o snapshot_keep=4,remote_delete_delay=0
mkdir -p "$MNT/main/d"
for i in 1 2 3; do
	rand_file "$TMP/f$i" $((200 * 1024 + i))
	T cp "$TMP/f$i" "$MNT/main/d/f$i"
done
rep=$(ctl_report "drain remote 120") || fail "drain remote: $rep"
s1=$(report_get snapshot "$rep")
[[ $s1 == "$PFX/meta/snap-"* ]] || fail "no snapshot: $rep"
manifest "$MNT" --no-ctl >"$TMP/s1.mf" || fail "manifest"
keys=$(bucket_count)
mapfile -t names < <(for i in 1 2 3; do objects "$MNT/main/d/f$i"; done)
((${#names[@]} == 3)) || fail "objects of the files: ${names[*]}"
for o in "${names[@]}"; do bucket_has "$o" || fail "$o is not in the bucket"; done

log "rm -rf: a metadata change alone makes a snapshot"
rm -rf "$MNT/main/d"
wait_for 20 snap_after "$s1" || fail "no snapshot after the rm -rf"
s2=$(last_snap)
log "snapshots: $s1 then $s2"
# the deletions are due at once (delay 0), but s1 names their keys
sleep 4
assert_eq "keys kept while a snapshot names them" "$keys" "$(bucket_count)"
assert_match "s1 kept" "$s1" "$(snap_list)"

log "the older snapshot restores byte-exact"
RRC=0
ROUT=$(T "$TALLYFS" --restore "${REMOTE[@]}" -o "snapshot=${s1##*/}" \
	"$TMP/r1" 2>&1) || RRC=$?
assert_eq "restore of the older snapshot ($ROUT)" 0 "$RRC"
umount_fs
M2=$TMP/m2
mkdir "$M2"
mount_fs "$TMP/r1" "$M2" "${REMOTE[@]}"
manifest "$M2" --no-ctl >"$TMP/r1.mf" || fail "manifest of the restore"
assert_same_manifest "older snapshot restored" "$TMP/s1.mf" "$TMP/r1.mf"
umount_fs "$M2"

# the restore took the bucket over (29_restore_fork): the original is
# done with k1; the rest on a store and prefix of its own
log "newer snapshots push the older one out: the keys go"
PFX=k2
REMOTE=(-o "remote=s3://$S3_BUCKET/$PFX,remote_endpoint=$S3_ENDPOINT")
mount_fs "$TMP/s2" "$MNT" "${REMOTE[@]}" -o snapshot_interval=1 \
	-o snapshot_keep=4,remote_delete_delay=0
mkdir -p "$MNT/main/d"
for i in 1 2 3; do T cp "$TMP/f$i" "$MNT/main/d/f$i"; done
rep=$(ctl_report "drain remote 120") || fail "drain remote on k2: $rep"
s1=$(report_get snapshot "$rep")
mapfile -t names < <(for i in 1 2 3; do objects "$MNT/main/d/f$i"; done)
rm -rf "$MNT/main/d"
kept() { snap_list | grep -qxF "$s1"; }
for ((n = 0; n < 8; n++)); do
	kept || break
	prev=$(last_snap)
	printf '%s\n' "$n" >"$MNT/main/t$n"
	wait_for 20 snap_after "$prev" || fail "no snapshot after t$n"
done
kept && fail "s1 was not pushed out: $(snap_list)"
gone() {
	local o
	for o in "${names[@]}"; do bucket_lacks "$o" || return 1; done
}
wait_for 30 gone || fail "the keys of the removed files stay: $(bucket_keys)"
umount_fs

# issue 45, item 7: every snapshot gets a name of its own (two in the
# same second with the same data sequence used to share one, the second
# replacing the first), and an idle store makes none (a heartbeat's
# commit counted as a change: a snapshot at each one)
log "snapshots of their own, none while idle"
PFX=k3
REMOTE=(-o "remote=s3://$S3_BUCKET/$PFX,remote_endpoint=$S3_ENDPOINT")
mount_fs "$TMP/s3" "$MNT" "${REMOTE[@]}" -o snapshot_interval=1 \
	-o snapshot_keep=50,heartbeat=1
mkdir -p "$MNT/main"
for i in 1 2 3 4; do echo "$i" >"$MNT/main/e$i"; done
declare -A seen=()
for i in 1 2 3 4; do
	rep=$(ctl_report "drain remote 60") || fail "drain remote: $rep"
	k=$(report_get snapshot "$rep")
	[[ -z ${seen[$k]:-} ]] || fail "snapshot $k made twice: ${!seen[*]}"
	seen[$k]=1
	rm "$MNT/main/e$i" # a change of the metadata alone, at once
done
for k in "${!seen[@]}"; do
	snap_list | grep -qxF "$k" || fail "snapshot $k is gone: $(snap_list)"
done
# idle: heartbeats every second, snapshots due every second, no change
rep=$(ctl_report "drain remote 60") || fail "drain remote: $rep"
before=$(snap_list | wc -l)
sleep 6
assert_eq "snapshots made by an idle store in 6 s" "$before" \
	"$(snap_list | wc -l)"
umount_fs
log "ok"
