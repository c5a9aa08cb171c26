#!/bin/bash
# SPDX-License-Identifier: MIT
# A shared store (PostgreSQL, tests/pg/lib.sh) bound to its bucket with
# -o key_file and -o compress=zstd: every node seals what it ships
# before its commit (core/remote/remote_up.c, remote_ship()) and opens
# what it fetches.
#  - A writes; B, with the key and an empty cache, reads every byte
#    back (fetched from the bucket, opened, checked);
#  - B writes; A reads it back after its own copies were evicted;
#  - a node without the key, or with another, is refused with a message
#    naming the key the bucket wants;
#  - no bucket key names an object, no body holds the files' text;
#  - A rekeys (tallyctl rekey): B, mounted, ships and reads on (the
#    same keys; its marker check takes the new rings), and a node then
#    mounts with the new key only;
#  - A rekeys again through a PostgreSQL proxy that loses the answer to
#    the record's COMMIT (tests/pg/pgproxy.py): the rekey reads the
#    record back and reports it done; the third key mounts;
#  - tallyfsck with the bucket and the key: nothing missing, no orphan.
SCN_TIMEOUT=360
source "$(dirname "$0")/lib.sh"
source "$TALLY_SRC/tests/s3/lib.sh"
source "$TALLY_SRC/tests/pg/lib.sh"
source "$(dirname "$0")/remote_lib.sh"

shared_start tally-hsealed hsealed
(umask 077 && head -c 48 /dev/urandom >"$TMP/key" &&
	head -c 48 /dev/urandom >"$TMP/other")
SEAL="key_file=$TMP/key,compress=zstd"
mount_node() { # NODE [OPTIONS]
	mkdir -p "$(mnt "$1")"
	mount_fs "$TMP/cache_$1" "$(mnt "$1")" -o "$SHARED" \
		-o "heartbeat=1,$SEAL${2:+,$2}"
}
# text NAME: a file of text that names itself, into $TMP
text() {
	T python3 -c "import sys
sys.stdout.write(''.join('hsealed-marker %s line %d\n' % (sys.argv[1], n)
                         for n in range(40000)))" "$1" >"$TMP/$1"
}

log "A writes; B, with the key, reads every byte from the bucket"
mount_node a cache_size=1M
mkdir "$(mnt a)/ns"
text ta
rand_file "$TMP/ra" $((3 * MIB + 11))
T cp "$TMP/ta" "$TMP/ra" "$(mnt a)/ns/"
drained a "A's files"
assert_eq "A: sealed" True "$(remote_get sealed "$(mnt a)")"
kid=$(remote_get key_id "$(mnt a)")
mount_node b
for f in ta ra; do
	T cmp "$TMP/$f" "$(mnt b)/ns/$f" || fail "B reads $f wrong"
done
(($(remote_get fetched "$(mnt b)") > 0)) || fail "B fetched nothing"

log "B writes; A reads it back, its copies evicted"
text tb
T cp "$TMP/tb" "$(mnt b)/ns/tb"
drained b "B's file"
wait_for 30 bash -c "(( \$(python3 -c 'import json, sys
print(json.load(open(sys.argv[1]))[\"remote\"][\"cache_bytes\"])' \
	'$(mnt a)/.tally/status') <= $MIB ))" || fail "A's cache not evicted"
echo 3 >/proc/sys/vm/drop_caches
for f in ta ra tb; do
	T cmp "$TMP/$f" "$(mnt a)/ns/$f" || fail "A reads $f wrong"
done

log "a node without the key, or with another: refused"
mkdir -p "$(mnt c)"
out=$(T "$TALLYFS" -o "$SHARED,heartbeat=1" "$TMP/cache_c" "$(mnt c)" 2>&1) &&
	fail "C mounted without the key"
assert_match "no key" "encrypted with key $kid" "$out"
out=$(T "$TALLYFS" -o "$SHARED,heartbeat=1,key_file=$TMP/other" \
	"$TMP/cache_c" "$(mnt c)" 2>&1) && fail "C mounted with another key"
assert_match "another key" "key_file holds key" "$out"
is_mounted "$(mnt c)" && fail "a refused node is mounted"

log "A rekeys: B ships and reads on; a node then needs the new key"
rep=$(ctl_report "rekey $TMP/other" "$(mnt a)") || fail "rekey on A: $rep"
nid=$(report_get key_id "$rep")
assert_eq "rekey: the old key" "$kid" "$(report_get previous_key_id "$rep")"
assert_ne "rekey: a new key" "$kid" "$nid"
text tc
T cp "$TMP/tc" "$(mnt b)/ns/tc"
drained b "B's file after A's rekey"
[[ $(remote_get last_error "$(mnt b)") == fenced* ]] &&
	fail "B fenced by A's rekey"
T cmp "$TMP/tc" "$(mnt a)/ns/tc" || fail "A reads tc wrong"
out=$(T "$TALLYFS" -o "$SHARED,heartbeat=1,key_file=$TMP/key" \
	"$TMP/cache_c" "$(mnt c)" 2>&1) && fail "C mounted with the old key"
assert_match "the old key" "encrypted with key $nid" "$out"
SEAL="key_file=$TMP/other,compress=zstd"
mount_node c
for f in ta tb tc; do
	T cmp "$TMP/$f" "$(mnt c)/ns/$f" || fail "C reads $f wrong"
done
umount_fs "$(mnt c)"

# issue 45, item 5: the answer to the COMMIT of a rekey's record is lost
# (a real proxy in front of PostgreSQL passes the COMMIT and swallows
# every answer after it, then cuts the connection): the record committed,
# and the rekey reads it back and reports it done, never "cannot write
# the store's seal record"; B goes on, the third key alone mounts
log "A's rekey record commits and its answer is lost: reported done"
pgproxy_start
umount_fs "$(mnt a)"
SHARED_DIRECT=$SHARED
SHARED=${SHARED/meta=$PG_URI/meta=$PGPROXY_URI}
mount_node a
SHARED=$SHARED_DIRECT
(umask 077 && head -c 48 /dev/urandom >"$TMP/third")
pgproxy "lose-commit?n=1&with=keyring" >/dev/null
rep=$(ctl_report "rekey $TMP/third" "$(mnt a)") ||
	fail "a rekey whose commit's answer was lost: $rep"
assert_match "the answer was lost" "lost 1" "$(pgproxy stats)"
tid=$(report_get key_id "$rep")
assert_eq "rekey after the lost answer: the old key" "$nid" \
	"$(report_get previous_key_id "$rep")"
assert_ne "rekey after the lost answer: a new key" "$nid" "$tid"
assert_eq "A's status after it" "$tid" "$(remote_get key_id "$(mnt a)")"
text td
T cp "$TMP/td" "$(mnt b)/ns/td"
drained b "B's file after the lost answer"
SEAL="key_file=$TMP/third,compress=zstd"
mount_node c
for f in ta tb tc td; do
	T cmp "$TMP/$f" "$(mnt c)/ns/$f" || fail "C reads $f wrong (third key)"
done
umount_fs "$(mnt c)"

log "the bucket: no object names in keys, no text in bodies"
T python3 - "$S3_BUCKET" "$PFX/" "$TMP/cache_a" "$TMP/cache_b" <<'EOF' ||
import os, sys
sys.path.insert(0, os.path.join(os.environ["TALLY_SRC"], "tests/s3"))
import s3cli
bucket, prefix = sys.argv[1], sys.argv[2]
names = set()
for store in sys.argv[3:]:
    for root, _, files in os.walk(store):
        for f in files:
            if len(f) >= 32 and all(ch in "0123456789abcdef" for ch in f[:32]):
                names.add(f[:32])
assert names, "no object files in the caches"
c = s3cli.client()
n = 0
for key, _ in s3cli.keys(c, bucket, prefix):
    body = c.get_object(Bucket=bucket, Key=key)["Body"].read()
    assert b"hsealed-marker" not in body, f"{key} holds the text"
    for o in names:
        assert o not in key, f"{key} names object {o}"
    n += 1
assert n > 1, "nothing in the bucket"
EOF
	fail "the bucket holds names or text"

daemons_down
fsck_store -o "meta=$PG_URI,remote_endpoint=$S3_ENDPOINT,key_file=$TMP/third" \
	"$TMP/cache_a"
assert_eq "tallyfsck: bucket_missing ($FSCK_OUT)" 0 \
	"$(fsck_value bucket_missing)"
assert_eq "tallyfsck: bucket_orphans" 0 "$(fsck_value bucket_orphans)"
assert_eq "tallyfsck: dangling" 0 "$(fsck_value dangling)"
log "ok"
