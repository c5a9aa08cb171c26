#!/bin/bash
# SPDX-License-Identifier: MIT
# A small cache under power loss: the store lives on plfs (unsynced
# writes dropped at "powerloss"), its bucket on s3rver, `cache_size=2M`,
# and 12 files of 1 MiB are each fsync'ed, uploaded and most of them
# evicted. Eviction deletes a local copy only once the rows that allow
# it (remote=1, cached=0) are durable: after the power goes, tallyfsck
# finds no object queued for upload without its local copy, nothing
# dangling, and every file reads back whole before any drain (issue 45,
# item 2: 7 of 11 power losses left such rows before). Then rows made
# that way on purpose (a queued object whose copy is gone, the bucket
# holding it) are settled: by `tallyfsck --repair --remote-endpoint`, and
# by a mount's uploader, which asks the bucket (HEAD) instead of retrying
# an unreadable copy forever.
SCN_TIMEOUT=${SCN_TIMEOUT:-300}
source "$(dirname "$0")/../scenario/lib.sh"
source "$TALLY_SRC/tests/s3/lib.sh"
source "$TALLY_SRC/tests/scenario/remote_lib.sh"
source "$(dirname "$0")/pl_lib.sh"

plfs_start
s3_start tally-plcache || fail "cannot start the S3 server"
PFX=plcache
REMOTE=(-o "remote=s3://$S3_BUCKET/$PFX,remote_endpoint=$S3_ENDPOINT")
OPTS=(-o "cache_size=2M,upload_delay=0")

# evicted_at_least N: the mount evicted N local copies or more
evicted_at_least() {
	local n
	n=$(T python3 -c 'import json, sys
print(json.load(open(sys.argv[1]))["remote"]["evicted"])' \
		"$MNT/.tally/status") || return 1
	((n >= $1))
}

# flushed: nothing dirty (no sync asked for)
flushed() {
	T python3 -c 'import json, sys
d = json.load(open(sys.argv[1]))
sys.exit(0 if d["dirty_bytes"] == 0 else 1)' "$MNT/.tally/status"
}

# break OBJ...: rows as a power loss left them before evictions synced:
# queued for upload, cached locally, the local copy gone (the bucket has
# it); the store unmounted
break_rows() {
	T python3 - "$STORE/meta.db" "$@" <<-'PY' || fail "cannot break rows"
	import sqlite3, sys
	db = sqlite3.connect(sys.argv[1])
	db.execute("PRAGMA locking_mode = EXCLUSIVE")  # no -shm on plfs
	for n in sys.argv[2:]:
	    db.execute("UPDATE objects SET remote = 0, cached = 1 WHERE name = ?", (n,))
	    db.execute("INSERT OR REPLACE INTO remote_up(name, seq) VALUES (?, 1)", (n,))
	db.commit()
	db.close()
	PY
	for o in "$@"; do
		rm -f "$STORE/shards/0/${o:0:2}/$o"
	done
}

# uploaded: nothing queued for upload, in flight or failed
uploaded() {
	T python3 -c 'import json, sys
r = json.load(open(sys.argv[1]))["remote"]
sys.exit(0 if r["queued"] == 0 and r["in_flight"] == 0 else 1)' \
		"$MNT/.tally/status"
}

log "rows queued for upload whose copy is gone, the bucket holding it"
mount_fs "$STORE" "$MNT" "${REMOTE[@]}" -o upload_delay=0
mkdir "$MNT/main"
rand_file "$TMP/s1" $((MIB + 1))
rand_file "$TMP/s2" $((MIB + 2))
cp "$TMP/s1" "$TMP/s2" "$MNT/main/"
drain
wait_for 60 uploaded || fail "the uploads did not end"
o1=$(objects "$MNT/main/s1" | head -n 1)
o2=$(objects "$MNT/main/s2" | head -n 1)
umount_fs

break_rows "$o1"
fsck_store "$STORE"
assert_eq "queued_missing of a broken row" 1 "$(fsck_value queued_missing)"
# --repair without the bucket cannot settle it, and says so
fsck_store --repair "$STORE"
assert_match "--repair without the bucket" "not repaired: 1 object" \
	"$FSCK_OUT"
assert_match "--repair without the bucket" "status: problems found" \
	"$FSCK_OUT"
fsck_store "$STORE"
assert_eq "queued_missing after --repair alone" 1 \
	"$(fsck_value queued_missing)"
# with it, the row is settled, and the store checks clean after
fsck_store --repair --remote-endpoint="$S3_ENDPOINT" "$STORE"
assert_eq "settled by --repair with the bucket ($FSCK_OUT)" 1 \
	"$(fsck_value settled)"
fsck_store --remote-endpoint="$S3_ENDPOINT" "$STORE"
assert_eq "tallyfsck after the settlement ($FSCK_OUT)" 0 "$FSCK_RC"

# the mount's uploader asks the bucket: a drain ends, nothing failed
break_rows "$o2"
mount_fs "$STORE" "$MNT" "${REMOTE[@]}" -o upload_delay=0
wait_for 60 uploaded || fail "the upload of a copy that is gone never ends"
assert_eq "failed uploads" 0 "$(remote_get failed)"
assert_eq "remote last_error" "" "$(remote_get last_error)"
assert_same_content "$TMP/s1" "$MNT/main/s1"
assert_same_content "$TMP/s2" "$MNT/main/s2"
umount_fs
fsck_store --remote-endpoint="$S3_ENDPOINT" "$STORE"
assert_eq "tallyfsck after the uploader settled it ($FSCK_OUT)" 0 "$FSCK_RC"

for round in 1 2 3; do
	log "round $round: 12 files of 1 MiB through a cache of 2 MiB"
	mount_fs "$STORE" "$MNT" "${REMOTE[@]}" "${OPTS[@]}"
	mkdir -p "$MNT/main"
	for i in $(seq 1 12); do
		rand_file "$TMP/f$round.$i" $((MIB))
		T dd if="$TMP/f$round.$i" of="$MNT/main/f$round.$i" bs=1M \
			conv=fsync status=none || fail "dd f$round.$i"
	done
	wait_for 60 evicted_at_least 10 ||
		fail "fewer evictions than expected: $(remote_get evicted)"
	# more objects, flushed and not fsync'ed: their writes sync the
	# shard directories (200 objects in 256), where the
	# evictions unlinked copies
	T python3 -c 'import os, sys
for i in range(200):
    with open("%s/g%s.%d" % (sys.argv[1], sys.argv[2], i), "wb") as f:
        f.write(os.urandom(4096))' "$MNT/main" "$round"
	wait_for 30 flushed || fail "the flushes did not end"
	power_loss
	# orphans are allowed: what the lost commits flushed
	fsck_consistent "round $round" --remote-endpoint="$S3_ENDPOINT" "$STORE"
	for key in queued_missing bucket_missing; do
		assert_eq "round $round: tallyfsck $key ($FSCK_OUT)" 0 \
			"$(fsck_value "$key")"
	done
	mount_fs "$STORE" "$MNT" "${REMOTE[@]}" "${OPTS[@]}"
	for r in $(seq 1 "$round"); do
		for i in $(seq 1 12); do
			assert_same_content "$TMP/f$r.$i" "$MNT/main/f$r.$i"
		done
	done
	umount_fs
done

