#!/bin/bash
# SPDX-License-Identifier: MIT
# Shards on a real mount: three shard directories, a fourth added, a
# rebalance, reads through the ghosts (cold cache), the sweep, a target
# made unreachable (EIO on reads, Inconclusive, nothing deleted) and
# brought back, a drained shard (the last active one is refused, activate
# takes one back), and kill -9 during rebalance and sweep:
# after a remount and another run, everything reads back and tallyfsck is
# clean.
SCN_TIMEOUT=420
source "$(dirname "$0")/lib.sh"

BS=65536
mkdir "$TMP/d1" "$TMP/d2" "$TMP/d3" "$TMP/d4"
mount_fs "$STORE" "$MNT" -o block_size=$BS

# the only shard cannot be drained: new objects would have nowhere to go
assert_eq "shard drain of the last active shard" EBUSY \
	"$(ctl_errno "shard drain 0")"
why=$(T python3 - "$MNT/.tally/ctl" <<-'EOF'
	import os, sys
	fd = os.open(sys.argv[1], os.O_RDWR)
	try:
	    os.write(fd, b"shard drain 0\n")
	except OSError:
	    print(os.read(fd, 4096).decode(), end="")
	EOF
)
[[ $why == *"error: the last active shard cannot be drained"* ]] ||
	fail "the refusal's report: $why"

# shard add / list, and what is refused
r=$(ctl_report "shard add $TMP/d1") || fail "shard add d1"
assert_eq "id of the first added shard" 1 "$(report_get shard "$r")"
ctl "shard add $TMP/d2" || fail "shard add d2"
assert_eq "shard add of a relative path" EINVAL "$(ctl_errno "shard add d3")"
assert_eq "shard add of a shard" EEXIST \
	"$(ctl_errno "shard add $TMP/d1")"
assert_eq "shard add inside the mount" EINVAL \
	"$(ctl_errno "shard add $MNT/main")"
assert_eq "shard add of a missing directory" ENOENT \
	"$(ctl_errno "shard add $TMP/nope")"
assert_eq "shard drain of an unknown shard" ENOENT \
	"$(ctl_errno "shard drain 9")"
assert_eq "shard with a bad verb" EINVAL "$(ctl_errno "shard move 1")"
assert_eq "sweep with a bad option" EINVAL "$(ctl_errno "sweep batches=x")"

# data over the three shards: files of one to four blocks
mkdir "$MNT/main"
for i in $(seq 1 24); do
	rand_file "$TMP/src$i" $((BS * (i % 4) + 1000 + i))
	T cp "$TMP/src$i" "$MNT/main/f$i"
done
drain
shard_objects() {
	status_json | python3 -c '
import json, sys
print(" ".join(str(s["objects"]) for s in json.load(sys.stdin)["shards"]))'
}
read -r n0 n1 n2 <<<"$(shard_objects)"
log "objects per shard: $n0 $n1 $n2"
((n0 > 0 && n1 > 0 && n2 > 0)) || fail "placement left a shard empty"
total=$((n0 + n1 + n2))

check_all() {
	local i

	sync
	echo 3 >/proc/sys/vm/drop_caches
	for i in $(seq 1 24); do
		assert_same_content "$TMP/src$i" "$MNT/main/f$i"
	done
}

# a fourth shard and a rebalance: ghosts, then the sweep
ctl "shard add $TMP/d3" || fail "shard add d3"
r=$(ctl_report rebalance) || fail "rebalance failed"
moved=$(report_get moved "$r")
log "rebalance: moved $moved, $(report_get mb_per_s "$r") MB/s"
((moved > 0)) || fail "the rebalance moved nothing"
assert_eq "ghosts after the rebalance" "$moved" "$(report_get ghosts "$r")"
assert_eq "status ghosts" "$moved" "$(status_get ghosts)"
named3=$(T getfattr -R --absolute-names -n user.tally.objects "$MNT/main" 2>/dev/null |
	grep -c '@3' || true)
assert_eq "references naming shard 3 before the sweep" 0 "$named3"
check_all
r=$(ctl_report sweep) || fail "sweep failed"
assert_eq "sweep checked" "$moved" "$(report_get checked "$r")"
assert_eq "sweep purged" "$moved" "$(report_get purged "$r")"
assert_eq "sweep kept" 0 "$(report_get kept "$r")"
assert_eq "sweep inconclusive" 0 "$(report_get inconclusive "$r")"
assert_eq "status ghosts after the sweep" 0 "$(status_get ghosts)"
assert_eq "status total_purged" "$moved" "$(status_get total_purged)"
read -r n0 n1 n2 n3 <<<"$(shard_objects)"
assert_eq "objects in all shards" "$total" $((n0 + n1 + n2 + n3))
named3=$(T getfattr -R --absolute-names -n user.tally.objects "$MNT/main" 2>/dev/null |
	tr ' ' '\n' | grep -c '@3' || true)
assert_eq "references naming shard 3 after the sweep" "$n3" "$named3"
check_all

# a target that goes away: EIO, Inconclusive, nothing deleted
ctl "shard add $TMP/d4" || fail "shard add d4"
r=$(ctl_report rebalance) || fail "rebalance to d4 failed"
moved=$(report_get moved "$r")
((moved > 0)) || fail "nothing moved to d4"
mv "$TMP/d4" "$TMP/d4.away"
sync
echo 3 >/proc/sys/vm/drop_caches
eio=0
for i in $(seq 1 24); do
	if ! T cat "$MNT/main/f$i" >/dev/null 2>"$TMP/err"; then
		grep -q 'Input/output error' "$TMP/err" ||
			fail "read of f$i failed other than with EIO: $(cat "$TMP/err")"
		eio=$((eio + 1))
	fi
done
((eio > 0)) || fail "no read failed with the target shard gone"
state=$(status_json | python3 -c '
import json, sys
print([s["state"] for s in json.load(sys.stdin)["shards"] if s["id"] == 4][0])')
assert_eq "state of the vanished shard" unreachable "$state"
# writes go on, to the other shards
rand_file "$TMP/late" $((BS * 2))
T cp "$TMP/late" "$MNT/main/late"
T python3 -c 'import os,sys; fd=os.open(sys.argv[1], os.O_RDONLY); os.fsync(fd)' \
	"$MNT/main/late"
assert_same_content "$TMP/late" "$MNT/main/late"
r=$(ctl_report sweep) || fail "sweep with d4 gone failed"
inc=$(report_get inconclusive "$r")
((inc > 0)) || fail "no ghost was inconclusive: $r"
assert_eq "ghosts left with d4 gone" "$inc" "$(status_get ghosts)"
ctl "gc grace=0" || fail "gc with d4 gone"
mv "$TMP/d4.away" "$TMP/d4"
ctl "shard list" || fail "shard list"
r=$(ctl_report sweep) || fail "sweep with d4 back failed"
assert_eq "purged once d4 is back" "$inc" "$(report_get purged "$r")"
assert_eq "ghosts once d4 is back" 0 "$(status_get ghosts)"
check_all

# drain a shard: it empties
r=$(ctl_report "shard drain 1") || fail "shard drain"
assert_eq "state in the drain report" draining "$(report_get state "$r")"
read -r n0 n1 n2 n3 n4 <<<"$(shard_objects)"
assert_eq "objects left in the drained shard" 0 "$n1"
ctl sweep || fail "sweep after the drain"
check_all
# activate takes it back; drained again for what follows
r=$(ctl_report "shard activate 1") || fail "shard activate"
assert_eq "state in the activate report" active "$(report_get state "$r")"
state=$(status_json | python3 -c '
import json, sys
print([s["state"] for s in json.load(sys.stdin)["shards"] if s["id"] == 1][0])')
assert_eq "state of the activated shard" active "$state"
assert_eq "shard activate of an unknown shard" ENOENT \
	"$(ctl_errno "shard activate 9")"
ctl "shard drain 1" || fail "shard drain after activate"

# kill -9 during rebalance and during sweep: nothing is lost
mkdir "$MNT/many"
python3 - "$MNT/many" <<-'EOF'
import os, sys
for i in range(400):
    with open(os.path.join(sys.argv[1], "m%d" % i), "wb") as f:
        f.write(os.urandom(65536))
EOF
drain
T sha256sum "$MNT"/many/* | sed "s|$MNT|M|" >"$TMP/many.sha"
assert_eq "files written for the kill rounds" 400 "$(wc -l <"$TMP/many.sha")"
remount_fs "$STORE" "$MNT" -o block_size=$BS
# a draining shard that still holds objects (its drain killed) is emptied
# by the next rebalance
T bash -c 'printf "shard drain 2\n" >"$1" 2>/dev/null' _ "$MNT/.tally/ctl" &
writer=$!
sleep 0.05
kill9_fs
wait "$writer" 2>/dev/null || true
mount_fs "$STORE" "$MNT" -o block_size=$BS
for round in rebalance:0.1 rebalance:0.3 sweep:0.002 sweep:0.01; do
	job=${round%:*}
	T bash -c 'printf "%s\n" "$1" >"$2" 2>/dev/null' _ "$job" \
		"$MNT/.tally/ctl" &
	writer=$!
	sleep "${round#*:}"
	kill9_fs
	wait "$writer" 2>/dev/null || true
	mount_fs "$STORE" "$MNT" -o block_size=$BS
	(cd "$MNT/.." && T sha256sum "$MNT"/many/* | sed "s|$MNT|M|") \
		>"$TMP/now.sha"
	diff -q "$TMP/many.sha" "$TMP/now.sha" >/dev/null ||
		fail "contents changed after kill -9 during $job"
done
# the drain again (its kill may have come before it was recorded): it
# resumes what the killed jobs left
r=$(ctl_report "shard drain 2") || fail "shard drain 2 after the kills"
read -r n0 n1 n2 n3 n4 <<<"$(shard_objects)"
assert_eq "objects left in drained shard 2" 0 "$n2"
r=$(ctl_report sweep) || fail "sweep after the kills"
assert_eq "ghosts after the last sweep" 0 "$(status_get ghosts)"
check_all
T sha256sum "$MNT"/many/* | sed "s|$MNT|M|" >"$TMP/now.sha"
diff -q "$TMP/many.sha" "$TMP/now.sha" >/dev/null ||
	fail "contents changed after the kill rounds"
umount_fs
fsck_store "$STORE"
assert_eq "tallyfsck after the kills ($FSCK_OUT)" 0 "$FSCK_RC"
assert_eq "ghosts in tallyfsck" 0 "$(fsck_value ghosts)"
# what the daemons said of the interrupted jobs, for the record
grep -E 'settling|rebalance:|sweep:' "$DLOG" | sed 's/^/# /' || true
log "ok"
