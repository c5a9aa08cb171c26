#!/bin/bash
# SPDX-License-Identifier: MIT
# GC through the control file of a real mount: a leaked object file is
# marked, kept through its grace period and collected after it; a dry run
# changes nothing; referenced objects are never collected; the status
# document carries last_gc and gc_log; bad gc commands are EINVAL; repair
# runs online. The store checks clean at the end.
SCN_TIMEOUT=180
source "$(dirname "$0")/lib.sh"

LEAK=cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd
mount_fs
mkdir "$MNT/main" "$MNT/main/dir"
rand_file "$TMP/f" $((2 * MIB + 10))
T cp "$TMP/f" "$MNT/main/f"
drain
live=$(object_count)
assert_eq "objects of the file" 3 "$live"
mkdir -p "$STORE/shards/0/cd"
printf 'leaked bytes' >"$STORE/shards/0/cd/$LEAK"

report=$(T bash -c 'exec 3<>"$1"; printf "gc\n" >&3; cat <&3' _ \
	"$MNT/.tally/ctl")
assert_match "gc report: checked" $'checked: 4\n' "$report"
assert_match "gc report: preserved" $'preserved: 1\n' "$report"
assert_match "gc report: collected" $'collected: 0\n' "$report"
assert_exists "$STORE/shards/0/cd/$LEAK"

report=$(T bash -c 'exec 3<>"$1"; printf "gc dry-run grace=0\n" >&3;
	cat <&3' _ "$MNT/.tally/ctl")
assert_match "dry run says it would collect" $'collected: 1\n' "$report"
assert_exists "$STORE/shards/0/cd/$LEAK"

ctl "gc grace=0" || fail "gc grace=0 failed"
assert_absent "$STORE/shards/0/cd/$LEAK"
assert_eq "referenced objects after gc" "$live" "$(object_count)"
assert_same_content "$TMP/f" "$MNT/main/f"

last=$(status_json | python3 -c '
import json, sys
d = json.load(sys.stdin)
print(d["last_gc"]["collected"], d["last_gc"]["bytes_freed"], len(d["gc_log"]))')
assert_eq "status last_gc (collected, bytes_freed, events)" "1 12 3" "$last"

# pins: the objects of a pinned file outlive it, through GC cycles
rand_file "$TMP/p" $((MIB + 1))
T cp "$TMP/p" "$MNT/main/p"
ctl "pin main/p" || fail "pin failed"
pinned=$(objects "$MNT/main/p")
T rm "$MNT/main/p"
ctl "gc grace=0" || fail "gc grace=0 failed"
for h in $pinned; do
	assert_exists "$STORE/shards/0/${h:0:2}/$h"
done
assert_eq "pins in status" "['main/p']" "$(status_json | python3 -c '
import json, sys; print(json.load(sys.stdin)["pins"])')"
assert_eq "pin of a missing path" ENOENT "$(ctl_errno $'pin main/nope\n')"
assert_eq "pin escaping with .." EINVAL "$(ctl_errno $'pin main/../x\n')"
assert_eq "pin of a directory" EINVAL "$(ctl_errno $'pin main/dir\n')"
umount_fs
fsck_store "$STORE"
assert_eq "tallyfsck with pinned objects ($FSCK_OUT)" 0 "$FSCK_RC"
mount_fs
ctl "unpin main/p" || fail "unpin failed"
assert_eq "unpin twice" ENOENT "$(ctl_errno $'unpin main/p\n')"
ctl "gc grace=0" || fail "gc grace=0 failed"
for h in $pinned; do
	assert_absent "$STORE/shards/0/${h:0:2}/$h"
done

assert_eq "gc bogus" EINVAL "$(ctl_errno $'gc bogus\n')"
assert_eq "gc grace=x" EINVAL "$(ctl_errno $'gc grace=x\n')"
assert_eq "repair with an argument" EINVAL "$(ctl_errno $'repair now\n')"
ctl repair || fail "repair failed"
umount_fs
fsck_store "$STORE"
assert_eq "tallyfsck exit status after gc ($FSCK_OUT)" 0 "$FSCK_RC"

# an object unlink that fails (TALLYFS_FAULT=unlink:1:EIO) leaks the file:
# the rm succeeds all the same, the other objects go, GC collects the leak
TALLYFS_FAULT=unlink:1:5 mount_fs
grep -q 'fault injection: unlink 1 fails with Input/output error' "$DLOG" ||
	fail "the daemon did not arm the unlink fault"
rand_file "$TMP/u" $((2 * MIB + 10))
T cp "$TMP/u" "$MNT/main/u"
doomed=$(objects "$MNT/main/u")
assert_eq "objects of the doomed file" 3 "$(wc -w <<<"$doomed")"
before=$(object_count)
T rm "$MNT/main/u" || fail "rm failed under an unlink fault"
assert_absent "$MNT/main/u"
drain # the deletions wait for the rm's commit to be durable
left=0
for h in $doomed; do
	[[ -e $STORE/shards/0/${h:0:2}/$h ]] && left=$((left + 1))
done
assert_eq "object files left by the failed unlink" 1 "$left"
assert_eq "object files after the rm" $((before - 2)) "$(object_count)"
report=$(ctl_report "gc grace=0") || fail "gc grace=0 failed"
assert_match "gc collects the leak" $'collected: 1\n' "$report"
for h in $doomed; do
	assert_absent "$STORE/shards/0/${h:0:2}/$h"
done
assert_eq "object files after gc" $((before - 3)) "$(object_count)"
umount_fs
fsck_store "$STORE"
assert_eq "tallyfsck after the unlink fault ($FSCK_OUT)" 0 "$FSCK_RC"
log "ok"
