#!/bin/bash
# SPDX-License-Identifier: MIT
# A whole store restored from its bucket alone (tallyfs --restore):
#  - drain remote uploads a metadata snapshot after the objects it names;
#    snapshot_keep bounds how many stay;
#  - --restore into a new directory, then a mount with the same remote
#    options: the tree reads back byte-exact (manifest: content, modes,
#    links, symlinks, xattrs, a branch), fetched from the bucket, and so
#    does a snapshot of a namespace in /.snapshots; the restored store
#    passes tallyfsck (its objects remote_only);
#  - a restore with cache_size: a write of bytes its rows name compares
#    them with the bucket's copy (other bytes there: the next name), and
#    every copy it writes or fetches is counted (cache_bytes = the bytes
#    of the object files, after a remount too) and evicted to the bound;
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
# a snapshot of main, which main changes after: the restore brings the
# namespace's versions back too (its view, its reads through the chain)
ctl "snapshot main v1" || fail "snapshot main v1"
manifest "$MNT/.snapshots/main/v1" >"$TMP/v1.mf" || fail "manifest of v1"
printf 'only in main\n' >>"$MNT/main/d1/s3"
rm "$MNT/main/d1/s4"
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
assert_eq "the restore's snapshots of main" v1 "$(ls "$M2/.snapshots/main")"
manifest "$M2/.snapshots/main/v1" >"$TMP/v1.after" ||
	fail "manifest of the restore's v1"
assert_same_manifest "restored snapshot main@v1" "$TMP/v1.mf" "$TMP/v1.after"
(($(remote_get fetched "$M2") > 0)) || fail "nothing was fetched"
umount_fs "$M2"
fsck_store "$TMP/r1"
assert_eq "tallyfsck of the restore ($FSCK_OUT)" clean "$(fsck_value status)"

log "a restored store's copies: compared with the bucket, counted, evicted"
# every object of the restore is evicted (cached = 0): a write of the
# same bytes compares the bucket's copy before it counts as a dedup hit,
# and the local copy it writes is counted and evictable like any other
restore "$TMP/r4"
assert_eq "restore r4 ($ROUT)" 0 "$RRC"
M4=$TMP/m4
mkdir "$M4"
mount_fs "$TMP/r4" "$M4" "${REMOTE[@]}" -o cache_size=2M
mapfile -t bobjs < <(objects "$M4/main/d1/d2/big")
assert_eq "objects of big" 6 "${#bobjs[@]}"
assert_eq "cache_bytes of the restore" 0 "$(remote_get cache_bytes "$M4")"
# block 0's key holds other bytes of its size, as a colliding block would
key0=$(bucket_key "${bobjs[0]}")
[[ -n $key0 ]] || fail "no key of ${bobjs[0]}"
T "${S3CLI[@]}" get "$S3_BUCKET" "$key0" "$TMP/key0"
rand_file "$TMP/other" "$(stat -c %s "$TMP/key0")"
T "${S3CLI[@]}" put "$S3_BUCKET" "$key0" "$TMP/other"
T cp "$TMP/big" "$M4/main/again"
drain "$M4"
mapfile -t aobjs < <(objects "$M4/main/again")
assert_eq "block 0, other bytes in the bucket: the next name" \
	"${bobjs[0]}-1" "${aobjs[0]}"
assert_eq "blocks 1-5, the same bytes: deduplicated" \
	"${bobjs[*]:1}" "${aobjs[*]:1}"
assert_eq "blocks compared with the bucket" 5 \
	"$(remote_get compared "$M4")"
T "${S3CLI[@]}" put "$S3_BUCKET" "$key0" "$TMP/key0"
rep=$(ctl_report "drain remote 120" "$M4") || fail "drain remote r4: $rep"
# the bytes of the object files on disk
local_bytes() {
	find "$1/shards" -path '*/[0-9a-f][0-9a-f]/*' -type f -printf '%s\n' |
		awk '{ s += $1 } END { print s + 0 }'
}
# cache_bytes as the status says it now (no drain first)
cache_now() {
	T python3 -c 'import json, sys
print(json.load(open(sys.argv[1]))["remote"]["cache_bytes"])' \
		"$M4/.tally/status"
}
cache_counted() {
	local b

	b=$(cache_now) || return 1
	((b <= 2 * MIB)) && [[ $b == $(local_bytes "$TMP/r4") ]]
}
# wait_counted SECONDS: until cache_counted, by the clock (a round of
# cache_counted is slow on a loaded machine)
wait_counted() {
	local end=$((SECONDS + $1))

	until cache_counted; do
		((SECONDS < end)) || return 1
		sleep 0.2
	done
}
wait_counted 30 ||
	fail "cache: $(cache_now) counted, $(local_bytes "$TMP/r4") on disk"
(($(remote_get evicted "$M4") >= 4)) || fail "evicted: $(remote_get evicted "$M4")"
echo 3 >/proc/sys/vm/drop_caches
assert_same_content "$TMP/big" "$M4/main/again"
assert_same_content "$TMP/big" "$M4/main/d1/d2/big"
wait_counted 30 ||
	fail "cache after reads: $(cache_now) counted, $(local_bytes "$TMP/r4") on disk"
umount_fs "$M4"
mount_fs "$TMP/r4" "$M4" "${REMOTE[@]}" -o cache_size=2M
wait_counted 10 ||
	fail "cache after remount: $(cache_now) counted, $(local_bytes "$TMP/r4") on disk"
umount_fs "$M4"
fsck_store "$TMP/r4"
assert_eq "tallyfsck of r4 ($FSCK_OUT)" clean "$(fsck_value status)"

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
