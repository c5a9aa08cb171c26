#!/bin/bash
# SPDX-License-Identifier: MIT
# diff A B (docs/design.md, section 13): the paths that differ between
# two versions of a namespace, each the namespace or a snapshot of it,
# one line each as `A path`, `D path`, `M path`, sorted by path, from the
# rows of the versions between them. A tree changed in every way (files
# rewritten, appended, truncated, chmod'ed, given xattrs, replaced under
# their name; names removed, added, renamed; a directory removed with
# what it held, one added, one moved; a hard link; a name with a newline
# and a quote) gives exactly the lines expected, both ways, between two
# snapshots, and through tallyctl with --json; bad sides are refused.
SCN_TIMEOUT=240
source "$(dirname "$0")/lib.sh"

mount_fs

NS=$MNT/main
CTL=$TALLY_BUILD/tools/tallyctl

# lines A B: the diff's lines alone
lines() {
	local r

	r=$(ctl_report "diff $1 $2") || fail "diff $1 $2 failed"
	grep -E '^[ADM] ' <<<"$r" || true
}
# expect A B WANT: the lines of diff A B are WANT (one per line)
expect() {
	local got

	got=$(lines "$1" "$2")
	[[ $got == "$3" ]] || fail "diff $1 $2:"$'\n'"want:"$'\n'"$3"$'\n'"got:"$'\n'"$got"
}

mkdir -p "$NS/d/sub" "$NS/gone/deep" "$NS/keep"
printf 'a\n' >"$NS/a"
printf 'b\n' >"$NS/d/b"
printf 'h\n' >"$NS/d/sub/h"
printf 'x\n' >"$NS/gone/deep/x"
printf 'same\n' >"$NS/keep/same"
printf 'trunc me\n' >"$NS/t"
printf 'mode\n' >"$NS/m"
printf 'old\n' >"$NS/r"
ctl "snapshot main s1" || fail "snapshot main s1 failed"
assert_eq "no change" "" "$(lines main@s1 main)"

printf 'more\n' >>"$NS/a"
T truncate -s 2 "$NS/t"
chmod 600 "$NS/m"
setfattr -n user.k -v v "$NS/d/b"
rm -r "$NS/gone"
mv "$NS/d/sub" "$NS/moved"
mkdir -p "$NS/new/in"
printf 'n\n' >"$NS/new/in/n"
printf 'new\n' >"$NS/r.tmp"
mv "$NS/r.tmp" "$NS/r"
ln "$NS/a" "$NS/keep/alink"
printf 'q' >"$NS/we\"ird"$'\n'"name"
want='M .
M a
M d
M d/b
D d/sub
D d/sub/h
D gone
D gone/deep
D gone/deep/x
M keep
A keep/alink
M m
A moved
A moved/h
A new
A new/in
A new/in/n
M r
M t
A "we\"ird\nname"'
expect main@s1 main "$want"
# the other way: what was added is removed (the same paths, in order)
expect main main@s1 "$(sed -e 's/^A /X /' -e 's/^D /A /' -e 's/^X /D /' \
	<<<"$want")"

# between two snapshots, and from a snapshot with a later one to the
# namespace: the versions between them only
ctl "snapshot main s2" || fail "snapshot main s2 failed"
expect main@s1 main@s2 "$want"
rm "$NS/keep/same"
expect main@s2 main 'M keep
D keep/same'
expect main@s1 main "$(sed 's|^A keep/alink$|&\nD keep/same|' <<<"$want")"

# tallyctl: the report as text and as JSON
out=$(T "$CTL" --no-progress "$MNT" diff main@s2 main) ||
	fail "tallyctl diff failed"
assert_match "tallyctl diff: the counts" "removed: +1" "$out"
assert_match "tallyctl diff: the line" "D keep/same" "$out"
out=$(T "$CTL" --json "$MNT" diff main@s2 main) ||
	fail "tallyctl --json diff failed"
assert_eq "tallyctl --json diff" '["M keep", "D keep/same"]' \
	"$(T python3 -c 'import json, sys; print(json.dumps(json.load(sys.stdin)["text"]))' <<<"$out")"

# bad sides: refused
mkdir "$MNT/other"
assert_eq "versions of two namespaces" EXDEV \
	"$(ctl_errno "diff main other")"
assert_eq "no such snapshot" ENOENT "$(ctl_errno "diff main@s9 main")"
assert_eq "no such namespace" ENOENT "$(ctl_errno "diff nothere main")"
assert_eq "an empty snapshot name" EINVAL "$(ctl_errno "diff main@ main")"
assert_eq "an empty namespace" EINVAL "$(ctl_errno "diff @s1 main")"
assert_eq "one side" EINVAL "$(ctl_errno "diff main")"

# across a remount, and after a merge of s1 into s2's chain
umount_fs
mount_fs
expect main@s2 main 'M keep
D keep/same'
ctl "rmsnapshot main s1" || fail "rmsnapshot main s1 failed"
expect main@s2 main 'M keep
D keep/same'
umount_fs
fsck_consistent "after the diffs" "$STORE"
log "ok"
