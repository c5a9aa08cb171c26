#!/bin/bash
# SPDX-License-Identifier: MIT
# Snapshots browsable (docs/design.md 13.3, 13.4): /.snapshots lists the
# namespaces, /.snapshots/NS the snapshots of NS, and
# /.snapshots/NS/NAME/ is snapshot NAME as it was taken: every name,
# kind, mode, owner, time, content, symlink, hard link and xattr, while
# the namespace goes on changing. Its files have st_ino of their own
# (not the namespace's, not another snapshot's; hard links share one),
# stable across a remount. Every change there is EROFS and changes
# nothing. A copy out of a snapshot restores a file. rmsnapshot is EBUSY
# while a file of the snapshot is open, and its directory is gone after
# it, the kernel's cache of it included, while the snapshot taken after
# it reads as before (a removal merges versions); a process whose
# working directory was in it gets ESTALE. A rollback with drop-later
# takes the later snapshots' directories with them.
SCN_TIMEOUT=300
source "$(dirname "$0")/lib.sh"

mount_fs

NS=$MNT/main
SNAPS=$MNT/.snapshots

# snap_check NAME WANT: the snapshot reads as manifest WANT
snap_check() {
	manifest "$SNAPS/main/$1" >"$TMP/got"
	assert_same_manifest "snapshot $1" "$2" "$TMP/got"
}

mkdir "$NS" "$MNT/other"
rand_file "$TMP/big" $((3 * MIB + 123))
mkdir -p "$NS/dir/sub" "$NS/empty"
cp "$TMP/big" "$NS/dir/big"
printf 'small\n' >"$NS/small"
ln -s ../small "$NS/dir/link"
ln "$NS/small" "$NS/dir/sub/hard"
setfattr -n user.a -v one "$NS/small"
chmod 640 "$NS/dir/big"
mkfifo "$NS/fifo"
manifest "$NS" >"$TMP/s1.want"

ctl "snapshot main s1" || fail "snapshot main s1 failed"
# every kind of change after it
printf 'REWRITE' | dd of="$NS/dir/big" bs=1 seek=4096 conv=notrunc \
	status=none
printf 'appended\n' >>"$NS/small"
rm "$NS/dir/sub/hard" "$NS/fifo"
mv "$NS/dir/link" "$NS/link2"
mkdir "$NS/new"
printf 'new\n' >"$NS/new/file"
chmod 600 "$NS/small"
setfattr -n user.a -v two "$NS/small"
rmdir "$NS/empty"
manifest "$NS" >"$TMP/s2.want"
ctl "snapshot main s2" || fail "snapshot main s2 failed"
truncate -s 1000 "$NS/dir/big"
rm -r "$NS/new"
manifest "$NS" >"$TMP/main.want"

# ----------------------------------------------------------- reading
snap_check s1 "$TMP/s1.want"
snap_check s2 "$TMP/s2.want"
manifest "$NS" >"$TMP/got"
assert_same_manifest "the namespace" "$TMP/main.want" "$TMP/got"
assert_same_content "$TMP/big" "$SNAPS/main/s1/dir/big"
assert_eq "a snapshot's symlink" ../small "$(readlink "$SNAPS/main/s1/dir/link")"
assert_eq "a snapshot's xattr" one \
	"$(getfattr --only-values -n user.a "$SNAPS/main/s1/small")"
assert_eq "/.snapshots" "main other" "$(ls "$SNAPS" | xargs)"
assert_eq "/.snapshots/main" "s1 s2" "$(ls "$SNAPS/main" | xargs)"
assert_eq "/.snapshots/other" "" "$(ls -A "$SNAPS/other")"
# hidden from the root's listing, as ZFS's .zfs is by default
[[ $(ls -A "$MNT") != *.snapshots* ]] ||
	fail "the root lists .snapshots: $(ls -A "$MNT")"
assert_errno ENOENT 'os.stat(M + "/.snapshots/main/s9")'
assert_errno ENOENT 'os.stat(M + "/.snapshots/nons")'

# st_ino: the snapshot's own, a hard link's shared
ino() { stat -c %i "$1"; }
assert_ne "st_ino of a file and of its snapshot" \
	"$(ino "$NS/small")" "$(ino "$SNAPS/main/s1/small")"
assert_ne "st_ino in two snapshots" \
	"$(ino "$SNAPS/main/s2/small")" "$(ino "$SNAPS/main/s1/small")"
assert_eq "st_ino of a hard link in a snapshot" \
	"$(ino "$SNAPS/main/s1/small")" "$(ino "$SNAPS/main/s1/dir/sub/hard")"
manifest "$SNAPS/main/s1" --ino >"$TMP/s1.ino"

# ----------------------------------------------------------- EROFS
S1=$SNAPS/main/s1
for stmt in 'open(M + "/.snapshots/main/s1/newfile", "w")' \
	'open(M + "/.snapshots/main/s1/small", "a")' \
	'open(M + "/.snapshots/main/s1/small", "r+")' \
	'os.truncate(M + "/.snapshots/main/s1/small", 0)' \
	'os.unlink(M + "/.snapshots/main/s1/small")' \
	'os.mkdir(M + "/.snapshots/main/s1/d")' \
	'os.rmdir(M + "/.snapshots/main/s1/empty")' \
	'os.rename(M + "/.snapshots/main/s1/small", M + "/.snapshots/main/s1/x")' \
	'os.rename(M + "/.snapshots/main/s1/small", M + "/main/x")' \
	'os.rename(M + "/main/small", M + "/.snapshots/main/s1/x")' \
	'os.link(M + "/.snapshots/main/s1/small", M + "/main/x")' \
	'os.link(M + "/main/small", M + "/.snapshots/main/s1/x")' \
	'os.symlink("x", M + "/.snapshots/main/s1/sl")' \
	'os.chmod(M + "/.snapshots/main/s1/small", 0o777)' \
	'os.utime(M + "/.snapshots/main/s1/small", (1, 1))' \
	'os.setxattr(M + "/.snapshots/main/s1/small", "user.b", b"x")' \
	'os.removexattr(M + "/.snapshots/main/s1/small", "user.a")' \
	'os.mknod(M + "/.snapshots/main/s1/fifo2", 0o600 | 0o010000)' \
	'os.mkdir(M + "/.snapshots/main/s3")' \
	'os.mkdir(M + "/.snapshots/ns2")' \
	'os.rmdir(M + "/.snapshots/main/s1")'; do
	assert_errno EROFS "$stmt"
done
assert_errno EEXIST 'os.mkdir(M + "/.snapshots")'
assert_errno EPERM 'os.rmdir(M + "/.snapshots")'
assert_fails "Read-only file system" rm -rf "$SNAPS/main/s1/dir"
snap_check s1 "$TMP/s1.want"

# a copy out of a snapshot restores a file
cp "$S1/dir/big" "$NS/restored"
assert_same_content "$TMP/big" "$NS/restored"
rm "$NS/restored"
manifest "$NS" >"$TMP/main.want"

# ----------------------------------------------------------- a remount
remount_fs
snap_check s1 "$TMP/s1.want"
snap_check s2 "$TMP/s2.want"
manifest "$SNAPS/main/s1" --ino >"$TMP/got"
assert_same_manifest "st_ino after a remount" "$TMP/s1.ino" "$TMP/got"
manifest "$NS" >"$TMP/got"
assert_same_manifest "the namespace after a remount" "$TMP/main.want" \
	"$TMP/got"

# ------------------------------------------------- rmsnapshot, rollback
exec {held}<"$S1/small"
assert_eq "rmsnapshot with a file of it open" EBUSY \
	"$(ctl_errno "rmsnapshot main s1")"
exec {held}<&-
snap_check s1 "$TMP/s1.want"
ctl "rmsnapshot main s1" || fail "rmsnapshot main s1 failed"
# the kernel had it cached (just read): gone all the same
assert_errno ENOENT 'os.stat(M + "/.snapshots/main/s1")'
assert_errno ENOENT 'os.stat(M + "/.snapshots/main/s1/small")'
assert_eq "/.snapshots/main after rmsnapshot" s2 "$(ls "$SNAPS/main" | xargs)"
# s2, merged into s1's version, reads as it did
snap_check s2 "$TMP/s2.want"
manifest "$NS" >"$TMP/got"
assert_same_manifest "the namespace after rmsnapshot" "$TMP/main.want" \
	"$TMP/got"

ctl "snapshot main s3" || fail "snapshot main s3 failed"
printf 'after s3\n' >"$NS/late"
manifest "$SNAPS/main/s3" >/dev/null
ctl "rollback main s2 drop-later" || fail "rollback main s2 drop-later failed"
assert_errno ENOENT 'os.stat(M + "/.snapshots/main/s3")'
assert_eq "/.snapshots/main after the rollback" s2 \
	"$(ls "$SNAPS/main" | xargs)"
snap_check s2 "$TMP/s2.want"
manifest "$NS" >"$TMP/got"
assert_same_manifest "the namespace rolled back to s2" "$TMP/s2.want" \
	"$TMP/got"

# a process whose working directory is in it: ESTALE once it is gone
mkfifo "$TMP/go"
T python3 - "$SNAPS/main/s2/dir" "$TMP/go" "$TMP/ready" >"$TMP/cwd.out" <<-'EOF' &
import errno, os, sys
os.chdir(sys.argv[1])
open(sys.argv[3], "w").close()
open(sys.argv[2]).read()
try:
    os.listdir(".")
    print("OK")
except OSError as e:
    print(errno.errorcode.get(e.errno, e.errno))
EOF
cwd=$!
for ((i = 0; i < 100; i++)); do
	[[ -e $TMP/ready ]] && break
	sleep 0.1
done
ctl "rmsnapshot main s2" || fail "rmsnapshot main s2 failed"
echo >"$TMP/go"
wait "$cwd" || fail "the process in the snapshot failed"
assert_eq "a listing of a working directory in a removed snapshot" ESTALE \
	"$(cat "$TMP/cwd.out")"
assert_eq "/.snapshots/main at the end" "" "$(ls -A "$SNAPS/main")"
umount_fs
fsck_store "$STORE"
assert_eq "tallyfsck exit code: $FSCK_OUT" 0 "$FSCK_RC"
log "ok"
