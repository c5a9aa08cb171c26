#!/bin/bash
# SPDX-License-Identifier: MIT
# The control files. `branch main dev` clones a namespace: same tree and
# contents, every object's count raised, no object stored, new inodes
# (hard links stay hard links inside the branch), and writes on either side
# are copy-on-write. Bad commands fail with the right errno and change
# nothing. The report of a command is read back from the same fd as
# key: value lines. /.tally/status is JSON with the documented keys.
SCN_TIMEOUT=180
source "$(dirname "$0")/lib.sh"

mount_fs
mkdir -p "$MNT/main/sub/deeper" "$MNT/bystander"
rand_file "$TMP/big" $((2 * MIB + 100))
T cp "$TMP/big" "$MNT/main/big"
printf 'small\n' >"$MNT/main/small"
printf 'deep\n' >"$MNT/main/sub/deeper/file"
T ln "$MNT/main/small" "$MNT/main/sub/small-link"
T ln -s ../big "$MNT/main/sub/big-symlink"
T mkfifo "$MNT/main/sub/fifo"
: >"$MNT/main/empty"
T setfattr -n user.tag -v main "$MNT/main/big"
printf 'other namespace\n' >"$MNT/bystander/file"
drain

# --------------------------------------------------------- status JSON
json=$(status_json)
T python3 -c '
import json, sys
d = json.loads(sys.argv[1])
assert isinstance(d, dict), "not an object"
want = ["namespaces", "inodes", "objects", "bytes_logical", "bytes_stored",
        "dedup_ratio", "pending_flushes", "durable_seq", "block_size"]
missing = [k for k in want if k not in d]
assert not missing, "missing keys: %s" % missing
for k in want:
    assert isinstance(d[k], (int, float)) and not isinstance(d[k], bool), \
        "%s is not a number: %r" % (k, d[k])
' "$json" || fail "status is not the expected JSON: $json"
assert_eq "status block_size" "$MIB" "$(status_get block_size)"
assert_eq "status namespaces" 2 "$(status_get namespaces)"
assert_eq "status objects" 6 "$(status_get objects)"
assert_eq "status pending_flushes after drain" 0 \
	"$(status_get pending_flushes)"
assert_eq "status bytes_logical" $((2 * MIB + 100 + 6 + 5 + 16)) \
	"$(status_get bytes_logical)"
assert_eq "status bytes_stored" $((2 * MIB + 100 + 6 + 5 + 16)) \
	"$(status_get bytes_stored)"
assert_eq "status dedup_ratio without sharing" 1.0 \
	"$(status_get dedup_ratio | python3 -c 'print(float(input()))')"
assert_fails "Permission denied" bash -c "echo x >'$MNT/.tally/status'"

# ---------------------------------------------------------- the report
exec 3<>"$MNT/.tally/ctl"
echo drain >&3
report=$(T cat <&3)
exec 3>&-
[[ -n $report ]] || fail "no report after drain"
while IFS= read -r line; do
	assert_match "report line of drain" '^[a-z_]+: .+$' "$line"
done <<<"$report"
assert_match "drain report" $'(^|\n)pending_flushes: 0($|\n)' "$report"

# ----------------------------------------------------------- branching
objs_before=$(store_objects)
inodes_before=$(status_get inodes)
logical_before=$(status_get bytes_logical)
stored_before=$(status_get bytes_stored)
exec 3<>"$MNT/.tally/ctl"
echo "branch main dev" >&3
report=$(T cat <&3)
exec 3>&-
while IFS= read -r line; do
	assert_match "report line of branch" '^[a-z_]+: .+$' "$line"
done <<<"$report"

assert_eq "ls of the root after branch" $'bystander\ndev\nmain' "$(ls "$MNT")"
assert_eq "status namespaces after branch" 3 "$(status_get namespaces)"
manifest "$MNT/main" >"$TMP/main.mf"
manifest "$MNT/dev" >"$TMP/dev.mf"
assert_same_manifest "dev vs main" "$TMP/main.mf" "$TMP/dev.mf"
assert_eq "object files after branch (no data copied)" "$objs_before" \
	"$(store_objects)"
assert_eq "status bytes_stored after branch" "$stored_before" \
	"$(status_get bytes_stored)"
# the files stored, each once: a branch in O(1) stores none
assert_eq "status bytes_logical after branch" "$logical_before" \
	"$(status_get bytes_logical)"
# the inodes stored, and the counts of the rows: the same (dev reads
# main's rows, through a version they share)
assert_eq "status inodes after branch" "$inodes_before" \
	"$(status_get inodes)"
assert_eq "refs of main/big after branch" "1 1 1" "$(refs "$MNT/main/big")"
assert_eq "refs of dev/big" "1 1 1" "$(refs "$MNT/dev/big")"
assert_eq "refs of dev/small" "1" "$(refs "$MNT/dev/small")"
assert_eq "refs of bystander/file" "1" "$(refs "$MNT/bystander/file")"
assert_eq "objects of dev/big" "$(objects "$MNT/main/big")" \
	"$(objects "$MNT/dev/big")"
for f in big small sub/deeper/file empty sub/fifo sub/big-symlink; do
	assert_ne "inode of dev/$f (must differ from main/$f)" \
		"$(stat -c %i "$MNT/main/$f")" "$(stat -c %i "$MNT/dev/$f")"
done
assert_eq "hard link inside dev" "$(stat -c %i "$MNT/dev/small")" \
	"$(stat -c %i "$MNT/dev/sub/small-link")"
assert_eq "nlink of dev/small" 2 "$(stat -c %h "$MNT/dev/small")"
assert_eq "xattr of dev/big" main "$(xattr "$MNT/dev/big" user.tag)"

# -------------------------------------------------------- copy-on-write
printf 'DEV!' | T dd of="$MNT/dev/big" conv=notrunc status=none
assert_same_content "$TMP/big" "$MNT/main/big"
# dev's leaf holds a row of the block it wrote alone
assert_eq "refs of main/big after writing dev/big" "1 1 1" \
	"$(refs "$MNT/main/big")"
assert_eq "refs of dev/big after writing it" "1 1 1" \
	"$(refs "$MNT/dev/big")"
assert_eq "first 4 bytes of dev/big" "DEV!" "$(head -c 4 "$MNT/dev/big")"
printf 'appended\n' >>"$MNT/dev/sub/small-link"
assert_eq "main/small after appending to dev's hard link" small \
	"$(cat "$MNT/main/small")"
assert_eq "dev/small after appending to its hard link" $'small\nappended' \
	"$(cat "$MNT/dev/small")"
printf 'main moves on\n' >"$MNT/main/sub/deeper/file"
assert_eq "dev/sub/deeper/file after a write in main" deep \
	"$(cat "$MNT/dev/sub/deeper/file")"
T rm "$MNT/dev/empty"
assert_exists "$MNT/main/empty"
T setfattr -n user.tag -v dev "$MNT/dev/big"
assert_eq "xattr of main/big after setting dev's" main \
	"$(xattr "$MNT/main/big" user.tag)"
printf 'new\n' >"$MNT/dev/new"
assert_absent "$MNT/main/new"
T truncate -s 0 "$MNT/main/big"
assert_eq "dev/big after truncating main/big" $((2 * MIB + 100)) \
	"$(stat -c %s "$MNT/dev/big")"
assert_eq "refs of dev/big after main/big went" "1 1 1" \
	"$(refs "$MNT/dev/big")"

# ----------------------------------------- bad commands change nothing
drain
snapshot() {
	printf '%s\n' "$(status_counts)"
	ls -A "$MNT"
	manifest "$MNT" --ino --tally --no-ctl
}
snapshot >"$TMP/snap.before"
n256=$(printf 'n%.0s' {1..256})
while IFS='|' read -r want cmd; do
	[[ -n $want ]] || continue
	cmd=${cmd//\\n/$'\n'}
	assert_eq "errno of writing [${cmd//$'\n'/\\n}] to ctl" "$want" \
		"$(ctl_errno "$cmd")"
done <<EOF
EINVAL|bogus\n
EINVAL|\n
EINVAL|   \n
EINVAL|BRANCH main x\n
EINVAL|branch onlyone\n
EINVAL|branch\n
EINVAL|branch main x extra\n
ENOENT|branch missing x\n
EEXIST|branch main dev\n
EEXIST|branch main main\n
EEXIST|branch main bystander\n
EINVAL|branch main .tally\n
EINVAL|branch main .\n
EINVAL|branch main ..\n
EINVAL|branch main a/b\n
EINVAL|branch main/sub x\n
ENAMETOOLONG|branch main $n256\n
EINVAL|drain bogus\n
EINVAL|drain -1\n
EINVAL|drain\nbranch main y\n
EOF
snapshot >"$TMP/snap.after"
assert_same_manifest "the mount after the bad commands" \
	"$TMP/snap.before" "$TMP/snap.after"
assert_fails "Invalid argument" bash -c "echo bogus >'$MNT/.tally/ctl'"

# good commands still work afterwards, also with a timeout and spaces
assert_eq "drain 30" OK "$(ctl_errno $'drain 30\n')"
assert_eq "branch with extra blanks" OK "$(ctl_errno $'  branch\tdev   dev2 \n')"
assert_eq "ls of the root at the end" $'bystander\ndev\ndev2\nmain' \
	"$(ls "$MNT")"
# a branch of a branch: dev2 reads the rows dev reads
assert_eq "refs of dev2/big" "1 1 1" "$(refs "$MNT/dev2/big")"

umount_fs
fsck_store "$STORE"
assert_eq "tallyfsck exit code (output: $FSCK_OUT)" 0 "$FSCK_RC"
log "ok"
