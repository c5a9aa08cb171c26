#!/bin/bash
# SPDX-License-Identifier: MIT
# A whole store restored from its bucket alone (tallyfs --restore):
#  - drain remote uploads a metadata snapshot after the objects it names;
#    snapshot_keep bounds how many stay;
#  - --restore into a new directory, then a mount with the same remote
#    options: the tree reads back byte-exact (manifest: content, modes,
#    links, symlinks, xattrs, a branch), fetched from the bucket; the
#    restored store passes tallyfsck (its objects remote_only);
#  - refusals with a message: a store directory that is not empty, a
#    snapshot that does not exist (the ones that do are listed), a bucket
#    prefix with no store, and objects missing from the bucket (the new
#    directory is removed again) unless restore_incomplete is given.
SCN_TIMEOUT=420
source "$(dirname "$0")/lib.sh"
source "$TALLY_SRC/tests/s3/lib.sh"
source "$(dirname "$0")/remote_lib.sh"

s3_start tally-restore || fail "cannot start the S3 server"
PFX=r1
RURL="remote=s3://$S3_BUCKET/$PFX,remote_endpoint=$S3_ENDPOINT"
REMOTE=(-o "$RURL")

# restore STORE [OPTIONS...]: tallyfs --restore; sets ROUT and RRC
restore() {
	local store=$1

	shift
	RRC=0
	ROUT=$(T "$TALLYFS" --restore "${REMOTE[@]}" "$@" "$store" 2>&1) ||
		RRC=$?
}
rget() { sed -n "s/^$1: //p" <<<"$ROUT" | tail -n 1; }

snapshots() { T "${S3CLI[@]}" ls "$S3_BUCKET" "$PFX/meta/" | wc -l; }

log "a tree, uploaded with its metadata"
mount_fs "$STORE" "$MNT" "${REMOTE[@]}" -o snapshot_interval=0 \
	-o snapshot_keep=2
mkdir -p "$MNT/main/d1/d2" "$MNT/main/empty"
for i in $(seq 1 40); do
	printf 'small file %d\n' "$i" >"$MNT/main/d1/s$i"
done
rand_file "$TMP/big" $((5 * MIB + 4321))
T cp "$TMP/big" "$MNT/main/d1/d2/big"
T cp "$TMP/big" "$MNT/main/dup" # deduplicated
T ln "$MNT/main/dup" "$MNT/main/hard"
T ln -s d1/d2/big "$MNT/main/sym"
T setfattr -n user.color -v blue "$MNT/main/d1/s1"
T chmod 0640 "$MNT/main/d1/s2"
T truncate -s 3M "$MNT/main/sparse"
ctl "branch main snap" || fail "branch"
printf 'only in main\n' >>"$MNT/main/d1/s3"
rep=$(ctl_report "drain remote 120") || fail "drain remote: $rep"
assert_match "first snapshot" "^$PFX/meta/snap-" "$(report_get snapshot "$rep")"
# two more, so that snapshot_keep=2 drops the first
printf 'x\n' >"$MNT/main/x1"
ctl_report "drain remote 120" >/dev/null || fail "drain remote 2"
printf 'y\n' >"$MNT/main/y1"
ctl_report "drain remote 120" >/dev/null || fail "drain remote 3"
assert_eq "snapshots kept" 2 "$(snapshots)"
manifest "$MNT" --no-ctl >"$TMP/before.mf" || fail "manifest"
nobj=$(status_get objects)
umount_fs

log "--restore, then the restored store mounted"
restore "$TMP/r1"
assert_eq "restore ($ROUT)" 0 "$RRC"
assert_eq "restored objects" "$nobj" "$(rget objects)"
assert_eq "missing" 0 "$(rget missing)"
M2=$TMP/m2
mkdir "$M2"
mount_fs "$TMP/r1" "$M2" "${REMOTE[@]}"
manifest "$M2" --no-ctl >"$TMP/after.mf" || fail "manifest of the restore"
assert_same_manifest "restored tree" "$TMP/before.mf" "$TMP/after.mf"
(($(remote_get fetched "$M2") > 0)) || fail "nothing was fetched"
umount_fs "$M2"
fsck_store "$TMP/r1"
assert_eq "tallyfsck of the restore ($FSCK_OUT)" clean "$(fsck_value status)"

log "refusals"
mkdir "$TMP/full" && touch "$TMP/full/file"
restore "$TMP/full"
assert_eq "restore over files" 1 "$RRC"
assert_match "restore over files" "not an empty directory" "$ROUT"
assert_exists "$TMP/full/file"
restore "$TMP/r2" -o snapshot=snap-nosuch
assert_eq "no such snapshot" 1 "$RRC"
assert_match "no such snapshot" "no such snapshot" "$ROUT"
assert_match "snapshots listed" "snapshot: $PFX/meta/snap-" "$ROUT"
assert_absent "$TMP/r2"
RRC=0
ROUT=$(T "$TALLYFS" --restore -o \
	"remote=s3://$S3_BUCKET/nothing,remote_endpoint=$S3_ENDPOINT" \
	"$TMP/r2" 2>&1) || RRC=$?
assert_eq "no store there" 1 "$RRC"
assert_match "no store there" "holds no tallyfs store" "$ROUT"
# an object the snapshot names, lost from the bucket
lost=$(bucket_keys | awk 'NR == 1 { k = $1 } END { print k }')
T "${S3CLI[@]}" rm "$S3_BUCKET" "$lost"
restore "$TMP/r3"
assert_eq "objects missing" 1 "$RRC"
lost=${lost##*/}
assert_match "objects missing" "missing: object '${lost%.g*}'" "$ROUT"
assert_absent "$TMP/r3"
restore "$TMP/r3" -o restore_incomplete
assert_eq "restore_incomplete ($ROUT)" 0 "$RRC"
assert_eq "restore_incomplete: missing" 1 "$(rget missing)"
