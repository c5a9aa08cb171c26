#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The intent log of a SQLite store (core/meta/meta_ilog.c): what was
# answered before kill -9 and was still only in the log is there after
# the remount; a log with a damaged or cut last record mounts and applies
# what came before it; a crash during the replay replays again to the
# same state; a log of another store is refused.
#
# -o group_ms=600000 keeps the whole workload in one open group, so that
# kill -9 finds every operation in the log and none in the database.
source "$(dirname "$0")/lib.sh"

OPTS=(-o group_ms=600000)
mount_fs "$STORE" "$MNT" "${OPTS[@]}"
mkdir "$MNT/main"

# A workload of every kind of metadata operation, in order; the model of
# what it leaves is written once it returned. Its last operation is a
# mkdir of "last", so that a log cut at its last record is told apart.
model=$TMP/model.json
# state(DIR): each name under DIR with its mode, link count, and for a
# file its bytes and xattr user.k (the model, and what a check reads)
cat >"$TMP/state.py" <<'EOF'
import os
def state(d):
    got = {}
    for root, dirs, files in os.walk(d):
        for n in dirs + files:
            p = os.path.join(root, n)
            st = os.lstat(p)
            e = {"mode": st.st_mode, "nlink": st.st_nlink}
            if os.path.isfile(p) and not os.path.islink(p):
                e["data"] = open(p).read()
                try:
                    e["xattr"] = os.getxattr(p, "user.k").decode()
                except OSError:
                    pass
            got[os.path.relpath(p, d)] = e
    return got
EOF
T /usr/bin/python3 - "$MNT/main" "$model" "$TMP/state.py" <<'EOF'
import json, os, sys
d, out, state_py = sys.argv[1], sys.argv[2], sys.argv[3]
for i in range(200):
    with open(f"{d}/f{i}", "w") as f:
        f.write(f"file {i}\n")
os.mkdir(f"{d}/sub")
# every file keeps a second name: no object goes (a deletion would
# make the group commit before the sync it waits for)
for i in range(200):
    os.link(f"{d}/f{i}", f"{d}/sub/l{i}")
for i in range(1, 200, 3):
    os.unlink(f"{d}/f{i}")
for i in range(2, 200, 9):
    os.rename(f"{d}/f{i}", f"{d}/sub/r{i}")
for i in range(0, 200, 5):
    p = f"{d}/f{i}"
    if os.path.exists(p):
        os.chmod(p, 0o600)
        os.setxattr(p, "user.k", f"v{i}".encode())
os.symlink("f0", f"{d}/sym")
# empty files and a symlink: changes and removals with no data
os.mkdir(f"{d}/empty")
for i in range(60):
    open(f"{d}/empty/e{i}", "w").close()
    os.chmod(f"{d}/empty/e{i}", 0o640)
for i in range(0, 60, 2):
    os.unlink(f"{d}/empty/e{i}")
os.symlink("e1", f"{d}/empty/s")
os.unlink(f"{d}/empty/s")
os.mkdir(f"{d}/gone")
os.rmdir(f"{d}/gone")
# the closes' flushes append their records when they finish: all of
# them before the record of "last", which parts 3 and 4 damage (a
# flush after it would be cut off with it); the status is read in the
# open group, without committing it
import json, time
status = os.path.join(os.path.dirname(d), ".tally", "status")
for _ in range(1200):
    if json.load(open(status))["pending_flushes"] == 0:
        break
    time.sleep(0.05)
else:
    sys.exit("flushes still pending after 60 s")
os.mkdir(f"{d}/last")
exec(open(state_py).read())
json.dump(state(d), open(out, "w"), sort_keys=True)
EOF

# everything answered is in the log, nothing in a committed group
# (its header: 128 bytes, core/meta/meta_ilog.c)
(($(stat -c %s "$STORE/meta.ilog") > 128)) ||
	fail "the intent log is empty after the workload"
kill9_fs "$MNT"

check() { # check STORE MNT [without-last]
	local store=$1 m=$2 without=${3:-}

	T /usr/bin/python3 - "$m/main" "$model" "$without" "$TMP/state.py" <<-'EOF'
	import json, os, sys
	d, model, without = sys.argv[1], json.load(open(sys.argv[2])), sys.argv[3]
	exec(open(sys.argv[4]).read())
	if without:
	    model.pop("last")
	got = state(d)
	if got != model:
	    missing = sorted(set(model) - set(got))[:5]
	    extra = sorted(set(got) - set(model))[:5]
	    diff = [k for k in model if k in got and model[k] != got[k]][:5]
	    sys.exit(f"state differs: missing {missing}, extra {extra}, "
	             f"changed {diff}")
	EOF
}

replayed() { # the count the mount of $1 logged
	sed -n 's/.*intent log: \([0-9]*\) operation(s) replayed.*/\1/p' \
		"$DLOG" | tail -n 1
}

# copies of the crashed store for the damaged logs, before any replay
cp -a "$STORE" "$TMP/flipped"
cp -a "$STORE" "$TMP/cut"
cp -a "$STORE" "$TMP/foreign"
cp -a "$STORE" "$TMP/again"
cp -a "$STORE" "$TMP/gap"

# 1. the log whole: every answered operation comes back
mount_fs "$STORE" "$MNT" "${OPTS[@]}"
n=$(replayed)
# (a group commits at 256 operations too: the tail of the workload)
((${n:-0} > 0)) || fail "expected the workload replayed, the log says '${n:-}'"
check "$STORE" "$MNT"
log "kill -9: $n operations replayed, the state is the model's"
umount_fs "$MNT"
T "$TALLYFSCK" "$STORE" >"$TMP/fsck.out" || true
grep -qx "status: clean" "$TMP/fsck.out" ||
	fail "tallyfsck after the replay: $(grep -v ': 0$' "$TMP/fsck.out")"
# a second mount replays nothing (the log was applied, then emptied)
mount_fs "$STORE" "$MNT" "${OPTS[@]}"
check "$STORE" "$MNT"
umount_fs "$MNT"
# a mount of a store whose log is empty and whose database applied
# records before: what it answers goes into the log after them, and a
# kill -9 gives it back
applied=$(T sqlite3 "$STORE/meta.db" \
	"SELECT value FROM config WHERE key = 'ilog_seq'")
((${applied:-0} > 0)) || fail "no ilog_seq in the database after a replay"
mount_fs "$STORE" "$MNT" "${OPTS[@]}"
mkdir "$MNT/main/after-clean"
echo x >"$MNT/main/after-clean/f"
ln "$MNT/main/after-clean/f" "$MNT/main/after-clean/g"
first=$(T /usr/bin/python3 -c '
import struct, sys
with open(sys.argv[1], "rb") as f:
    f.seek(128)
    h = f.read(8)
print(struct.unpack("<Q", h)[0] if len(h) == 8 else 0)' "$STORE/meta.ilog")
((first == applied + 1)) ||
	fail "the log's first record after a clean remount is $first, not $((applied + 1))"
kill9_fs "$MNT"
mount_fs "$STORE" "$MNT" "${OPTS[@]}"
n=$(replayed)
[[ -d $MNT/main/after-clean && -f $MNT/main/after-clean/g ]] ||
	fail "operations after a clean remount lost to kill -9 (replayed: ${n:-none})"
assert_eq "links of f after the replay" 2 "$(stat -c %h "$MNT/main/after-clean/f")"
umount_fs "$MNT"
log "kill -9 after a clean remount: $n operations replayed"

# 2. a crash during the replay, twice: once before the replay's commit
# (50 records applied), once after it and before the log is emptied;
# the mount after them gives the same state
died() { # died N: a mount killed at point N of the replay
	local rc=0

	TALLYFS_FAULT=replay:$1:9 T "$TALLYFS" -f "${OPTS[@]}" "$TMP/again" \
		"$MNT" >>"$DLOG" 2>&1 || rc=$?
	is_mounted "$MNT" && fail "mounted although killed during the replay"
	((rc == 137)) || fail "a mount killed at replay point $1: exit $rc"
}
died 50
died 0
mount_fs "$TMP/again" "$MNT" "${OPTS[@]}"
check "$TMP/again" "$MNT"
umount_fs "$MNT"
T "$TALLYFSCK" "$TMP/again" >"$TMP/fsck.out" || true
grep -qx "status: clean" "$TMP/fsck.out" ||
	fail "tallyfsck after a crashed replay: $(grep -v ': 0$' "$TMP/fsck.out")"
log "killed during the replay, before and after its commit: the same state"

# the record of the workload's last operation: where the name 'last'
# is in the log (records of upkeep may follow it)
at=$(/usr/bin/python3 - "$TMP/cut/meta.ilog" <<'EOF'
import sys
# names are bound as blobs: x'6c617374' is 'last'
print(open(sys.argv[1], "rb").read().rindex(b"x'6c617374'"))
EOF
) || fail "no record of the mkdir of 'last' in the log"

# 3. a byte of that record flipped: everything before it applies
printf '\xff' | dd of="$TMP/flipped/meta.ilog" bs=1 seek=$((at + 1)) \
	conv=notrunc status=none
mount_fs "$TMP/flipped" "$MNT" "${OPTS[@]}"
grep -q "intent log: [0-9]* operation(s) replayed, [1-9][0-9]* byte(s)" \
	"$DLOG" || fail "a flipped record: $(grep 'intent log' "$DLOG" | tail -1)"
check "$TMP/flipped" "$MNT" without-last
umount_fs "$MNT"
log "a damaged record: the records before it replayed, it and the rest ignored"

# 4. the log cut inside that record (a torn write)
truncate -s $((at + 3)) "$TMP/cut/meta.ilog"
mount_fs "$TMP/cut" "$MNT" "${OPTS[@]}"
grep -q "intent log: [0-9]* operation(s) replayed, [1-9][0-9]* byte(s)" \
	"$DLOG" || fail "a cut record: $(grep 'intent log' "$DLOG" | tail -1)"
check "$TMP/cut" "$MNT" without-last
umount_fs "$MNT"

# 5. another store's log: refused, the store left as it was
/usr/bin/python3 - "$TMP/foreign/meta.ilog" <<'EOF'
import re, sys
with open(sys.argv[1], "r+b") as f:
    head = f.read(128)
    # another store id of the same length: the header stays 128 bytes;
    # its first digit 1 to 9 (a leading 0 is no store id: a damaged
    # header, another message)
    new = re.sub(rb"store (\d)", lambda m: b"store " +
                 str(int(m.group(1)) % 9 + 1).encode(), head, count=1)
    f.seek(0)
    f.write(new)
EOF
rc=0
T "$TALLYFS" -f "${OPTS[@]}" "$TMP/foreign" "$MNT" >"$TMP/foreign.log" 2>&1 || rc=$?
is_mounted "$MNT" && fail "a store with another store's log was mounted"
((rc != 0)) || fail "a store with another store's log: exit 0"
grep -q "another store's" "$TMP/foreign.log" ||
	fail "no message naming the foreign log: $(cat "$TMP/foreign.log")"
log "another store's log: refused"

# 5b. the first record gone and the rest intact (what a power loss can
# leave: the records of an earlier pass over the log, or of a group
# the database did not keep): not applied, and not called damage
/usr/bin/python3 - "$TMP/gap/meta.ilog" <<'EOF'
import struct, sys
with open(sys.argv[1], "r+b") as f:
    data = f.read()
    seq, n = struct.unpack_from("<QI", data, 128)
    f.seek(0)
    f.write(data[:128] + data[128 + 24 + n:])
    f.truncate()
EOF
mount_fs "$TMP/gap" "$MNT" "${OPTS[@]}"
grep -q "intent log: [1-9][0-9]* byte(s) of intact records that do not follow" \
	"$DLOG" || fail "a log out of sequence: $(grep 'intent log' "$DLOG" | tail -2)"
grep "intent log: 0 operation(s) replayed, 0 byte(s) of a damaged" "$DLOG" \
	>/dev/null || fail "a log out of sequence was applied or called damaged"
umount_fs "$MNT"
log "a log out of sequence: ignored, and said so, not called damage"

# 6. a log rewound by its group commits (core/meta/meta_ilog.c, note 3):
# the records after the last commit lie over older ones, and each
# append's end mark ends the replay there, nothing reported as damaged.
# 600 creates commit groups at 256 operations; the long names of the
# first ones leave records that a short record ends inside of.
mount_fs "$STORE" "$MNT" "${OPTS[@]}"
mkdir "$MNT/main/rewound"
T /usr/bin/python3 - "$MNT/main/rewound" <<'EOF'
import os, sys
d = sys.argv[1]
for i in range(600):
    name = f"f{i}" if i >= 300 else f"a-long-name-for-the-first-cycle-{i:04d}"
    open(os.path.join(d, name), "w").close()
EOF
kill9_fs "$MNT"
mount_fs "$STORE" "$MNT" "${OPTS[@]}"
line=$(grep "intent log: [0-9]* operation(s) replayed" "$DLOG" | tail -n 1)
[[ $line == *" 0 byte(s)"* ]] ||
	fail "a rewound log replayed with a damaged tail: $line"
assert_eq "files after the replay of a rewound log" 600 \
	"$(find "$MNT/main/rewound" -type f | wc -l)"
umount_fs "$MNT"
log "a rewound log: $(replayed) operations replayed up to the end mark"
