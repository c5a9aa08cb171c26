#!/bin/bash
# SPDX-License-Identifier: MIT
# Store recognition: --help/--version; a missing store is created on first
# use and an empty directory becomes a store; a non-empty directory that is
# not a store, a regular file, a store of format 99, a damaged marker and a
# store already mounted by another process are refused, both daemonized
# and with -f, with a message naming the problem, a non-zero exit, no mount
# and nothing written into the refused directory. So are a missing
# mountpoint, a mountpoint that is a regular file, and a metadata address
# that cannot be reached, whose password no message shows.
SCN_TIMEOUT=180
source "$(dirname "$0")/lib.sh"

# ------------------------------------------------------- --help --version
for opt in --help -h; do
	rc=0
	out=$(T "$TALLYFS" "$opt" 2>&1) || rc=$?
	assert_eq "exit code of tallyfs $opt" 0 "$rc"
	assert_match "tallyfs $opt" 'usage: .*STORE MOUNTPOINT' "$out"
done
for opt in --version -V; do
	rc=0
	out=$(T "$TALLYFS" "$opt" 2>&1) || rc=$?
	assert_eq "exit code of tallyfs $opt" 0 "$rc"
	assert_match "tallyfs $opt" '^tallyfs [0-9]+\.[0-9]+' "$out"
done
rc=0
out=$(T "$TALLYFS" 2>&1) || rc=$?
assert_ne "exit code of tallyfs without arguments" 0 "$rc"
assert_match "tallyfs without arguments" 'usage' "$out"

# refuse MESSAGE_REGEX STORE [MNT]: mounting STORE must fail, daemonized
# and in the foreground, with a message matching MESSAGE_REGEX.
refuse() {
	local re=$1 store=$2 m=${3:-$MNT} mode out rc listing

	listing=$(ls -lAR --time-style=full-iso "$store" 2>&1 || true)
	for mode in daemon foreground; do
		rc=0
		if [[ $mode == daemon ]]; then
			out=$(T "$TALLYFS" "$store" "$m" 2>&1) || rc=$?
		else
			out=$(T "$TALLYFS" -f "$store" "$m" 2>&1) || rc=$?
		fi
		((rc != 124 && rc != 137)) ||
			fail "tallyfs ($mode) on $store hung: [$out]"
		if is_mounted "$m"; then
			DAEMON_PID[$m]=$(daemon_pid_of "$m" || true)
			fail "tallyfs ($mode) mounted the refused $store"
		fi
		assert_ne "exit code of tallyfs ($mode) on $store [$out]" 0 "$rc"
		assert_match "message of tallyfs ($mode) on $store" "$re" "$out"
		assert_eq "$store after the refusal ($mode): left untouched" \
			"$listing" \
			"$(ls -lAR --time-style=full-iso "$store" 2>&1 || true)"
	done
}

# --------------------------------------------- not a store, not empty
mkdir "$TMP/notastore"
printf 'precious\n' >"$TMP/notastore/file.txt"
refuse "'$TMP/notastore'.*(not a tallyfs store|not empty)" "$TMP/notastore"
assert_eq "the foreign file" precious "$(cat "$TMP/notastore/file.txt")"
# a hidden file makes a directory non-empty too
mkdir "$TMP/hidden"
: >"$TMP/hidden/.dotfile"
refuse "'$TMP/hidden'.*(not a tallyfs store|not empty)" "$TMP/hidden"
touch "$TMP/regular"
refuse "'$TMP/regular'.*(not a directory|Not a directory)" "$TMP/regular"

# ------------------------------------- first use: created, then reused
mkdir "$TMP/new"
mount_fs "$TMP/new/store" # the parent exists, the store does not
[[ -f $TMP/new/store/tallyfs-store ]] || fail "no marker in the new store"
mkdir "$MNT/ns"
printf 'kept\n' >"$MNT/ns/f"
umount_fs
mkdir "$TMP/empty"
mount_fs "$TMP/empty"
assert_eq "a new store from an empty directory" "" "$(ls "$MNT")"
umount_fs
[[ -f $TMP/empty/tallyfs-store ]] || fail "no marker in $TMP/empty"
mount_fs "$TMP/new/store"
assert_eq "a reopened store" kept "$(cat "$MNT/ns/f")"
umount_fs

# ------------------------------------------------- unknown format version
cp -a "$TMP/new/store" "$TMP/v99"
marker=$(cat "$TMP/v99/tallyfs-store")
assert_match "the store marker names a format" $'(^|\n)format [0-9]+' "$marker"
sed -i 's/^format .*/format 99/' "$TMP/v99/tallyfs-store"
refuse "'$TMP/v99'.*format.*99|format.*99.*'$TMP/v99'" "$TMP/v99"
assert_eq "the marker after the refusal" \
	"$(sed 's/^format .*/format 99/' <<<"$marker")" \
	"$(cat "$TMP/v99/tallyfs-store")"
# tallyfsck refuses it as well (cannot run: 2)
fsck_store "$TMP/v99"
assert_eq "tallyfsck exit code on a format 99 store" 2 "$FSCK_RC"
assert_match "tallyfsck on a format 99 store" 'format' "$FSCK_OUT"

# -------------------------------------------------------- damaged marker
cp -a "$TMP/new/store" "$TMP/damaged"
printf 'something else\n' >"$TMP/damaged/tallyfs-store"
refuse "tallyfs-store.*(damaged|not a tallyfs)" "$TMP/damaged"

# ---------------------------------- already mounted by another process
mount_fs "$TMP/new/store"
# its first node report, due at the flusher's first tick (1 s), made
# now: the mount's own commits then leave the store alone while refuse
# compares its listings (the next one is due in report_interval, 60 s)
ctl_report "gc dry-run" >/dev/null || fail "gc dry-run failed"
mkdir "$TMP/mnt2"
refuse "'$TMP/new/store'.*(in use|already)" "$TMP/new/store" "$TMP/mnt2"
assert_eq "the first mount still works" kept "$(cat "$MNT/ns/f")"
# the same, through another path to the same store
ln -s "$TMP/new/store" "$TMP/store-link"
refuse "(in use|already)" "$TMP/store-link" "$TMP/mnt2"
# and tallyfsck will not check a mounted store
fsck_store "$TMP/new/store"
assert_eq "tallyfsck exit code on a mounted store" 2 "$FSCK_RC"
assert_match "tallyfsck on a mounted store" '(in use|already|busy)' \
	"$FSCK_OUT"
umount_fs
# after the unmount the second mountpoint may take it
mount_fs "$TMP/new/store" "$TMP/mnt2"
assert_eq "the store on the second mountpoint" kept \
	"$(cat "$TMP/mnt2/ns/f")"
umount_fs "$TMP/mnt2"

# ---------------------------------------------------- a bad mountpoint
rc=0
out=$(T "$TALLYFS" "$TMP/new/store" "$TMP/no-such-dir" 2>&1) || rc=$?
assert_ne "exit code with a missing mountpoint [$out]" 0 "$rc"
assert_match "message with a missing mountpoint" 'no-such-dir' "$out"
# a regular file: the kernel would mount there, every access then EIO
printf 'a file\n' >"$TMP/file-mnt"
refuse "'$TMP/file-mnt'.*Not a directory" "$TMP/new/store" "$TMP/file-mnt"
assert_eq "the file after the refusal" "a file" "$(cat "$TMP/file-mnt")"

# ----------------------- a metadata address with a password, unreachable
# (nothing listens on port 1), or not a URI: refused, and the password
# is in no message, whatever its form
n=0
for meta in "postgres://u:Secret1@127.0.0.1:1" \
	"postgresql://u:Secret2@127.0.0.1:1/db" \
	"postgres://u@127.0.0.1:1/db?sslmode=disable&password=Secret3" \
	"host=127.0.0.1 port=1 password=Secret4 dbname=db" \
	"host=127.0.0.1 password='Secret5 x' dbname=db" \
	"postgres:/u:Secret6@127.0.0.1:1/db"; do
	for mode in daemon foreground; do
		rc=0
		n=$((n + 1))
		if [[ $mode == daemon ]]; then
			out=$(T "$TALLYFS" -o "meta=$meta" "$TMP/pg$n" \
				"$MNT" 2>&1) || rc=$?
		else
			out=$(T "$TALLYFS" -f -o "meta=$meta" "$TMP/pg$n" \
				"$MNT" 2>&1) || rc=$?
		fi
		if is_mounted "$MNT"; then
			DAEMON_PID[$MNT]=$(daemon_pid_of "$MNT" || true)
			fail "tallyfs ($mode) mounted with meta=$meta"
		fi
		assert_ne "exit code with meta=$meta ($mode) [$out]" 0 "$rc"
		assert_match "message with meta=$meta ($mode)" \
			'metadata .*\*\*\*|meta=.*\*\*\*.*not a postgres' "$out"
		[[ $out != *Secret* ]] ||
			fail "a message shows the password ($mode): [$out]"
	done
done
fsck_store "$TMP/new/store"
assert_eq "tallyfsck after all this (output: $FSCK_OUT)" 0 "$FSCK_RC"
log "ok"
