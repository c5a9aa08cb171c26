#!/bin/bash
# SPDX-License-Identifier: MIT
# kill -9 in the middle of a GC cycle loses nothing: the files read back,
# the next cycle finishes the job (every leak collected), and the store
# checks clean. The kill lands at a different moment of the cycle each
# round.
SCN_TIMEOUT=240
source "$(dirname "$0")/lib.sh"

mount_fs
mkdir "$MNT/main"
for i in 1 2 3; do
	rand_file "$TMP/f$i" $((MIB * i + 17))
	T cp "$TMP/f$i" "$MNT/main/f$i"
done
drain
live=$(object_count)

plant_leaks() {
	python3 - "$STORE/shards/0" "$1" <<-'EOF'
	import os, sys
	root, n = sys.argv[1], int(sys.argv[2])
	for i in range(n):
	    name = "%032x" % (0xdead0000 + i)
	    d = os.path.join(root, name[:2])
	    os.makedirs(d, exist_ok=True)
	    with open(os.path.join(d, name), "wb") as f:
	        f.write(b"leak")
	EOF
}

for delay in 0.01 0.05 0.2; do
	plant_leaks 3000
	T bash -c 'printf "gc grace=0\n" >"$1" 2>/dev/null' _ \
		"$MNT/.tally/ctl" &
	writer=$!
	sleep "$delay"
	kill9_fs
	wait "$writer" 2>/dev/null || true
	mount_fs
	for i in 1 2 3; do
		assert_same_content "$TMP/f$i" "$MNT/main/f$i"
	done
done
ctl "gc grace=0" || fail "gc after the kills failed"
assert_eq "object files once the next cycle is done" "$live" \
	"$(object_count)"
for i in 1 2 3; do
	assert_same_content "$TMP/f$i" "$MNT/main/f$i"
done
umount_fs
fsck_store "$STORE"
assert_eq "tallyfsck after the kills ($FSCK_OUT)" 0 "$FSCK_RC"
log "ok"
