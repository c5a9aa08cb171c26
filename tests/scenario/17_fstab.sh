#!/bin/bash
# SPDX-License-Identifier: MIT
# tallyfs from fstab, through mount(8) and mount.fuse3, in both forms:
#   tallyfs#STORE  MNT  fuse          OPTIONS  0 0
#   STORE          MNT  fuse.tallyfs  OPTIONS  0 0
# mount(8) runs its helpers without PATH, so mount.fuse3's /bin/sh finds
# `tallyfs` only in the shell's default path (/usr/local/sbin first). The
# scenario runs in a private mount namespace (unshare) where a directory
# holding a symlink to the built tallyfs is bind-mounted over
# /usr/local/sbin: the real system and the real /etc/fstab are not
# touched, and every mount of the scenario vanishes with the namespace
# even if the cleanup failed. Checked: `mount -t fuse.tallyfs`, `mount -t
# fuse 'tallyfs#STORE'`, `mount -T FSTAB MNT` for a line of each form and
# `mount -a -T FSTAB`, with tallyfs options (block_size, workers) and
# standard ones (ro) passed through; umount(8) stops the daemon; a bad
# option fails the mount and leaves nothing mounted.
if [[ -z ${TALLY_FSTAB_NS:-} ]]; then
	export TALLY_FSTAB_NS=1
	exec unshare --mount --propagation private -- bash "$0" "$@"
fi
SCN_TIMEOUT=180
source "$(dirname "$0")/lib.sh"

# the daemon must come from our build, found where mount.fuse3 looks
SBIN=$TMP/sbin
mkdir "$SBIN"
ln -s "$(readlink -f "$TALLYFS")" "$SBIN/tallyfs"
mount --bind "$SBIN" /usr/local/sbin
[[ $(env -u PATH /bin/sh -c 'command -v tallyfs') == /usr/local/sbin/tallyfs ]] ||
	fail "tallyfs is not the first tallyfs of /bin/sh's default path"
command -v mount.fuse3 >/dev/null || fail "no mount.fuse3 (package fuse3)"

STORE=$(realpath -m "$STORE")
MNT=$(realpath "$MNT")
STORE2=$TMP/store2
MNT2=$TMP/mnt2
mkdir "$MNT2"

# mount_via MNT CMD...: CMD mounts MNT (the daemon detaches): it must
# exit 0, MNT must be listed and served by our tallyfs, which is then
# remembered for the cleanup.
mount_via() {
	local m=$1 pid rc=0

	shift
	echo "== $*" >>"$DLOG"
	T "$@" >>"$DLOG" 2>&1 || rc=$?
	((rc == 0)) || fail "'$*' exited $rc: $(tail -n 3 "$DLOG")"
	is_mounted "$m" || fail "'$*' exited 0 but $m is not mounted"
	pid=$(daemon_pid_of "$m") || fail "no tallyfs process serves $m"
	DAEMON_PID[$m]=$pid
	DAEMON_CHILD[$m]=0
	echo "$pid" >>"$TMP/pids"
}

# umount_via MNT: umount(8); the daemon must exit (the store unlocked).
umount_via() {
	local m=$1 pid=${DAEMON_PID[$1]}

	T umount "$m" || fail "umount $m failed"
	is_mounted "$m" && fail "$m still mounted after umount"
	wait_pid_gone "$pid" 60 ||
		fail "daemon $pid of $m still running 60s after umount"
	unset "DAEMON_PID[$m]" "DAEMON_CHILD[$m]"
}

# fstype MNT: the type /proc/mounts gives the mount
fstype() { awk -v m="$1" '$2 == m { print $3 }' /proc/mounts; }

# status_of KEY MNT: one number of the status document
status_of() {
	T cat "$2/.tally/status" | python3 -c '
import json, sys
print(json.load(sys.stdin)[sys.argv[1]])' "$1"
}

# ------------------------------------------- mount -t fuse.tallyfs
mount_via "$MNT" mount -t fuse.tallyfs -o block_size=4096,workers=3 \
	"$STORE" "$MNT"
assert_eq "type (fuse.tallyfs form)" fuse.tallyfs "$(fstype "$MNT")"
assert_eq "block_size of the new store" 4096 "$(status_of block_size "$MNT")"
assert_eq "workers" 3 "$(status_of workers "$MNT")"
mkdir "$MNT/main"
rand_file "$TMP/data" 100000
T cp "$TMP/data" "$MNT/main/data"
drain
assert_eq "objects (4 KiB blocks)" 25 "$(status_of objects "$MNT")"
umount_via "$MNT"

# --------------------------------------- mount -t fuse tallyfs#STORE
mount_via "$MNT" mount -t fuse -o workers=2,block_size=65536 \
	"tallyfs#$STORE" "$MNT"
assert_eq "type (tallyfs# form)" fuse.tallyfs "$(fstype "$MNT")"
assert_eq "block_size of the existing store (option ignored)" 4096 \
	"$(status_of block_size "$MNT")"
assert_eq "workers" 2 "$(status_of workers "$MNT")"
assert_same_content "$TMP/data" "$MNT/main/data"
umount_via "$MNT"

# ------------------------------------------------- mount -T FSTAB
cat >"$TMP/fstab" <<EOF
# a temporary fstab: both forms
tallyfs#$STORE  $MNT   fuse          defaults,workers=1                0 0
$STORE2         $MNT2  fuse.tallyfs  defaults,block_size=8192,workers=4  0 0
EOF
mount_via "$MNT" mount -T "$TMP/fstab" "$MNT"
mount_via "$MNT2" mount -T "$TMP/fstab" "$MNT2"
assert_eq "fstab line 1: type" fuse.tallyfs "$(fstype "$MNT")"
assert_eq "fstab line 2: type" fuse.tallyfs "$(fstype "$MNT2")"
assert_eq "fstab line 1: workers" 1 "$(status_of workers "$MNT")"
assert_eq "fstab line 1: block_size" 4096 "$(status_of block_size "$MNT")"
assert_same_content "$TMP/data" "$MNT/main/data"
assert_eq "fstab line 2: workers" 4 "$(status_of workers "$MNT2")"
assert_eq "fstab line 2: block_size (a new store)" 8192 \
	"$(status_of block_size "$MNT2")"
mkdir "$MNT2/main"
T cp "$TMP/data" "$MNT2/main/data"
drain "$MNT2"
assert_eq "fstab line 2: objects (8 KiB blocks)" 13 \
	"$(status_of objects "$MNT2")"
umount_via "$MNT"
umount_via "$MNT2"

# a standard option added on the command line: read-only
mount_via "$MNT2" mount -T "$TMP/fstab" -o ro "$MNT2"
assert_match "ro in the mount options" '^ro,' \
	"$(awk -v m="$MNT2" '$2 == m { print $4 }' /proc/mounts)"
assert_errno EROFS 'os.mkdir(T + "/mnt2/other")'
assert_same_content "$TMP/data" "$MNT2/main/data"
umount_via "$MNT2"

# every line at once
echo "== mount -a -T $TMP/fstab" >>"$DLOG"
T mount -a -T "$TMP/fstab" >>"$DLOG" 2>&1 || fail "mount -a -T failed"
for m in "$MNT" "$MNT2"; do
	is_mounted "$m" || fail "mount -a: $m not mounted"
	DAEMON_PID[$m]=$(daemon_pid_of "$m") || fail "no daemon serves $m"
	DAEMON_CHILD[$m]=0
	echo "${DAEMON_PID[$m]}" >>"$TMP/pids"
done
assert_same_content "$TMP/data" "$MNT/main/data"
assert_same_content "$TMP/data" "$MNT2/main/data"
umount_via "$MNT"
umount_via "$MNT2"

# ------------------------------------------- mount.fuse3 drop_privileges
# mount.fuse3 mounts itself and hands the daemon /dev/fd/N: the daemon can
# no longer add default_permissions, so a mount other users can enter
# (allow_other) is refused unless the option was given: it fails closed
rc=0
out=$(T mount -t fuse -o drop_privileges,allow_other "tallyfs#$STORE" \
	"$MNT" 2>&1) || rc=$?
((rc != 0)) || fail "drop_privileges,allow_other without default_permissions mounted"
assert_match "refusal message" "add -o default_permissions" "$out"
# the kernel mount mount.fuse3 made is left without a server: nothing
# can be read through it (and the daemon, its privileges dropped, cannot
# unmount it): cleaned up here
if is_mounted "$MNT"; then
	assert_errno ENOTCONN 'os.listdir(T + "/mnt")'
	umount -l "$MNT" || fail "cannot detach the refused mount"
fi
# given, it mounts (the daemon's command line names /dev/fd/N, not MNT:
# it is found by its store)
T mount -t fuse -o drop_privileges,allow_other,default_permissions \
	"tallyfs#$STORE" "$MNT" >>"$DLOG" 2>&1 ||
	fail "drop_privileges,allow_other,default_permissions did not mount"
is_mounted "$MNT" || fail "$MNT not mounted"
DAEMON_PID[$MNT]=$(pgrep -f "tallyfs $STORE /dev/fd/" | head -n 1)
[[ -n ${DAEMON_PID[$MNT]} ]] || fail "no tallyfs process serves $STORE"
DAEMON_CHILD[$MNT]=0
echo "${DAEMON_PID[$MNT]}" >>"$TMP/pids"
assert_match "default_permissions in the mount options" \
	'default_permissions' \
	"$(awk -v m="$MNT" '$2 == m { print $4 }' /proc/mounts)"
assert_same_content "$TMP/data" "$MNT/main/data"
umount_via "$MNT"

# ------------------------------------------------------ a bad option
rc=0
out=$(T mount -t fuse.tallyfs -o workers=many "$STORE" "$MNT" 2>&1) ||
	rc=$?
((rc != 0)) || fail "mount with workers=many succeeded"
assert_match "bad option message" "invalid parameter in option .workers=many" \
	"$out"
is_mounted "$MNT" && fail "$MNT mounted despite the bad option"
daemon_pid_of "$MNT" >/dev/null && fail "a daemon serves $MNT after the failure"

fsck_store "$STORE"
assert_eq "tallyfsck of the store (output: $FSCK_OUT)" 0 "$FSCK_RC"
fsck_store "$STORE2"
assert_eq "tallyfsck of store2 (output: $FSCK_OUT)" 0 "$FSCK_RC"
log "ok"
