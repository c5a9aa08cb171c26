#!/bin/bash
# SPDX-License-Identifier: MIT
# compress_local: a store made with -o compress_local keeps its object
# files as zstd-compressed envelopes (core/objects/objcodec.h), on a real
# mount:
#  - text is kept in a fraction of its bytes (the status's bytes_on_disk
#    against bytes_stored, and the files' own sizes), random bytes with
#    only the envelope's overhead; every file reads back byte-exact, whole
#    and at random ranges, after a remount without the option too (the
#    store's config decides); tallyfsck clean;
#  - a store made without it is refused the option, with a message;
#  - a damaged object file: EIO on read, counted by verify, never other
#    bytes; the file put back, it reads again;
#  - kill -9 during writes: what was synced reads back, tallyfsck clean;
#  - with a bucket, a key and a small cache: uploads drain, evicted
#    objects come back, and a restore (its files envelopes too) is
#    byte-exact.
SCN_TIMEOUT=420
source "$(dirname "$0")/lib.sh"
source "$TALLY_SRC/tests/s3/lib.sh"
source "$(dirname "$0")/remote_lib.sh"

# text NAME LINES: a file of text lines in $TMP/src
text() {
	T python3 -c "import sys
sys.stdout.write(''.join('line %d of the file %s, a text as files are\n'
                         % (n, sys.argv[1]) for n in range(int(sys.argv[2]))))" \
		"$1" "$2" >"$TMP/src/$1"
}

# ranges DIR SRC: random ranges of every file of SRC read from DIR match
ranges() {
	T python3 - "$1" "$2" <<'EOF' || fail "ranges of $1 differ from $2"
import os, random, sys
rnd = random.Random(4)
for name in sorted(os.listdir(sys.argv[2])):
    want = open(os.path.join(sys.argv[2], name), "rb").read()
    with open(os.path.join(sys.argv[1], name), "rb") as f:
        for _ in range(300):
            off = rnd.randrange(len(want) + 10)
            n = rnd.randrange(1, 300000)
            f.seek(off)
            got = f.read(n)
            if got != want[off:off + n]:
                sys.exit("%s: %d bytes at %d differ" % (name, n, off))
EOF
}

local_get() { status_get compress_local "${2:-$MNT}" | python3 -c "
import json, sys
print(json.load(sys.stdin)['$1'])"; }

mkdir "$TMP/src"
for i in 1 2 3 4 5 6; do text "t$i" $((20000 * i)); done
rand_file "$TMP/src/noise" $((3 * MIB + 77))

log "a store made with compress_local: text in a fraction of its bytes"
mount_fs "$STORE" "$MNT" -o compress_local
mkdir "$MNT/main"
T cp "$TMP/src/"* "$MNT/main/"
# a file written at random offsets, then overwritten in part
T python3 - "$MNT/main/patched" "$TMP/src/patched" <<'EOF'
import os, random, sys
rnd = random.Random(7)
size = 5 * 1048576 + 123
buf = bytearray(b"patched text block " * (size // 19 + 1))[:size]
fds = [os.open(p, os.O_RDWR | os.O_CREAT, 0o644) for p in sys.argv[1:]]
for fd in fds:
    os.pwrite(fd, bytes(buf), 0)
for _ in range(200):
    off, n = rnd.randrange(size), rnd.randrange(1, 20000)
    data = os.urandom(n) if rnd.random() < 0.3 else b"x" * n
    for fd in fds:
        os.pwrite(fd, data, off)
for fd in fds:
    os.fsync(fd)
    os.close(fd)
EOF
T ln "$MNT/main/t1" "$MNT/main/t1.link"
manifest "$MNT" --no-ctl >"$TMP/before.mf" || fail "manifest"
assert_eq "level" 3 "$(local_get level)"
disk=$(local_get bytes_on_disk)
stored=$(status_get bytes_stored)
((disk * 2 < stored)) ||
	fail "bytes on disk $disk is not below half of $stored stored"
# the random file's objects: raw, with the envelope's overhead alone
mapfile -t nobjs < <(objects "$MNT/main/noise")
f=$STORE/shards/0/${nobjs[0]:0:2}/${nobjs[0]}
sz=$(stat -c %s "$f")
((sz >= MIB && sz < MIB + 1024)) ||
	fail "a block of random bytes is $sz bytes on disk"
mapfile -t tobjs < <(objects "$MNT/main/t6")
f=$STORE/shards/0/${tobjs[0]:0:2}/${tobjs[0]}
(($(stat -c %s "$f") < MIB / 4)) ||
	fail "a text object is $(stat -c %s "$f") bytes on disk"
ranges "$MNT/main" "$TMP/src"

log "remounted without the option: the store says, every byte the same"
umount_fs
echo 3 >/proc/sys/vm/drop_caches
mount_fs "$STORE" "$MNT"
manifest "$MNT" --no-ctl >"$TMP/after.mf" || fail "manifest after remount"
assert_same_manifest "after a remount" "$TMP/before.mf" "$TMP/after.mf"
ranges "$MNT/main" "$TMP/src"
assert_eq "level after remount" 3 "$(local_get level)"
assert_eq "bytes on disk after remount" "$disk" "$(local_get bytes_on_disk)"
rep=$(ctl_report verify) || fail "verify: $rep"
assert_eq "verify: corrupt" 0 "$(report_get corrupt "$rep")"
umount_fs
fsck_store "$STORE"
assert_eq "tallyfsck ($FSCK_OUT)" clean "$(fsck_value status)"

log "a store made without it is refused the option"
mount_fs "$TMP/plain" "$MNT"
umount_fs
refused "compress_local on a plain store" "made without compress_local" \
	-o compress_local "$TMP/plain" "$MNT"
refused "compress without a bucket or compress_local" \
	"compress also goes with compress_local" -o compress=zstd \
	"$TMP/plain" "$MNT"

log "a damaged object file: EIO, counted by verify, never other bytes"
f=$STORE/shards/0/${tobjs[0]:0:2}/${tobjs[0]}
cp "$f" "$TMP/saved"
chmod u+w "$f"
T python3 - "$f" <<'EOF'
import sys
b = bytearray(open(sys.argv[1], "rb").read())
b[len(b) * 2 // 3] ^= 0x08
open(sys.argv[1], "wb").write(b)
EOF
mount_fs "$STORE" "$MNT"
err=$(cat "$MNT/main/t6" 2>&1 >/dev/null) && fail "t6 read with its object damaged"
assert_match "t6: EIO" "Input/output error" "$err"
rep=$(ctl_report verify) || fail "verify: $rep"
assert_eq "verify: corrupt" 1 "$(report_get corrupt "$rep")"
umount_fs
cp "$TMP/saved" "$f"
mount_fs "$STORE" "$MNT"
assert_same_content "$TMP/src/t6" "$MNT/main/t6"

log "kill -9 during writes: what was synced reads back"
T cp "$TMP/src/t5" "$MNT/main/synced"
T sync "$MNT/main/synced"
(
	for i in $(seq 1 40); do
		cp "$TMP/src/t$((i % 6 + 1))" "$MNT/main/w$i" 2>/dev/null || exit 0
	done
) &
writer=$!
sleep 1
kill9_fs
wait "$writer" || true
mount_fs "$STORE" "$MNT"
assert_same_content "$TMP/src/t5" "$MNT/main/synced"
ranges "$MNT/main" "$TMP/src"
umount_fs
fsck_consistent "after kill -9" "$STORE"

log "with a bucket, a key and a small cache; a restore byte-exact"
s3_start tally-clocal || fail "cannot start the S3 server"
PFX=clocal
REMOTE=(-o "remote=s3://$S3_BUCKET/$PFX,remote_endpoint=$S3_ENDPOINT")
key k1
S2=$TMP/store2
mount_fs "$S2" "$MNT" "${REMOTE[@]}" -o "key_file=$TMP/k1,compress=zstd" \
	-o compress_local,cache_size=1M,snapshot_interval=0
mkdir "$MNT/main"
T cp "$TMP/src/"* "$MNT/main/"
rep=$(ctl_report "drain remote 120") || fail "drain remote: $rep"
manifest "$MNT" --no-ctl >"$TMP/r_before.mf" || fail "manifest"
evicted_some() { (($(remote_get evicted) > 0)); }
wait_for 30 evicted_some || fail "nothing evicted: $(status_get remote)"
umount_fs
echo 3 >/proc/sys/vm/drop_caches
mount_fs "$S2" "$MNT" "${REMOTE[@]}" -o "key_file=$TMP/k1,cache_size=1M"
ranges "$MNT/main" "$TMP/src"
(($(remote_get fetched) > 0)) || fail "nothing was fetched"
rep=$(ctl_report "verify remote") || fail "verify remote: $rep"
assert_eq "verify remote: corrupt" 0 "$(report_get corrupt "$rep")"
assert_eq "verify remote: missing" 0 "$(report_get missing "$rep")"
umount_fs
fsck_store "$S2"
assert_eq "tallyfsck of the cached store ($FSCK_OUT)" clean \
	"$(fsck_value status)"
restore "$TMP/r0" -o "key_file=$TMP/k1,compress_local"
assert_eq "a restore asked for compress_local" 2 "$RRC"
assert_match "a restore asked for compress_local says why" \
	"a restore keeps the one of the store it restores" "$ROUT"
[[ -e $TMP/r0 ]] && fail "a refused restore left a store"
restore "$TMP/r1" -o "key_file=$TMP/k1"
assert_eq "restore ($ROUT)" 0 "$RRC"
mount_fs "$TMP/r1" "$MNT" "${REMOTE[@]}" -o "key_file=$TMP/k1"
assert_eq "the restore's files are envelopes" 3 "$(local_get level)"
manifest "$MNT" --no-ctl >"$TMP/r_after.mf" || fail "manifest of the restore"
assert_same_manifest "restored tree" "$TMP/r_before.mf" "$TMP/r_after.mf"
umount_fs
fsck_store "$TMP/r1"
assert_eq "tallyfsck of the restore ($FSCK_OUT)" clean "$(fsck_value status)"
log "ok"
