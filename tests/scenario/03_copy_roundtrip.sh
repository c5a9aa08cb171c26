#!/bin/bash
# SPDX-License-Identifier: MIT
# cp -a, rsync -aHX and tar round trips: a source tree with files of
# assorted sizes (0, 1, exactly one block, one block + 1, sparse), symlinks,
# hard links, a FIFO, nested and oddly named entries, modes, owners, user.*
# xattrs and mtimes is copied into its own namespace with each tool and
# back out again. Every copy is compared with diff -r and with a manifest
# (manifest.py: type, mode, owner, mtime, size, SHA-256, nlink and hard-link
# groups, symlink targets, xattrs) against what the same tool produces on
# the local disk, so only tallyfs can make them differ. Then cp -a copies
# one namespace into another inside the mount: no new object is stored.
SCN_TIMEOUT=480
source "$(dirname "$0")/lib.sh"

SRC=$TMP/src

# ------------------------------------------------------ the source tree
build_tree() {
	local s=$1 n255

	mkdir -p "$s/dir/sub/deeper/deepest" "$s/empty dir" \
		"$s/sticky" "$s/private"
	: >"$s/empty"
	printf 'x' >"$s/one byte"
	rand_file "$s/exactly 1 MiB" "$MIB"
	rand_file "$s/1 MiB + 1" $((MIB + 1))
	rand_file "$s/dir/2.5 MiB" $((5 * MIB / 2))
	rand_file "$s/dir/sub/4097" 4097
	printf 'small text\n' >"$s/dir/sub/deeper/deepest/leaf.txt"
	# two blocks with the same content inside one file, and a copy
	rand_file "$TMP/blk" "$MIB"
	cat "$TMP/blk" "$TMP/blk" >"$s/dir/twin blocks"
	cp "$s/dir/twin blocks" "$s/dir/sub/twin copy"
	# sparse: holes at 0-2 MiB and after 2 MiB + 4 KiB up to 5 MiB + 3
	truncate -s $((5 * MIB + 3)) "$s/sparse"
	rand_file "$TMP/4k" 4096
	dd if="$TMP/4k" of="$s/sparse" bs=4096 seek=512 conv=notrunc \
		status=none
	# odd names
	printf 'spaces\n' >"$s/name with  spaces"
	printf 'unicode\n' >"$s/ünïcødé ✓ 日本語"
	printf 'quotes\n' >"$s/quote'double\"back\\slash"
	printf 'dash\n' >"$s/-leading-dash"
	printf 'star\n' >"$s/*star?[x]"
	n255=$(printf 'L%.0s' {1..255})
	printf 'long\n' >"$s/dir/$n255"
	# symlinks: relative, absolute, dangling, to a directory, to a link
	ln -s "one byte" "$s/link to one byte"
	ln -s /etc/hostname "$s/absolute link"
	ln -s "no such target" "$s/dangling"
	ln -s dir/sub "$s/dirlink"
	ln -s "link to one byte" "$s/link to link"
	ln -s "$(printf 'T%.0s' {1..200})/$(printf 't%.0s' {1..200})" \
		"$s/long target"
	# hard links: a pair across directories, a triple
	printf 'hard pair\n' >"$s/hard a"
	ln "$s/hard a" "$s/dir/hard b"
	rand_file "$s/dir/sub/tri 1" 70000
	ln "$s/dir/sub/tri 1" "$s/dir/sub/tri 2"
	ln "$s/dir/sub/tri 1" "$s/tri 3"
	mkfifo "$s/dir/fifo"
	# modes and owners
	chmod 0640 "$s/exactly 1 MiB"
	chmod 0755 "$s/1 MiB + 1"
	chmod 0400 "$s/one byte"
	chmod 0600 "$s/dir/2.5 MiB"
	chmod 4755 "$s/dir/sub/4097"
	chmod 0444 "$s/empty"
	chmod 1777 "$s/sticky"
	chmod 0700 "$s/private"
	chmod 2750 "$s/dir/sub/deeper"
	chown 1234:5678 "$s/dir/sub/deeper/deepest/leaf.txt"
	chown -h 4321:8765 "$s/dangling"
	chown 99:99 "$s/private"
	# user xattrs on files and directories
	setfattr -n user.color -v blue "$s/exactly 1 MiB"
	setfattr -n user.empty -v '' "$s/exactly 1 MiB"
	setfattr -n user.bin -v 0x00ff10fe "$s/empty"
	setfattr -n user.dir -v "a directory" "$s/dir"
	setfattr -n user.long -v "$(printf 'v%.0s' {1..3000})" "$s/sparse"
	setfattr -n user.ünï -v "ü" "$s/hard a"
	# mtimes (with nanoseconds) on everything, directories last
	find "$s" -mindepth 1 ! -type d -exec \
		touch -h -d '2001-02-03 04:05:06.123456789' {} +
	touch -h -d '1999-12-31 23:59:59.5' "$s/link to one byte" \
		"$s/dangling"
	touch -d '2020-02-29 12:00:00.000000001' "$s/1 MiB + 1"
	touch -d '1970-01-02 00:00:00' "$s/empty"
	find "$s" -depth -type d -exec \
		touch -d '2010-10-10 10:10:10.101010101' {} +
}

build_tree "$SRC"

# copy_with TOOL FROM TO: copy directory FROM to the new path TO.
copy_with() {
	local tool=$1 from=$2 to=$3

	case $tool in
	cp)
		T cp -a -- "$from" "$to" ;;
	rsync)
		T rsync -aHX --filter='-x user.tally.*' \
			-- "$from/" "$to/" ;;
	tar)
		mkdir "$to"
		T tar -C "$from" --sparse --xattrs --xattrs-include='user.*' \
			--xattrs-exclude='user.tally.*' -cf - . |
			T tar -C "$to" --xattrs --xattrs-include='user.*' \
				--same-owner -xpf - ;;
	esac || fail "copy with $tool from $from to $to failed"
	# the top directory keeps its time only when the tool sets it last
	touch -r "$from" "$to"
}

# compare WHAT EXPECTED_DIR GOT_DIR: manifests equal and diff -r clean
compare() {
	local what=$1 want=$2 got=$3 d

	manifest "$want" >"$TMP/want.mf" || fail "manifest of $want failed"
	manifest "$got" >"$TMP/got.mf" || fail "manifest of $got failed"
	assert_same_manifest "$what" "$TMP/want.mf" "$TMP/got.mf"
	# diff -r reports two FIFOs as a difference: the manifest has them
	d=$(T diff -r --no-dereference --exclude=fifo -- "$want" "$got" \
		2>&1) ||
		fail "$what: diff -r $want $got:"$'\n'"$d"
}

mount_fs

for tool in cp rsync tar; do
	log "round trip with $tool"
	mkdir "$MNT/$tool"
	# the reference: the same tool onto the local disk, and back again
	copy_with "$tool" "$SRC" "$TMP/ref_in_$tool"
	copy_with "$tool" "$TMP/ref_in_$tool" "$TMP/ref_out_$tool"
	compare "$tool: local copy vs source (the tool itself)" \
		"$SRC" "$TMP/ref_in_$tool"
	# into the mount
	copy_with "$tool" "$SRC" "$MNT/$tool/tree"
	compare "$tool: copy in the mount vs the same copy on disk" \
		"$TMP/ref_in_$tool" "$MNT/$tool/tree"
	# and back out
	copy_with "$tool" "$MNT/$tool/tree" "$TMP/out_$tool"
	compare "$tool: copy out of the mount vs the same copy on disk" \
		"$TMP/ref_out_$tool" "$TMP/out_$tool"
	compare "$tool: copy out of the mount vs the source" \
		"$SRC" "$TMP/out_$tool"
done

# every block of the sparse file is a hole except the one with data: cp
# recreates the holes (SEEK_DATA or zero detection), and holes need no
# object
assert_eq "objects of the sparse file copied by cp -a" 1 \
	"$(objects "$MNT/cp/tree/sparse" | wc -l)"
assert_eq "refs of the twin-block file" 1 \
	"$(refs "$MNT/cp/tree/dir/twin blocks" | tr ' ' '\n' | sort -u | wc -l)"

# after a drain the counts are stable; all data now exists in the store
drain
objs_before=$(store_objects)
assert_eq "status objects" "$(wc -l <<<"$objs_before")" \
	"$(status_get objects)"
stored_before=$(status_get bytes_stored)

log "cp -a inside the mount, namespace to namespace"
mkdir "$MNT/cp2"
copy_with cp "$MNT/cp/tree" "$MNT/cp2/tree"
compare "cp -a inside the mount" "$MNT/cp/tree" "$MNT/cp2/tree"
compare "cp -a inside the mount vs the source" "$TMP/ref_in_cp" \
	"$MNT/cp2/tree"
drain
assert_eq "object files after copying inside the mount" "$objs_before" \
	"$(store_objects)"
assert_eq "bytes_stored after copying inside the mount" "$stored_before" \
	"$(status_get bytes_stored)"
# the copy shares its objects with the original
assert_eq "objects of the copied 2.5 MiB file" \
	"$(objects "$MNT/cp/tree/dir/2.5 MiB")" \
	"$(objects "$MNT/cp2/tree/dir/2.5 MiB")"
# dedup across the four copies in the mount (cp, rsync, tar, cp2)
assert_eq "refs of the 2.5 MiB file after four copies" "4 4 4" \
	"$(refs "$MNT/cp2/tree/dir/2.5 MiB")"

# copies are independent: changing one changes nothing else
printf 'changed' | T dd of="$MNT/cp2/tree/exactly 1 MiB" conv=notrunc \
	status=none
assert_same_content "$SRC/exactly 1 MiB" "$MNT/cp/tree/exactly 1 MiB"
assert_eq "refs of the original after the change of the copy" "3" \
	"$(refs "$MNT/cp/tree/exactly 1 MiB")"

umount_fs
fsck_store "$STORE"
assert_eq "tallyfsck exit code (output: $FSCK_OUT)" 0 "$FSCK_RC"
log "ok"
