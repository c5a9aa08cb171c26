#!/bin/bash
# SPDX-License-Identifier: MIT
# Root rules: the mount root holds only namespaces and /.tally. Files,
# symlinks, FIFOs, devices and hard links at the root are EPERM; mkdir
# makes a namespace, rmdir removes an empty one only (ENOTEMPTY); .tally
# cannot be created, removed or renamed, nor anything created inside it;
# the virtual xattrs are read-only; names longer than 255 bytes are
# ENAMETOOLONG.
SCN_TIMEOUT=120
source "$(dirname "$0")/lib.sh"

EPERM="Operation not permitted"

mount_fs

# ------------------------------------------ nothing but namespaces at /
mkdir "$MNT/ns"
[[ -d $MNT/ns ]] || fail "mkdir at the root did not make a directory"
assert_eq "status namespaces after mkdir" 1 "$(status_get namespaces)"
printf 'data\n' >"$MNT/ns/file"
before=$(status_counts)

assert_fails "$EPERM" touch "$MNT/file"
assert_fails "$EPERM" bash -c "printf x >'$MNT/file2'"
assert_fails "$EPERM" ln -s ns/file "$MNT/link"
assert_fails "$EPERM" mkfifo "$MNT/fifo"
assert_fails "$EPERM" mknod "$MNT/fifo2" p
assert_fails "$EPERM" mknod "$MNT/null" c 1 3
assert_fails "$EPERM" ln "$MNT/ns/file" "$MNT/hardlink"
assert_fails "$EPERM" mv "$MNT/ns/file" "$MNT/moved"
assert_errno EPERM 'os.mknod(M + "/sock", 0o600 | __import__("stat").S_IFSOCK)'
assert_errno EPERM 'os.symlink("ns", M + "/sl")'
assert_errno EPERM 'os.link(M + "/ns/file", M + "/hl")'
assert_errno EPERM 'os.close(os.open(M + "/f", os.O_CREAT | os.O_WRONLY, 0o644))'
assert_eq "ls -A of the root after the refused creations" $'.tally\nns' \
	"$(ls -A "$MNT")"
assert_eq "ns/file survived the refused mv" "data" "$(cat "$MNT/ns/file")"
assert_eq "status counts after the refused creations" "$before" \
	"$(status_counts)"

# ------------------------------------------------- namespace lifecycle
mkdir "$MNT/two" "$MNT/three"
assert_eq "status namespaces after two more mkdir" 3 \
	"$(status_get namespaces)"
assert_eq "ls of the root" $'ns\nthree\ntwo' "$(ls "$MNT")"
assert_fails "File exists" mkdir "$MNT/two"
assert_fails "Directory not empty" rmdir "$MNT/ns"
assert_errno ENOTEMPTY 'os.rmdir(M + "/ns")'
mkdir "$MNT/two/sub"
assert_fails "Directory not empty" rmdir "$MNT/two"
T rmdir "$MNT/two/sub"
T rmdir "$MNT/two"
assert_absent "$MNT/two"
assert_eq "status namespaces after rmdir" 2 "$(status_get namespaces)"
assert_eq "ls of the root after rmdir" $'ns\nthree' "$(ls "$MNT")"
assert_eq "ns/file after the failed rmdir" "data" "$(cat "$MNT/ns/file")"
assert_fails "No such file or directory" rmdir "$MNT/two"
assert_fails "Not a directory" rmdir "$MNT/ns/file"

# ------------------------------------------------------------- /.tally
assert_eq "ls of /.tally" $'ctl\nmetrics\nstatus' "$(ls "$MNT/.tally")"
assert_fails "File exists" mkdir "$MNT/.tally"
assert_fails "$EPERM" rmdir "$MNT/.tally"
assert_fails "$EPERM" rm -rf "$MNT/.tally"
assert_fails "$EPERM" mv "$MNT/.tally" "$MNT/renamed"
assert_fails "$EPERM" mv "$MNT/three" "$MNT/.tally"
assert_fails "$EPERM" rm -f "$MNT/.tally/ctl"
assert_fails "$EPERM" rm -f "$MNT/.tally/status"
assert_fails "$EPERM" mv "$MNT/.tally/status" "$MNT/.tally/s2"
assert_fails "$EPERM" touch "$MNT/.tally/new"
assert_fails "$EPERM" mkdir "$MNT/.tally/dir"
assert_fails "$EPERM" mv "$MNT/ns/file" "$MNT/.tally/file"
assert_errno EPERM 'os.rename(M + "/.tally", M + "/x")'
assert_errno EPERM 'os.rmdir(M + "/.tally")'
assert_eq "ls -A of the root after the /.tally attempts" \
	$'.tally\nns\nthree' "$(ls -A "$MNT")"
assert_eq "ls of /.tally after the attempts" $'ctl\nmetrics\nstatus' \
	"$(ls "$MNT/.tally")"
assert_eq "mode of /.tally/ctl" 600 "$(stat -c %a "$MNT/.tally/ctl")"
assert_eq "mode of /.tally/status" 444 "$(stat -c %a "$MNT/.tally/status")"
assert_eq "ns/file after the attempts" "data" "$(cat "$MNT/ns/file")"
assert_eq "status namespaces (.tally is not one)" 2 \
	"$(status_get namespaces)"

# --------------------------------------------- read-only virtual xattrs
names=$(T getfattr --absolute-names -m - -d "$MNT/ns/file" |
	sed -n 's/=.*//p' | grep '^user\.tally\.' || true)
assert_eq "virtual xattrs listed" $'user.tally.objects\nuser.tally.refs' \
	"$names"
assert_fails "$EPERM" setfattr -n user.tally.refs -v 7 "$MNT/ns/file"
assert_fails "$EPERM" setfattr -n user.tally.objects -v x "$MNT/ns/file"
assert_fails "$EPERM" setfattr -x user.tally.refs "$MNT/ns/file"
assert_fails "$EPERM" setfattr -x user.tally.objects "$MNT/ns/file"
assert_eq "refs after the refused set" 1 "$(refs "$MNT/ns/file")"
T setfattr -n user.color -v blue "$MNT/ns/file"
assert_eq "an ordinary user xattr" blue "$(xattr "$MNT/ns/file" user.color)"

# -------------------------------------------------------- name lengths
n255=$(printf 'n%.0s' {1..255})
n256=${n255}x
assert_fails "File name too long" touch "$MNT/ns/$n256"
assert_fails "File name too long" mkdir "$MNT/$n256"
T touch "$MNT/ns/$n255"
assert_exists "$MNT/ns/$n255"
T mkdir "$MNT/$n255"
assert_eq "status namespaces with a 255-byte name" 3 \
	"$(status_get namespaces)"
T rmdir "$MNT/$n255"

# ------------------------------------ names reserved for versions
# (/.snapshots/NS/NAME, which is there as /.tally is; NS@NAME names a
# snapshot)
assert_errno EEXIST 'os.mkdir(M + "/.snapshots")'
assert_errno EINVAL 'os.mkdir(M + "/a@b")'
assert_errno EINVAL 'os.rename(M + "/ns", M + "/ns@1")'
assert_errno EPERM 'os.rename(M + "/ns", M + "/.snapshots")'
assert_eq "branch to a name with @" EINVAL "$(ctl_errno "branch ns b@c")"
[[ -d $MNT/ns && ! -e $MNT/a@b && ! -e $MNT/ns@1 ]] ||
	fail "a refused name changed the root: $(ls -A "$MNT")"
# inside a namespace, nothing is reserved
T mkdir "$MNT/ns/.snapshots" "$MNT/ns/a@b"
T rmdir "$MNT/ns/.snapshots" "$MNT/ns/a@b"

umount_fs
fsck_store "$STORE"
assert_eq "tallyfsck exit code" 0 "$FSCK_RC"
log "ok"
