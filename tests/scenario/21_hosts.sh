#!/bin/bash
# SPDX-License-Identifier: MIT
# Several mounts of one store, as on several hosts: three daemons, each
# with its own mountpoint, cache directory and node, the metadata in a
# real PostgreSQL cluster (tests/pg/lib.sh) and the objects in a real S3
# server (tests/s3/lib.sh):
#  - write on A, close, read on B and C, byte-exact; a file grown and
#    shrunk on B read whole on A and C after a listing; a descriptor
#    opened before another node's rewrite, or whose old blocks another
#    node's rewrite freed, reads one content whole; a file A holds open,
#    rewritten by B, linked by A into another namespace: B's content;
#    rename and rmdir on one node seen from the others;
#  - every node is a session in /.tally/status, with its host and pid;
SCN_TIMEOUT=600
source "$(dirname "$0")/lib.sh"
source "$TALLY_SRC/tests/s3/lib.sh"
source "$TALLY_SRC/tests/pg/lib.sh"
source "$(dirname "$0")/remote_lib.sh"

shared_start tally-hosts hosts
NODES=(a b c)
for n in "${NODES[@]}"; do mkdir "$TMP/mnt_$n"; done
mnt() { echo "$TMP/mnt_$1"; }
mount_node() {
	local n=$1

	shift
	mount_fs "$TMP/cache_$n" "$(mnt "$n")" -o "$SHARED" \
		-o heartbeat=1,remote_delete_delay=2 "$@"
}

log "three nodes mount one store"
for n in "${NODES[@]}"; do mount_node "$n"; done
nodes=$(status_json "$(mnt a)" | python3 -c '
import json, sys
d = json.load(sys.stdin)
print(len(d["nodes"]), len({n["pid"] for n in d["nodes"]}))')
[[ $nodes == "3 3" ]] || fail "status lists nodes: $nodes (want 3 sessions)"
shown=$(T "$TALLY_BUILD/tools/tallyctl" "$(mnt b)" status | grep -c '^  node .* on ')
[[ $shown == 3 ]] || fail "tallyctl status shows $shown nodes, want 3"

log "three nodes make and remove subdirectories of one directory at once"
mkdir "$(mnt a)/ns"
mkdir "$(mnt a)/ns/sub"
subdirs() { # make|remove NODE
	local i op=mkdir

	[[ $1 == remove ]] && op=rmdir
	for ((i = 0; i < 40; i++)); do
		"$op" "$(mnt "$2")/ns/sub/$2$i" || return 1
	done
}
nlink_is() { [[ $(stat -c %h "$(mnt "$1")/ns/sub") == "$2" ]]; }
for op in make remove; do
	pids=()
	for n in "${NODES[@]}"; do
		subdirs "$op" "$n" &
		pids+=($!)
	done
	for p in "${pids[@]}"; do wait "$p" || fail "$op of subdirectories"; done
	want=$([[ $op == make ]] && echo 122 || echo 2)
	for n in "${NODES[@]}"; do
		wait_for 5 nlink_is "$n" "$want" ||
			fail "node $n: nlink of ns/sub $(stat -c %h "$(mnt "$n")/ns/sub"), want $want"
	done
done
[[ $(pg_psql -At -c "SELECT nlink FROM inodes i JOIN dentries d ON d.ino = i.ino WHERE d.name = 'sub'::bytea") == 2 ]] ||
	fail "the store's nlink of ns/sub is not 2"

log "write on A, close, read on B and C"
T head -c $((3 * MIB + 12345)) /dev/urandom >"$TMP/data"
T cp "$TMP/data" "$(mnt a)/ns/file"
for n in b c; do
	T cmp "$TMP/data" "$(mnt "$n")/ns/file" ||
		fail "node $n does not read what A wrote"
done

log "rename on B, rmdir on C: seen from the other nodes"
mkdir "$(mnt a)/ns/dir"
mv "$(mnt b)/ns/file" "$(mnt b)/ns/renamed"
for n in a c; do
	wait_for 5 test -e "$(mnt "$n")/ns/renamed" ||
		fail "node $n does not see the rename"
	wait_for 5 test ! -e "$(mnt "$n")/ns/file" ||
		fail "node $n still sees the old name"
	T cmp "$TMP/data" "$(mnt "$n")/ns/renamed" ||
		fail "node $n reads the renamed file wrong"
done
rmdir "$(mnt c)/ns/dir"
for n in a b; do
	wait_for 5 test ! -e "$(mnt "$n")/ns/dir" ||
		fail "node $n still sees the removed directory"
done

log "a file B grows and shrinks reads whole on A and C after a listing"
# A and C hold the file's inode from a read; a listing (readdirplus)
# then gave the kernel that inode's old size with fresh attributes, and
# every read stopped there: a short read, or the old bytes
mkdir "$(mnt a)/ns/grow"
for size in 4095 100001 400007 70000; do
	T head -c "$size" /dev/urandom >"$TMP/grow"
	T cat "$TMP/grow" >"$(mnt b)/ns/grow/f" || fail "write of $size on B"
	for n in a c; do
		T ls -l "$(mnt "$n")/ns/grow" >/dev/null
		T cmp "$TMP/grow" "$(mnt "$n")/ns/grow/f" ||
			fail "node $n reads ns/grow/f wrong after B wrote $size bytes"
	done
done

log "a descriptor A opened before B rewrote the file reads one content whole"
# A's first read loads the block map of B's content; the size it read
# at the open made it 300000 bytes: B's 200000 and 100000 zeros
T head -c 300000 /dev/urandom >"$TMP/old"
T head -c 200000 /dev/urandom >"$TMP/new"
T cat "$TMP/old" >"$(mnt a)/ns/grow/g"
T python3 - "$(mnt a)/ns/grow/g" "$(mnt b)/ns/grow/g" "$TMP/old" \
	"$TMP/new" <<'EOF' || fail "node a's descriptor reads bytes never written"
import os, sys
import time
on_a, on_b, old, new = sys.argv[1:]
old, new = open(old, "rb").read(), open(new, "rb").read()
fd = os.open(on_a, os.O_RDONLY)
with open(on_b, "wb") as f:
    f.write(new)
time.sleep(0.5)  # B's change notification reaches A's kernel
got = os.pread(fd, 400000, 0)
os.close(fd)
sys.exit(0 if got in (old, new) else 1)
EOF

log "a descriptor that read the old blocks, collected since, reads on"
# A reads through its descriptor and keeps that block map; B rewrites
# the file, and A's GC collects its copies of the old objects: A's read
# found them gone (EIO). It now reads the map again, and B's content.
T cat "$TMP/old" >"$(mnt a)/ns/grow/h"
T python3 - "$(mnt a)/ns/grow/h" "$(mnt b)/ns/grow/h" "$TMP/old" \
	"$TMP/new" "$(mnt a)/.tally/ctl" <<'EOF' || fail "node a's descriptor fails or reads bytes never written"
import os, sys
on_a, on_b, old, new, ctl = sys.argv[1:]
old, new = open(old, "rb").read(), open(new, "rb").read()
fd = os.open(on_a, os.O_RDONLY)
assert os.pread(fd, 400000, 0) == old
with open(on_b, "wb") as f:
    f.write(new)
with open(ctl, "w") as f:
    f.write("gc grace=0\n")
os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
got = os.pread(fd, 400000, 0)
os.close(fd)
sys.exit(0 if got in (old, new) else 1)
EOF

log "a file A holds open, rewritten by B, linked by A into another namespace"
# the copy took the size of A's view (300000) and the blocks B committed
# (200000 bytes): B's content and 100000 zeros, on every node
mkdir "$(mnt a)/xl"
T cat "$TMP/old" >"$(mnt a)/ns/grow/x"
T python3 - "$(mnt a)/ns/grow/x" "$(mnt b)/ns/grow/x" "$(mnt a)/xl/x" \
	"$TMP/new" <<'EOF' || fail "node a's link of a file B rewrote"
import os, sys, time
on_a, on_b, copy, new = sys.argv[1:]
new = open(new, "rb").read()
fd = os.open(on_a, os.O_RDWR)
os.pread(fd, 400000, 0)
with open(on_b, "wb") as f:
    f.write(new)
time.sleep(0.5)  # B's change notification reaches A
os.link(on_a, copy)
os.close(fd)
EOF
for n in a b c; do
	T cmp "$TMP/new" "$(mnt "$n")/xl/x" ||
		fail "node $n reads the copy of a file B rewrote wrong"
done

log "a name B makes in a directory A made (A knows it whole) is seen on A"
mkdir "$(mnt a)/ns/known"
[[ ! -e $(mnt a)/ns/known/new ]] || fail "ns/known/new exists before it is made"
echo new >"$(mnt b)/ns/known/new" || fail "create on B in A's directory"
wait_for 5 test -e "$(mnt a)/ns/known/new" ||
	fail "node a never sees the name B made in a directory A made"
[[ $(cat "$(mnt a)/ns/known/new") == new ]] || fail "node a reads ns/known/new wrong"
echo mine >"$(mnt a)/ns/known/mine" || fail "create on A after B's"
[[ $(cat "$(mnt c)/ns/known/mine") == mine ]] || fail "node c reads ns/known/mine wrong"

# refs PATH: the reference counts of a file's objects (user.tally.refs)
refs() { T getfattr --only-values -n user.tally.refs "$1" 2>/dev/null; }
objects_of() { T getfattr --only-values -n user.tally.objects "$1" 2>/dev/null; }

log "ln across namespaces on A, rm of the source on B"
mkdir "$(mnt a)/ns2"
T head -c $((MIB / 2)) /dev/urandom >"$TMP/small"
T cp "$TMP/small" "$(mnt a)/ns/src"
ln "$(mnt a)/ns/src" "$(mnt a)/ns2/dst"
obj=$(objects_of "$(mnt a)/ns2/dst")
obj=${obj%%@*} # NAME@SHARD
[[ $obj =~ ^[0-9a-f]{32} ]] || fail "no object name for ns2/dst: '$obj'"
# refs_are N PATH: wait_for's test (evaluated at each try)
refs_are() { [[ $(refs "$2") == "$1" ]]; }
for n in a b c; do
	wait_for 5 refs_are 2 "$(mnt "$n")/ns2/dst" ||
		fail "node $n: refs of the linked file $(refs "$(mnt "$n")/ns2/dst"), want 2"
done
rm "$(mnt b)/ns/src"
for n in a b c; do
	wait_for 5 refs_are 1 "$(mnt "$n")/ns2/dst" ||
		fail "node $n: refs after rm on B $(refs "$(mnt "$n")/ns2/dst"), want 1"
	T cmp "$TMP/small" "$(mnt "$n")/ns2/dst" || fail "node $n: ns2/dst"
done
bucket_has "$obj" ||
	fail "the object $obj is not in the bucket: $(bucket_keys | head -5)"
rm "$(mnt c)/ns2/dst"
# nothing names it: gone from the bucket after the deletion delay (2 s)
wait_for 30 bucket_lacks "$obj" ||
	fail "the object stays in the bucket once nothing names it"

log "unlinked-but-open on A while B removes the last name, GC between"
T head -c $((2 * MIB + 777)) /dev/urandom >"$TMP/held"
T cp "$TMP/held" "$(mnt a)/ns/held"
exec 7<"$(mnt a)/ns/held"
rm "$(mnt b)/ns/held"
wait_for 5 test ! -e "$(mnt a)/ns/held" || fail "node a still sees the name"
report=$(ctl_report "gc grace=0" "$(mnt b)") || fail "gc failed"
T cmp "$TMP/held" /dev/fd/7 || fail "node a cannot read its unlinked open file"
exec 7<&-
# its rows go with the last hold: nothing left with no link
orphans() { pg_psql -At -c 'SELECT count(*) FROM inodes WHERE nlink = 0'; }
no_orphans() { [[ $(orphans) == 0 ]]; }
wait_for 5 no_orphans || fail "$(orphans) unlinked inode(s) left after the close"

# workload NODE SECONDS: copies of shared seeds (the same objects on every
# node), links across namespaces, copies inside the mount, removals
workload() {
	local n=$1 end=$((SECONDS + $2)) i=0 m

	m=$(mnt "$n")
	mkdir -p "$m/ns/w_$n" "$m/ns2/w_$n" || return 1
	while ((SECONDS < end)); do
		i=$((i + 1))
		cp "$TMP/seed$((i % 3))" "$m/ns/w_$n/f$i" || return 1
		ln "$m/ns/w_$n/f$i" "$m/ns2/w_$n/l$i" || return 1
		cp "$m/ns2/w_$n/l$i" "$m/ns/w_$n/c$i" || return 1
		if ((i > 3)); then
			rm "$m/ns/w_$n/f$((i - 3))" "$m/ns2/w_$n/l$((i - 3))" \
				"$m/ns/w_$n/c$((i - 3))" || return 1
		fi
	done
	echo "$i" >"$TMP/rounds_$n"
}
for s in 0 1 2; do
	T head -c $((2 * MIB + s * 1000)) /dev/urandom >"$TMP/seed$s"
done

log "three nodes link, copy and unlink shared objects for ${WORK_SECONDS:=60} s"
pids=()
for n in "${NODES[@]}"; do
	workload "$n" "$WORK_SECONDS" 2>"$TMP/work_$n.err" &
	pids+=($!)
done
for i in "${!pids[@]}"; do
	wait "${pids[$i]}" ||
		fail "the workload on node ${NODES[$i]} failed: $(head -3 "$TMP/work_${NODES[$i]}.err")"
done
log "rounds: $(cat "$TMP"/rounds_*| tr '\n' ' ')"
for n in "${NODES[@]}"; do
	for f in "$(mnt "$n")"/ns/w_"$n"/c*; do
		T cmp "$TMP/seed$(( ${f##*/c} % 3 ))" "$f" || fail "$f"
	done
done

report=$(ctl_report "verify" "$(mnt a)") || fail "verify failed"
assert_match "verify: nothing missing on a node" $'missing: 0\n' "$report"
assert_match "verify: nothing corrupt" $'corrupt: 0\n' "$report"
report=$(ctl_report "verify remote" "$(mnt b)") || fail "verify remote failed"
assert_match "verify remote: nothing missing" $'missing: 0\n' "$report"

log "every node unmounted: tallyfsck finds no drift"
for n in "${NODES[@]}"; do umount_fs "$(mnt "$n")"; done
FSCK_OUT=$(T "$TALLYFSCK" -o "meta=$PG_URI" "$TMP/cache_a" 2>&1) ||
	fail "tallyfsck after the workload: $FSCK_OUT"
grep -q '^status: clean' <<<"$FSCK_OUT" || fail "tallyfsck: $FSCK_OUT"
FSCK_OUT=$(T "$TALLYFSCK" -o "meta=$PG_URI,remote_endpoint=$S3_ENDPOINT" \
	"$TMP/cache_b" 2>&1) || true
grep -q '^bucket_missing: 0$' <<<"$FSCK_OUT" ||
	fail "objects missing from the bucket: $FSCK_OUT"

# tolerant NODE SECONDS: writes and reads that may fail with EIO (and
# nothing else) while the database restarts; what was written reads back
tolerant() {
	local n=$1 end=$((SECONDS + $2)) i=0 m

	m=$(mnt "$n")
	mkdir -p "$m/ns/t_$n" 2>>"$TMP/tol_$n.err"
	while ((SECONDS < end)); do
		i=$((i + 1))
		if cp "$TMP/seed$((i % 3))" "$m/ns/t_$n/f$i" 2>>"$TMP/tol_$n.err"; then
			echo "f$i $((i % 3))" >>"$TMP/tol_$n.ok"
		fi
		ls "$m/ns/t_$n" >/dev/null 2>>"$TMP/tol_$n.err"
	done
}

log "PostgreSQL restarted (fast) under load: EIO or retried, the mounts go on"
for n in a b; do mount_node "$n"; done
pids=()
for n in a b; do
	: >"$TMP/tol_$n.err"
	: >"$TMP/tol_$n.ok"
	tolerant "$n" 10 &
	pids+=($!)
done
sleep 3
pg_restart fast || fail "pg_restart"
for p in "${pids[@]}"; do wait "$p"; done
for n in a b; do
	if grep -qv 'Input/output error' "$TMP/tol_$n.err"; then
		fail "node $n: errors other than EIO: $(head -3 "$TMP/tol_$n.err")"
	fi
	[[ -s $TMP/tol_$n.ok ]] || fail "node $n wrote nothing"
	while read -r f s; do
		T cmp "$TMP/seed$s" "$(mnt "$n")/ns/t_$n/$f" ||
			fail "node $n: $f, written while the database restarted"
	done <"$TMP/tol_$n.ok"
	log "node $n: $(wc -l <"$TMP/tol_$n.ok") files written," \
		"$(grep -c . "$TMP/tol_$n.err") errors (EIO)"
done
# no remount: both go on
echo after >"$(mnt a)/ns/after" || fail "node a after the restart"
wait_for 5 grep -qx after "$(mnt b)/ns/after" ||
	fail "node b does not read what a wrote after the restart"

log "kill -9 of node C mid-flush: the others go on, its session expires"
mount_node c
T head -c $((8 * MIB)) /dev/urandom >"$TMP/big"
dd if="$TMP/big" of="$(mnt c)/ns/big" bs=1M 2>/dev/null &
ddpid=$!
sleep 0.3
kill9_fs "$(mnt c)"
wait "$ddpid" 2>/dev/null || true
echo still >"$(mnt b)/ns/still" || fail "node b after the kill"
# C's directory is free, the store is not: tallyfsck refuses
rc=0
out=$(T "$TALLYFSCK" -o "meta=$PG_URI" "$TMP/cache_c" 2>&1) || rc=$?
[[ $rc == 2 && $out == *"the store is mounted: "*" live session(s)"* ]] ||
	fail "tallyfsck while nodes are mounted: exit $rc: $out"
T cmp "$TMP/data" "$(mnt a)/ns/renamed" || fail "node a after the kill"
nodes_seen() { status_get nodes "$(mnt a)" | python3 -c '
import json, sys
print(len(json.load(sys.stdin)))'; }
two_nodes() { [[ $(nodes_seen) == 2 ]]; }
wait_for 20 two_nodes ||
	fail "the killed node's session did not expire: $(nodes_seen) nodes"

log "min_nodes_reporting=3 with two nodes: GC collects nothing"
umount_fs "$(mnt a)"
mount_node a -o min_nodes_reporting=3
report=$(ctl_report "gc grace=0" "$(mnt a)") || fail "gc failed"
assert_match "gc blocked" $'blocked: yes\n' "$report"
assert_match "gc collects nothing" $'collected: 0\n' "$report"
umount_fs "$(mnt a)"
mount_node a

log "what the killed node leaked goes only after the grace period"
report=$(ctl_report "gc" "$(mnt a)") || fail "gc failed"
assert_match "gc with its grace collects nothing" $'collected: 0\n' "$report"
assert_match "gc with its grace deletes no key" 'remote_queued: 0$' "$report"
report=$(ctl_report "gc grace=0" "$(mnt a)") || fail "gc grace=0 failed"
assert_match "gc lists the whole bucket" $'remote_listing: whole\n' "$report"
log "$(grep -E '^(collected|remote_unreferenced|remote_queued):' <<<"$report" |
	tr '\n' ' ')"
# the keys queued go after remote_delete_delay (2 s)
sleep 4
for n in a b; do umount_fs "$(mnt "$n")"; done
FSCK_OUT=$(T "$TALLYFSCK" -o "meta=$PG_URI,remote_endpoint=$S3_ENDPOINT" \
	"$TMP/cache_a" 2>&1) || fail "tallyfsck after the kill: $FSCK_OUT"
assert_match "no key of the bucket is missing" $'bucket_missing: 0\n' "$FSCK_OUT"
assert_match "no key of the bucket is left over" $'bucket_orphans: 0\n' "$FSCK_OUT"

log "SIGSTOP of node C past stale_after, GC, SIGCONT: it registers again"
# C's session would expire only after 25 s: the prune of its report is
# what takes it for dead
mount_node a -o report_interval=1,stale_after=3
mount_node b -o report_interval=1
mount_node c -o report_interval=1,heartbeat=5
# a node that has not reported yet blocks GC (its flushes in flight are
# known to nothing): a session row as a mount makes it, before its first
# report a second later (made by hand: a mount of C reports before a
# cycle on A begins when the machine is slow)
now=$(date +%s)
pg_psql -c "INSERT INTO sessions(id, host, pid, started, heartbeat,
	expires) VALUES (4242, 'unreported', 1, $now, $now, $((now + 60)))" ||
	fail "cannot add a session by hand"
report=$(ctl_report "gc grace=0" "$(mnt a)") || fail "gc failed"
assert_match "a node without a report blocks gc" $'blocked: yes\n' "$report"
pg_psql -c "DELETE FROM sessions WHERE id = 4242" ||
	fail "cannot remove the session made by hand"
sleep 2
T head -c $((12 * MIB)) /dev/urandom >"$TMP/stopped"
dd if="$TMP/stopped" of="$(mnt c)/ns/stopped" bs=64k 2>/dev/null &
ddpid=$!
sleep 0.5
cpid=${DAEMON_PID[$(mnt c)]}
kill -STOP "$cpid"
sleep 5
report=$(ctl_report "gc grace=0" "$(mnt a)") || fail "gc failed"
assert_match "gc prunes the stopped node" $'stale_nodes: [1-9]' "$report"
kill -CONT "$cpid"
wait "$ddpid" || fail "the write on the stopped node failed"
T cmp "$TMP/stopped" "$(mnt a)/ns/stopped" ||
	fail "node a reads wrong what the stopped node wrote"
grep -q 'registered again as node' "$DLOG" ||
	fail "the stopped node did not register again"
sleep 3 # deletions queued by the GC go (remote_delete_delay 2 s)
for n in a b c; do umount_fs "$(mnt "$n")"; done
FSCK_OUT=$(T "$TALLYFSCK" -o "meta=$PG_URI,remote_endpoint=$S3_ENDPOINT" \
	"$TMP/cache_c" 2>&1) || fail "tallyfsck after SIGSTOP: $FSCK_OUT"
assert_match "nothing committed names a collected object" \
	$'bucket_missing: 0\n' "$FSCK_OUT"

log "kernel caches of 60 s: changes on one node reach the others' kernels"
for n in a b; do mount_node "$n" -o entry_timeout=60,attr_timeout=60; done
mkdir -p "$(mnt a)/ns/watch"
echo one >"$(mnt a)/ns/watch/f"
# both kernels cache the name, its attributes and (b) a missing name
for n in a b; do
	ls -l "$(mnt "$n")/ns/watch/f" >/dev/null
	test -e "$(mnt "$n")/ns/watch/g" && fail "g exists already"
done
T cat "$(mnt b)/ns/watch/f" >/dev/null
mv "$(mnt a)/ns/watch/f" "$(mnt a)/ns/watch/g"
wait_for 5 test -e "$(mnt b)/ns/watch/g" ||
	fail "node b's kernel still caches that g does not exist"
wait_for 5 test ! -e "$(mnt b)/ns/watch/f" ||
	fail "node b's kernel still caches the old name"
echo longer-content >"$(mnt a)/ns/watch/g"
size_is() { [[ $(stat -c %s "$(mnt b)/ns/watch/g") == 15 ]]; }
wait_for 5 size_is || fail "node b's kernel still caches the old size"
[[ $(cat "$(mnt b)/ns/watch/g") == longer-content ]] ||
	fail "node b reads the old content"
for n in a b; do umount_fs "$(mnt "$n")"; done
