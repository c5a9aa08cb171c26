#!/bin/bash
# SPDX-License-Identifier: MIT
# Snapshots of a namespace (docs/design.md, section 13): `snapshot NS
# NAME` freezes what the namespace holds in O(1) and the namespace goes
# on in a new version of its own, read through the chain of the ones
# before. The namespace, changed in every way after each of three
# snapshots (files rewritten, appended, truncated, removed, renamed,
# linked; directories made and removed; xattrs set and removed;
# symlinks), reads exactly as a copy changed the same way, before and
# after a remount; `snapshots` lists them; bad commands are refused
# with nothing changed; `du` counts the files as the namespace shows
# them; each `rmsnapshot` (a merge of versions) leaves
# the namespace as it was and the store consistent (tallyfsck); the
# objects only the snapshots held are collected once they are gone.
SCN_TIMEOUT=300
source "$(dirname "$0")/lib.sh"

mount_fs

NS=$MNT/main
REF=$TMP/ref
mkdir -p "$REF"

# both: run "$@" with NS, then with REF, in place of @
both() {
	local a=() b=() x

	for x in "$@"; do
		a+=("${x//@/$NS}")
		b+=("${x//@/$REF}")
	done
	T "${a[@]}" || fail "in the mount: $*"
	"${b[@]}" || fail "in the copy: $*"
}

# check WHAT: the namespace reads as the copy (names, kinds, modes,
# sizes, contents, symlinks, xattrs)
check() {
	manifest "$REF" --no-mtime >"$TMP/want"
	manifest "$NS" --no-mtime >"$TMP/got"
	assert_same_manifest "$1" "$TMP/want" "$TMP/got"
}

mkdir "$NS"
rand_file "$TMP/big" $((3 * MIB + 123))
both mkdir -p @/dir/sub @/gone
both cp "$TMP/big" @/dir/big
both sh -c 'printf "small\n" >"$1/small"' _ @
both sh -c 'printf "x" >"$1/gone/x"' _ @
both ln -s ../small @/dir/link
both ln @/small @/dir/sub/hard
both setfattr -n user.a -v one @/small
check "before any snapshot"

ctl "snapshot main s1" || fail "snapshot main s1 failed"
# the namespace's every kind of change after it
both sh -c 'printf "REWRITE" | dd of="$1/dir/big" bs=1 seek=4096 \
	conv=notrunc status=none' _ @
both sh -c 'printf "appended\n" >>"$1/small"' _ @
both rm @/gone/x
both rmdir @/gone
both mv @/dir/sub @/moved
both setfattr -n user.a -v two @/small
both setfattr -n user.b -v new @/dir
both truncate -s 5000 @/dir/big
both mkdir @/later
both sh -c 'printf "later\n" >"$1/later/f"' _ @
check "after snapshot s1"

ctl "snapshot main s2" || fail "snapshot main s2 failed"
both rm @/dir/link
both ln -s moved @/dir/link
both setfattr -x user.a @/small
both rm @/moved/hard
both cp "$TMP/big" @/later/big2
both truncate -s $((MIB + 7)) @/later/big2
check "after snapshot s2"

ctl "snapshot main s3" || fail "snapshot main s3 failed"
both sh -c 'printf "%s\n" three >"$1/dir/three"' _ @
both rm @/small
check "after snapshot s3"

# du counts the files as the namespace shows them, not each version's
# rows of them
r=$(ctl_report "du main") || fail "du main failed"
assert_eq "du files with three snapshots" \
	"$(find "$NS" -type f | wc -l)" "$(report_get files "$r")"
assert_eq "du bytes_logical with three snapshots" \
	"$(find "$NS" -type f -printf '%s\n' | awk '{ s += $1 } END { print s }')" \
	"$(report_get bytes_logical "$r" | tr -d ' ')"

# the listing, oldest first
list=$(ctl_report "snapshots") || fail "snapshots failed"
assert_eq "snapshots" 3 "$(report_get snapshots "$list")"
assert_eq "snapshot names" "main@s1 main@s2 main@s3" \
	"$(sed -n 's/^snapshot: //p' <<<"$list" | tr '\n' ' ' | sed 's/ $//')"
list=$(ctl_report "snapshots main") || fail "snapshots main failed"
assert_eq "snapshots of main" 3 "$(report_get snapshots "$list")"

# bad commands: refused, nothing changed
mkdir "$MNT/other"
assert_eq "a name that exists" EEXIST "$(ctl_errno "snapshot main s2")"
assert_eq "a name with @" EINVAL "$(ctl_errno "snapshot main a@b")"
assert_eq "an automatic snapshot's name" EINVAL \
	"$(ctl_errno "snapshot main auto-1")"
assert_eq "a name of dots" EINVAL "$(ctl_errno "snapshot main ..")"
assert_eq "no such namespace" ENOENT "$(ctl_errno "snapshot nothere s")"
assert_eq "one argument" EINVAL "$(ctl_errno "snapshot main")"
assert_eq "another namespace's snapshot" ENOENT \
	"$(ctl_errno "rmsnapshot other s1")"
assert_eq "no such snapshot" ENOENT "$(ctl_errno "rmsnapshot main s9")"
assert_eq "snapshots of no namespace" ENOENT \
	"$(ctl_errno "snapshots nothere")"
assert_eq "rmdir of a namespace with snapshots" EBUSY \
	"$(T python3 -c 'import errno, os, sys
try:
    os.rmdir(sys.argv[1]); print("OK")
except OSError as e:
    print(errno.errorcode[e.errno])' "$NS")"
assert_eq "a namespace renamed over it" EBUSY \
	"$(T python3 -c 'import errno, os, sys
try:
    os.rename(sys.argv[1], sys.argv[2]); print("OK")
except OSError as e:
    print(errno.errorcode[e.errno])' "$MNT/other" "$NS")"
# a branch of it: what main shows now, copied
ctl "branch main copy" || fail "branch of a namespace with snapshots failed"
manifest "$NS" >"$TMP/main.now"
manifest "$MNT/copy" >"$TMP/copy.now"
assert_same_manifest "the branch of a namespace with snapshots" \
	"$TMP/main.now" "$TMP/copy.now"
rm -rf "$MNT/copy"
list=$(ctl_report "snapshots") || fail "snapshots failed"
assert_eq "snapshots after bad commands" 3 "$(report_get snapshots "$list")"
# each its own time: s1 oldest (its version outlives the merges below)
created=$(sed -n 's/^created: //p' <<<"$list")
assert_eq "times in order" "$created" "$(sort <<<"$created")"
check "after bad commands"

# a remount reads the chain from the store
umount_fs
fsck_consistent "with three snapshots" "$STORE"
mount_fs
check "remounted"
list=$(ctl_report "snapshots") || fail "snapshots failed"
assert_eq "snapshots after a remount" 3 "$(report_get snapshots "$list")"
both sh -c 'printf "after remount\n" >"$1/dir/after"' _ @
check "written after the remount"

# the removals merge versions: the middle one, the first, the last
# snapshot: created, each line "NS@NAME TIME"
times() {
	ctl_report "snapshots" | awk '/^snapshot: / { n = $2 }
		/^created: / { print n, $2 }'
}
before=$(times)
for s in s2 s1 s3; do
	ctl "rmsnapshot main $s" || fail "rmsnapshot main $s failed"
	check "after rmsnapshot $s"
	# the others keep their names and times
	assert_eq "snapshots after rmsnapshot $s" \
		"$(grep -v "^main@$s " <<<"$before")" "$(times)"
	before=$(times)
done
list=$(ctl_report "snapshots") || fail "snapshots failed"
assert_eq "no snapshot left" 0 "$(report_get snapshots "$list")"

# the bytes only a snapshot holds: a file it alone still names
rand_file "$TMP/only" $MIB
T cp "$TMP/only" "$NS/only"
ctl "snapshot main s4" || fail "snapshot main s4 failed"
only=$(objects "$NS/only")
list=$(ctl_report "snapshots main") || fail "snapshots failed"
assert_eq "s4 holds nothing alone yet" 0 \
	"$(report_get bytes_exclusive "$list")"
T rm "$NS/only"
list=$(ctl_report "snapshots main") || fail "snapshots failed"
assert_eq "s4 alone holds the file removed after it" $MIB \
	"$(report_get bytes_exclusive "$list")"
assert_eq "the file's object kept for s4" 1 \
	"$(store_objects | grep -c -x -F "$only" || true)"
ctl "rmsnapshot main s4" || fail "rmsnapshot main s4 failed"

# what only the snapshots held is collected: big2's old blocks, the
# old small, the rewritten block of big
ctl "gc grace=0" || fail "gc failed"
assert_eq "the object only s4 held, collected" 0 \
	"$(store_objects | grep -c -x -F "$only" || true)"
want=$(cd "$REF" && find . -type f -exec cat {} + | wc -c)
umount_fs
fsck_consistent "after every rmsnapshot" "$STORE"
assert_eq "tallyfsck: orphan object files after gc" 0 \
	"$(fsck_value orphans)"
mount_fs
check "remounted without snapshots"
got=$(cd "$NS" && find . -type f -exec cat {} + | wc -c)
assert_eq "bytes read" "$want" "$got"
# back to one version: the namespace goes as any other
T rm -rf "$NS"
assert_absent "$NS"
log "ok"
