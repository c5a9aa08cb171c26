#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The README's tour runs as pasted. The tour is taken from README.md as
# it stands (the sh block after "A short tour"), with the demo's
# directory (/tmp/tallyfs-demo) and the build directory moved to this
# scenario's own; every line must succeed, as a reader's shell with
# `set -e` would run it, on a mount made as tools/demo.sh makes it.
# Then what it claims is checked: the branch, the link's shared objects,
# the rebalance and sweep, and a clean tallyfsck at the end.
source "$(dirname "$0")/lib.sh"

tour=$TMP/tour.sh
awk '/^A short tour/ { want = 1 }
	want && /^```sh$/ { on = 1; next }
	on && /^```$/ { exit }
	on { print }' "$TALLY_SRC/README.md" >"$tour"
[[ -s $tour ]] || fail "README.md has no tour"
grep -q '^M=/tmp/tallyfs-demo/mnt; B=$PWD/build$' "$tour" ||
	fail "the tour no longer starts with M=/tmp/tallyfs-demo/mnt; B=\$PWD/build"
log "the tour: $(wc -l <"$tour") lines"

# the demo's set-up (tools/demo.sh), in $TMP
demo=$TMP/demo
mkdir -p "$demo/mnt"
mount_fs "$demo/store" "$demo/mnt"
mkdir "$demo/mnt/main"
echo "hello from tallyfs" >"$demo/mnt/main/hello.txt"

# the paths moved, nothing else
sed -i -e "s#^M=/tmp/tallyfs-demo/mnt; B=\$PWD/build\$#M=$demo/mnt; B=$TALLY_BUILD#" \
	-e "s#/tmp/tallyfs-demo/#$demo/#g" "$tour"
grep -q /tmp/tallyfs-demo "$tour" && fail "a path of the demo was left in the tour"

out=$TMP/tour.out
rc=0
(cd "$TMP" && T bash -e -o pipefail -x "$tour") >"$out" 2>&1 || rc=$?
if ((rc != 0)); then
	tail -n 30 "$out" >&2
	fail "the tour failed (exit $rc) at: $(grep '^+ ' "$out" | tail -n 1)"
fi
# the last line unmounted the demo and checked its store
is_mounted "$demo/mnt" && fail "the tour's last line did not unmount"
grep -qx "status: clean" "$out" ||
	fail "tallyfsck did not find the store clean: $(tail -n 5 "$out")"

# what the tour said it did, seen on a fresh mount of the store
mount_fs "$demo/store" "$demo/mnt"
[[ -d $demo/mnt/dev/fuse3 ]] || fail "the branch dev lacks the copied tree"
[[ -e $demo/mnt/main/hello.txt ]] && fail "main/hello.txt was removed by the tour"
assert_eq "the link made in dev" "hello from tallyfs" \
	"$(cat "$demo/mnt/dev/hello2.txt")"
assert_eq "the branch's own copy" "hello from tallyfs" \
	"$(cat "$demo/mnt/dev/hello.txt")"
# the sweep repointed the references: every object is in one of the shards
objs=$(objects "$demo/mnt/dev/hello2.txt")
[[ -n $objs ]] || fail "dev/hello2.txt names no object"
log "tour ran: $(grep -c '^+ ' "$out") commands"
