#!/bin/bash
# SPDX-License-Identifier: MIT
# Automatic snapshots (docs/design.md, section 13.4): `autosnapshot NS
# every=S keep=N` takes a snapshot auto-YYYYMMDD-HHMMSS of NS every S
# seconds and keeps the newest N of them; a user's snapshot is never
# counted nor removed. The setting is shown, survives a remount, and
# `off` stops it (what was taken stays). The automatic snapshots are
# snapshots like any other: diff, rollback and rmsnapshot take them,
# while a user may not name one auto-. Bad settings are refused with
# nothing changed.
SCN_TIMEOUT=180
source "$(dirname "$0")/lib.sh"

mount_fs
NS=$MNT/main
mkdir "$NS"
printf 'a\n' >"$NS/a"

# autos: the automatic snapshots of main, oldest first
autos() {
	local r

	r=$(ctl_report "snapshots main") || fail "snapshots failed"
	sed -n 's/^snapshot: main@//p' <<<"$r" | grep '^auto-' || true
}
# setting: "EVERY KEEP" as autosnapshot main shows it
setting() {
	local r

	r=$(ctl_report "autosnapshot main") || fail "autosnapshot main failed"
	echo "$(report_get every "$r") $(report_get keep "$r")"
}

assert_eq "no setting at first" "0 0" "$(setting)"
ctl "snapshot main mine" || fail "snapshot main mine failed"
ctl "autosnapshot main every=1s keep=3" || fail "autosnapshot failed"
assert_eq "the setting" "1 3" "$(setting)"
for i in 1 2 3 4 5 6; do
	printf '%s\n' "$i" >>"$NS/a"
	sleep 1
done
list=$(autos)
n=$(grep -c . <<<"$list" || true)
((n >= 2 && n <= 3)) || fail "after 6 s at every=1s keep=3: $n automatic" \
	"snapshots: $list"
grep -qvE '^auto-[0-9]{8}-[0-9]{6}$' <<<"$list" &&
	fail "a name not auto-YYYYMMDD-HHMMSS: $list"
assert_eq "their names sort as they were taken" "$list" "$(sort <<<"$list")"
r=$(ctl_report "snapshots main") || fail "snapshots failed"
assert_match "the user's snapshot kept" "main@mine" "$r"

# off: no more, the ones taken stay
ctl "autosnapshot main off" || fail "autosnapshot off failed"
assert_eq "the setting, off" "0 0" "$(setting)"
list=$(autos)
sleep 3
assert_eq "none taken after off" "$list" "$(autos)"

# they are snapshots: diff and rmsnapshot take them
newest=$(tail -n 1 <<<"$list")
r=$(ctl_report "diff main@$newest main") || fail "diff of $newest failed"
assert_match "diff from the newest" "removed: 0" "$r"
ctl "rmsnapshot main $newest" || fail "rmsnapshot main $newest failed"
assert_eq "a user's auto- name" EINVAL \
	"$(ctl_errno "snapshot main auto-20260101-000000")"

# the setting survives a remount; a smaller keep trims the oldest
ctl "autosnapshot main every=1 keep=1" || fail "autosnapshot failed"
umount_fs
mount_fs
assert_eq "the setting after a remount" "1 1" "$(setting)"
printf 'more\n' >>"$NS/a"
sleep 3
list=$(autos)
assert_eq "keep=1: one automatic snapshot" 1 "$(grep -c . <<<"$list")"
r=$(ctl_report "snapshots main") || fail "snapshots failed"
assert_match "the user's snapshot still kept" "main@mine" "$r"

# bad settings: refused, nothing changed
assert_eq "every=0" EINVAL "$(ctl_errno "autosnapshot main every=0 keep=1")"
assert_eq "no keep" EINVAL "$(ctl_errno "autosnapshot main every=1h")"
assert_eq "a bad unit" EINVAL \
	"$(ctl_errno "autosnapshot main every=1w keep=1")"
assert_eq "no such namespace" ENOENT \
	"$(ctl_errno "autosnapshot nothere every=1h keep=1")"
assert_eq "the setting after bad commands" "1 1" "$(setting)"

# a rollback to the automatic one left
ctl "autosnapshot main off" || fail "autosnapshot off failed"
last=$(autos)
printf 'after\n' >"$NS/after"
ctl "rollback main $last" || fail "rollback main $last failed"
assert_absent "$NS/after"
umount_fs
fsck_consistent "after automatic snapshots" "$STORE"
log "ok"
