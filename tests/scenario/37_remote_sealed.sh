#!/bin/bash
# SPDX-License-Identifier: MIT
# The bucket as an untrusted place: a store bound with -o key_file and
# -o compress=zstd (core/s3/seal.c), against a real S3 server (s3rver),
# its bucket read raw by a second client (botocore):
#  - no body in the bucket holds the files' text, a file's name or an
#    object's name (the metadata snapshot included), and no key holds an
#    object's name (keyed names); compressible text is
#    stored in a fraction of its bytes (the status and the bucket's own
#    sizes), random bytes raw with only the envelope's overhead;
#  - a restore with the key is byte-exact; without it, or with another
#    key, refused with a message saying which;
#  - a mount without the key, with another key, a key file open to
#    others, a plain-bound store given a key: refused with a message;
#  - a flipped bit in an object, and one object's body put under
#    another's key: EIO on read, counted by verify remote, never other
#    bytes;
#  - through the fault proxy: 503s, bodies cut mid-upload, kill -9 with
#    uploads in flight: the queue drains, every key opens with the key
#    (verify remote), tallyfsck clean;
#  - compression alone (no key): restored byte-exact;
#  - keyed names: explain gives an object's bucket key, which does not
#    hold its name; tallyfsck with the bucket needs --key-file, and with
#    it finds every keyed key named (GC's and fsck's listings decode).
SCN_TIMEOUT=420
source "$(dirname "$0")/lib.sh"
source "$TALLY_SRC/tests/s3/lib.sh"
source "$(dirname "$0")/remote_lib.sh"

s3_start tally-sealed || fail "cannot start the S3 server"
PFX=sealed1
RURL="remote=s3://$S3_BUCKET/$PFX,remote_endpoint=$S3_ENDPOINT"
REMOTE=(-o "$RURL")

key k1
key k2
SEALED=(-o "key_file=$TMP/k1,compress=zstd")


# bkey OBJECT MNT: the bucket key of OBJECT (keyed names: explain says)
bkey() {
	local rep
	rep=$(ctl_report "explain $1" "$2") || fail "explain $1"
	report_get bucket_key "$rep"
}

log "a tree of known text, sealed with a key and compressed"
mount_fs "$STORE" "$MNT" "${REMOTE[@]}" "${SEALED[@]}" \
	-o snapshot_interval=0
mkdir -p "$MNT/main/secretdir"
for i in $(seq 1 20); do
	T python3 -c "import sys
sys.stdout.write(''.join('plaintext-marker line %d of file %s\n' % (n, sys.argv[1])
                         for n in range(12000)))" "$i" \
		>"$MNT/main/secretdir/secretname-$i.txt"
done
rand_file "$TMP/noise" $((3 * MIB + 77))
T cp "$TMP/noise" "$MNT/main/noise"
rep=$(ctl_report "drain remote 120") || fail "drain remote: $rep"
assert_match "a snapshot" "^$PFX/meta/snap-" "$(report_get snapshot "$rep")"
assert_eq "status: sealed" True "$(remote_get sealed)"
assert_eq "status: encrypted" True "$(remote_get encrypted)"
kid=$(remote_get key_id)
assert_match "status: key id" '^[0-9a-f]{16}$' "$kid"
logical=$(remote_get bytes_logical)
stored=$(remote_get bytes_stored)
# 20 files of about 420 KB of text (compressible), 3 MiB of noise (not)
((logical > 10 * MIB)) || fail "bytes_logical $logical"
((stored * 100 < logical * 40)) ||
	fail "compressed text: bytes_stored $stored of $logical"
manifest "$MNT" --no-ctl >"$TMP/before.mf" || fail "manifest"
mapfile -t nobjs < <(objects "$MNT/main/noise")
mapfile -t tobjs < <(objects "$MNT/main/secretdir/secretname-1.txt")
mapfile -t t2objs < <(objects "$MNT/main/secretdir/secretname-2.txt")
nkeys=()
for o in "${nobjs[@]}"; do
	nkeys+=("$(bkey "$o" "$MNT")")
	[[ ${nkeys[-1]} == "$PFX/objects/"* ]] || fail "no bucket key of $o"
	if [[ ${nkeys[-1]} == *"$o"* ]]; then
		fail "key ${nkeys[-1]} names $o"
	fi
done
umount_fs

log "the bucket's raw bytes: no text, no file name, no object name"
T python3 - "$S3_BUCKET" "$PFX/" "$STORE" "$logical" "$TMP/noise" <<'EOF' ||
import os, sys
sys.path.insert(0, os.path.join(os.environ["TALLY_SRC"], "tests/s3"))
import s3cli
bucket, prefix, store, logical = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
# random bytes do not compress: a body that holds them unencrypted holds
# them as they are
noise = open(sys.argv[5], "rb").read()
samples = [noise[o:o + 32] for o in (0, 1000, 500000, 2000000, len(noise) - 40)]
c = s3cli.client()
names = set()
for root, _, files in os.walk(os.path.join(store, "shards")):
    for f in files:
        if len(f) >= 32 and all(ch in "0123456789abcdef" for ch in f[:32]):
            names.add(f[:32].encode())
assert names, "no object files in the store"
obj_bytes = 0
nsnap = 0
for key, size in s3cli.keys(c, bucket, prefix):
    for n in names:
        assert n.decode() not in key, f"key {key} names object {n!r}"
    body = c.get_object(Bucket=bucket, Key=key)["Body"].read()
    for needle in (b"plaintext-marker", b"secretname", b"secretdir",
                   b"SQLite format"):
        assert needle not in body, f"{key} holds {needle!r}"
    for n in names:
        assert n not in body, f"{key} holds object name {n!r}"
    for n in samples:
        assert n not in body, f"{key} holds the noise file's bytes"
    if "/objects/" in key or "/meta/snap-" in key:
        # an envelope (core/s3/seal.h) that says it is encrypted
        assert body[:4] == b"TLYE" and body[5] & 1, f"{key}: not encrypted"
    if "/objects/" in key:
        obj_bytes += size
    if "/meta/snap-" in key:
        nsnap += 1
assert nsnap >= 1, "no snapshot in the bucket"
assert obj_bytes * 100 < logical * 40, f"objects take {obj_bytes} of {logical}"
print(f"objects {obj_bytes} bytes for {logical}; {nsnap} snapshot(s)")
EOF
	fail "the bucket holds plain bytes"
# random bytes: raw, the envelope's header and each segment's head and tag
for i in "${!nobjs[@]}"; do
	o=${nobjs[$i]}
	size=$(bucket_keys | awk -v k="${nkeys[$i]}" '$1 == k { print $2 }')
	local_size=$(stat -c %s "$(find "$STORE/shards" -name "$o")")
	segs=$(((local_size + MIB - 1) / MIB))
	assert_eq "noise object $o: raw plus the envelope" \
		$((local_size + 40 + 24 * segs)) "$size"
done

log "refusals: no key, another key, a key open to others"
refused "no key" "encrypted with key $kid" "${REMOTE[@]}" "$STORE" "$MNT"
refused "another key" "key_file holds key .*encrypted with key $kid" \
	"${REMOTE[@]}" -o "key_file=$TMP/k2" "$STORE" "$MNT"
cp "$TMP/k1" "$TMP/k1open"
chmod 0644 "$TMP/k1open"
refused "key file open to others" "open to group or others" \
	"${REMOTE[@]}" -o "key_file=$TMP/k1open" "$STORE" "$MNT"
refused "a bad compress" "compress is zstd" "${REMOTE[@]}" \
	-o "key_file=$TMP/k1,compress=lz4" "$STORE" "$MNT"

log "restore: with the key byte-exact; without it or with another refused"
restore "$TMP/rnone"
assert_eq "restore without the key" 1 "$RRC"
assert_match "restore without the key says so" \
	"encrypted with key $kid" "$ROUT"
[[ -e $TMP/rnone ]] && fail "a refused restore left its store"
restore "$TMP/rother" -o "key_file=$TMP/k2"
assert_eq "restore with another key" 1 "$RRC"
assert_match "restore with another key says so" "key_file holds key" "$ROUT"
restore "$TMP/r1" -o "key_file=$TMP/k1"
assert_eq "restore with the key ($ROUT)" 0 "$RRC"
assert_eq "restore: missing" 0 "$(rget missing)"
M2=$TMP/m2
mkdir "$M2"
mount_fs "$TMP/r1" "$M2" "${REMOTE[@]}" -o "key_file=$TMP/k1"
manifest "$M2" --no-ctl >"$TMP/after.mf" || fail "manifest of the restore"
assert_same_manifest "restored tree" "$TMP/before.mf" "$TMP/after.mf"
(($(remote_get fetched "$M2") > 0)) || fail "nothing was fetched"
umount_fs "$M2"
fsck_store "$TMP/r1"
assert_eq "tallyfsck of the restore ($FSCK_OUT)" clean "$(fsck_value status)"

log "tampering: a flipped bit, another object's body: EIO, never bytes"
restore "$TMP/r2" -o "key_file=$TMP/k1"
assert_eq "second restore ($ROUT)" 0 "$RRC"
# r2 owns the bucket now; its copies are all evicted, and explain reads
# none
M3=$TMP/m3
mkdir "$M3"
mount_fs "$TMP/r2" "$M3" "${REMOTE[@]}" -o "key_file=$TMP/k1"
k1=$(bkey "${tobjs[0]}" "$M3")
k2=$(bkey "${t2objs[0]}" "$M3")
[[ -n $k1 && -n $k2 ]] || fail "no keys of the text objects"
T "${S3CLI[@]}" get "$S3_BUCKET" "$k1" "$TMP/body1"
T "${S3CLI[@]}" get "$S3_BUCKET" "$k2" "$TMP/body2"
T python3 - "$TMP/body1" <<'EOF'
import sys
b = bytearray(open(sys.argv[1], "rb").read())
b[len(b) // 2] ^= 0x10
open(sys.argv[1] + ".flipped", "wb").write(b)
EOF
T "${S3CLI[@]}" put "$S3_BUCKET" "$k1" "$TMP/body1.flipped"
T "${S3CLI[@]}" put "$S3_BUCKET" "$k2" "$TMP/body1"
for f in secretname-1.txt secretname-2.txt; do
	err=$(cat "$M3/main/secretdir/$f" 2>&1 >/dev/null) &&
		fail "$f read with its bucket body altered"
	assert_match "$f: EIO" "Input/output error" "$err"
done
rep=$(ctl_report "verify remote" "$M3") || fail "verify remote: $rep"
assert_eq "verify remote: corrupt" 2 "$(report_get corrupt "$rep")"
assert_eq "verify remote: missing" 0 "$(report_get missing "$rep")"
umount_fs "$M3"
T "${S3CLI[@]}" put "$S3_BUCKET" "$k1" "$TMP/body1"
T "${S3CLI[@]}" put "$S3_BUCKET" "$k2" "$TMP/body2"
fsck_store "$STORE"
assert_eq "tallyfsck of the sealed store ($FSCK_OUT)" clean \
	"$(fsck_value status)"

log "faults: 503s, cut bodies, kill -9 with uploads in flight"
# on r2, which owns the bucket since its restore; its objects are the
# original store's (an ancestor's), evicted
proxy_start
PX=(-o "remote=s3://$S3_BUCKET/$PFX,remote_endpoint=http://127.0.0.1:$PPORT")
mount_fs "$TMP/r2" "$MNT" "${PX[@]}" "${SEALED[@]}" -o remote_retry_max=1
proxy "status/503/SlowDown?n=4&method=PUT"
rand_file "$TMP/f1" $((2 * MIB + 5))
T cp "$TMP/f1" "$MNT/main/f1"
proxy "cut?n=2&method=PUT"
rand_file "$TMP/f2" $((2 * MIB + 6))
T cp "$TMP/f2" "$MNT/main/f2"
rep=$(ctl_report "drain remote 120") || fail "drain after 503s and cuts: $rep"
assert_eq "drained after 503s and cuts" 0 "$(report_get queued "$rep")"
proxy "stall?method=PUT"
rand_file "$TMP/f3" $((3 * MIB + 7))
T cp "$TMP/f3" "$MNT/main/f3"
T sync "$MNT/main/f3"
wait_for 20 bash -c "(( \$(python3 -c 'import json, sys
print(json.load(open(sys.argv[1]))[\"remote\"][\"in_flight\"])' \
	'$MNT/.tally/status') > 0 ))" || fail "no upload in flight"
kill9_fs
proxy pass
mount_fs "$TMP/r2" "$MNT" "${PX[@]}" "${SEALED[@]}"
rep=$(ctl_report "drain remote 120") || fail "drain after kill -9: $rep"
assert_eq "drained after kill -9" 0 "$(report_get queued "$rep")"
rep=$(ctl_report "verify remote") || fail "verify remote: $rep"
assert_eq "every key opens: corrupt" 0 "$(report_get corrupt "$rep")"
assert_eq "every key opens: missing" 0 "$(report_get missing "$rep")"
assert_eq "every key opens: ok" "$(report_get checked "$rep")" \
	"$(report_get ok "$rep")"
for f in f1 f2 f3; do
	assert_same_content "$TMP/$f" "$MNT/main/$f"
done
# the bodies put back after the tampering open again
for f in secretname-1.txt secretname-2.txt; do
	T cat "$MNT/main/secretdir/$f" >/dev/null
done
umount_fs
fsck_store --remote-endpoint="$S3_ENDPOINT" "$TMP/r2"
assert_eq "tallyfsck with the bucket, no key" 2 "$FSCK_RC"
assert_match "tallyfsck asks for the key" "give --key-file" "$FSCK_OUT"
fsck_store --remote-endpoint="$S3_ENDPOINT" --key-file="$TMP/k1" "$TMP/r2"
assert_eq "tallyfsck with the bucket after the faults ($FSCK_OUT)" clean \
	"$(fsck_value status)"
assert_eq "tallyfsck: keyed keys all named" 0 "$(fsck_value bucket_orphans)"
assert_eq "tallyfsck: keyed keys none missing" 0 \
	"$(fsck_value bucket_missing)"

log "compression alone, and a plain-bound store given a key"
PFX=sealed2
RURL="remote=s3://$S3_BUCKET/$PFX,remote_endpoint=$S3_ENDPOINT"
REMOTE=(-o "$RURL")
S2=$TMP/s2
mount_fs "$S2" "$MNT" "${REMOTE[@]}" -o compress=zstd:9,snapshot_interval=0
mkdir "$MNT/main"
T python3 -c "import sys
sys.stdout.write('compressible line\n' * 100000)" >"$MNT/main/text"
rep=$(ctl_report "drain remote 120") || fail "drain remote 2: $rep"
assert_eq "compressed: sealed" True "$(remote_get sealed)"
assert_eq "compressed: not encrypted" False "$(remote_get encrypted)"
((10 * $(remote_get bytes_stored) < $(remote_get bytes_logical))) ||
	fail "text not compressed: $(remote_get bytes_stored)"
manifest "$MNT" --no-ctl >"$TMP/before2.mf" || fail "manifest 2"
umount_fs
restore "$TMP/r3" -o "key_file=$TMP/k1"
assert_eq "a key for a bucket without one" 1 "$RRC"
assert_match "says no key is needed" "not encrypted" "$ROUT"
restore "$TMP/r3"
assert_eq "restore of the compressed store ($ROUT)" 0 "$RRC"
mount_fs "$TMP/r3" "$MNT" "${REMOTE[@]}"
manifest "$MNT" --no-ctl >"$TMP/after2.mf" || fail "manifest of r3"
assert_same_manifest "restored compressed tree" "$TMP/before2.mf" \
	"$TMP/after2.mf"
umount_fs
PFX=plain3
REMOTE=(-o "remote=s3://$S3_BUCKET/$PFX,remote_endpoint=$S3_ENDPOINT")
mount_fs "$TMP/s3" "$MNT" "${REMOTE[@]}"
mkdir "$MNT/main"
echo plain >"$MNT/main/p"
umount_fs
refused "a key for a plain-bound store" "bound to .* with plain bodies" \
	"${REMOTE[@]}" -o "key_file=$TMP/k1" "$TMP/s3" "$MNT"
log "ok"
