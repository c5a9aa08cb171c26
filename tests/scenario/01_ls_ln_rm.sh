#!/bin/bash
# SPDX-License-Identifier: MIT
# ls/ln/rm across namespaces: object files appear under STORE/shards/0 with
# the hashes user.tally.objects shows, ln across namespaces raises every
# refcount and makes a new inode, ln within a namespace is a hard link,
# rm drops references and the object files go when the last one does;
# identical data is stored once; unlinked-but-open files stay readable.
SCN_TIMEOUT=240
source "$(dirname "$0")/lib.sh"

mount_fs

# ---------------------------------------------------------------- ls
assert_eq "ls of an empty mount" "" "$(ls "$MNT")"
assert_eq "objects in a new store" 0 "$(object_count)"
mkdir "$MNT/main" "$MNT/other"
assert_eq "ls of the root" $'main\nother' "$(ls "$MNT")"
assert_eq "ls -A of the root" $'.tally\nmain\nother' "$(ls -A "$MNT")"
assert_eq "status namespaces" 2 "$(status_get namespaces)"
assert_eq "status objects (nothing written)" 0 "$(status_get objects)"

# ------------------------------------------------- write: objects appear
rand_file "$TMP/big" $((3 * MIB))
printf 'hello tallyfs\n' >"$TMP/small"
T dd if="$TMP/big" of="$MNT/main/big" bs=1M status=none
T cp "$TMP/small" "$MNT/main/small"
assert_same_content "$TMP/big" "$MNT/main/big"
assert_same_content "$TMP/small" "$MNT/main/small"
assert_eq "ls main" $'big\nsmall' "$(ls "$MNT/main")"

assert_eq "refs of main/big" "1 1 1" "$(refs "$MNT/main/big")"
assert_eq "refs of main/small" "1" "$(refs "$MNT/main/small")"
objv=$(xattr "$MNT/main/big" user.tally.objects)
assert_match "user.tally.objects of main/big" \
	'^[0-9a-f]{32}@0 [0-9a-f]{32}@0 [0-9a-f]{32}@0$' "$objv"
mapfile -t big_objs < <(objects "$MNT/main/big")
small_obj=$(objects "$MNT/main/small")
assert_match "user.tally.objects of main/small" '^[0-9a-f]{32}$' "$small_obj"

assert_eq "object files in the store" 4 "$(object_count)"
assert_eq "status objects" 4 "$(status_get objects)"
assert_eq "object files vs user.tally.objects" \
	"$(printf '%s\n' "${big_objs[@]}" "$small_obj" | sort)" \
	"$(store_objects)"
# each object file holds exactly its block, in the fan-out directory XX
for i in 0 1 2; do
	h=${big_objs[i]}
	f=$STORE/shards/0/${h:0:2}/$h
	[[ -f $f ]] || fail "object file $f of block $i missing"
	T dd if="$TMP/big" of="$TMP/block$i" bs=1M skip="$i" count=1 \
		status=none
	assert_same_content "$TMP/block$i" "$f"
done
f=$STORE/shards/0/${small_obj:0:2}/$small_obj
[[ -f $f ]] || fail "object file $f of main/small missing"
assert_same_content "$TMP/small" "$f"
assert_eq "bytes_stored" $((3 * MIB + 14)) "$(status_get bytes_stored)"

# -------------------------------------- ln across namespaces: new inode
T ln "$MNT/main/big" "$MNT/other/big"
assert_same_content "$TMP/big" "$MNT/other/big"
assert_eq "refs of main/big after ln across" "2 2 2" "$(refs "$MNT/main/big")"
assert_eq "refs of other/big after ln across" "2 2 2" \
	"$(refs "$MNT/other/big")"
assert_eq "objects of other/big" "${big_objs[*]}" \
	"$(objects "$MNT/other/big" | paste -sd' ')"
ino_main=$(stat -c %i "$MNT/main/big")
ino_other=$(stat -c %i "$MNT/other/big")
assert_ne "inode of other/big (must differ from main/big)" \
	"$ino_main" "$ino_other"
assert_eq "nlink of main/big" 1 "$(stat -c %h "$MNT/main/big")"
assert_eq "nlink of other/big" 1 "$(stat -c %h "$MNT/other/big")"
assert_eq "object files after ln across" 4 "$(object_count)"
assert_eq "bytes_stored after ln across" $((3 * MIB + 14)) \
	"$(status_get bytes_stored)"

# ------------------------------------- ln within a namespace: hard link
T ln "$MNT/main/small" "$MNT/main/small2"
assert_eq "inode of main/small2" "$(stat -c %i "$MNT/main/small")" \
	"$(stat -c %i "$MNT/main/small2")"
assert_eq "nlink of main/small" 2 "$(stat -c %h "$MNT/main/small")"
assert_eq "nlink of main/small2" 2 "$(stat -c %h "$MNT/main/small2")"
assert_eq "refs after a hard link" "1" "$(refs "$MNT/main/small2")"
assert_eq "object files after a hard link" 4 "$(object_count)"
assert_eq "ls main" $'big\nsmall\nsmall2' "$(ls "$MNT/main")"
# a write through one name is seen through the other
printf 'more\n' >>"$MNT/main/small2"
assert_eq "main/small after append via small2" $'hello tallyfs\nmore' \
	"$(cat "$MNT/main/small")"
printf 'hello tallyfs\n' >"$MNT/main/small"
assert_same_content "$TMP/small" "$MNT/main/small2"
assert_eq "object of main/small after rewrite" "$small_obj" \
	"$(objects "$MNT/main/small")"
assert_eq "object files after rewrite" 4 "$(object_count)"

# ------------------------------------------------ rm: references drop
T rm "$MNT/other/big"
assert_absent "$MNT/other/big"
assert_eq "refs of main/big after rm other/big" "1 1 1" \
	"$(refs "$MNT/main/big")"
assert_eq "object files after rm of one reference" 4 "$(object_count)"
assert_same_content "$TMP/big" "$MNT/main/big"

T rm "$MNT/main/small"
assert_eq "nlink of main/small2 after rm" 1 "$(stat -c %h "$MNT/main/small2")"
assert_eq "refs of main/small2" "1" "$(refs "$MNT/main/small2")"
assert_eq "object files after rm of a hard link" 4 "$(object_count)"

T rm "$MNT/main/big"
drain
assert_eq "object files after rm of the last reference" \
	"$small_obj" "$(store_objects)"
for h in "${big_objs[@]}"; do
	assert_absent "$STORE/shards/0/${h:0:2}/$h"
done
assert_eq "status objects after rm" 1 "$(status_get objects)"
T rm "$MNT/main/small2"
drain
assert_eq "object files after rm of everything" "" "$(store_objects)"
assert_eq "status objects after rm of everything" 0 "$(status_get objects)"
assert_eq "status bytes_stored after rm of everything" 0 \
	"$(status_get bytes_stored)"

# ------------------------------------- dedup: identical data stored once
rand_file "$TMP/dup" $((2 * MIB + 4096))
T dd if="$TMP/dup" of="$MNT/main/d1" bs=64k status=none
assert_eq "object files for one 2 MiB+4 KiB file" 3 "$(object_count)"
before=$(store_objects)
T dd if="$TMP/dup" of="$MNT/other/d2" bs=1M status=none
T dd if="$TMP/dup" of="$MNT/main/d3" bs=1M status=none
assert_eq "object files after two identical copies" "$before" \
	"$(store_objects)"
assert_eq "refs of main/d1" "3 3 3" "$(refs "$MNT/main/d1")"
assert_eq "refs of other/d2" "3 3 3" "$(refs "$MNT/other/d2")"
assert_eq "objects of d1 and d2" "$(objects "$MNT/main/d1")" \
	"$(objects "$MNT/other/d2")"
assert_eq "status objects with dedup" 3 "$(status_get objects)"
assert_eq "status bytes_stored with dedup" $((2 * MIB + 4096)) \
	"$(status_get bytes_stored)"
# a block repeated inside one file is stored once too
rand_file "$TMP/blk" "$MIB"
cat "$TMP/blk" "$TMP/blk" >"$TMP/twice"
T cp "$TMP/twice" "$MNT/main/twice"
assert_eq "object files after a file of two equal blocks" 4 \
	"$(object_count)"
assert_eq "refs of main/twice" "2 2" "$(refs "$MNT/main/twice")"
assert_same_content "$TMP/twice" "$MNT/main/twice"

# copy-on-write after ln across: the two inodes are independent
T ln "$MNT/main/d1" "$MNT/other/d1"
assert_eq "refs of other/d1" "4 4 4" "$(refs "$MNT/other/d1")"
printf 'XXXX' | T dd of="$MNT/other/d1" bs=1 seek=10 conv=notrunc status=none
assert_same_content "$TMP/dup" "$MNT/main/d1"
assert_eq "refs of main/d1 after writing other/d1" "3 4 4" \
	"$(refs "$MNT/main/d1")"
assert_eq "refs of other/d1 after writing it" "1 4 4" \
	"$(refs "$MNT/other/d1")"
cp "$TMP/dup" "$TMP/dup_mod"
printf 'XXXX' | dd of="$TMP/dup_mod" bs=1 seek=10 conv=notrunc status=none
assert_same_content "$TMP/dup_mod" "$MNT/other/d1"
assert_eq "object files after the copy-on-write" 5 "$(object_count)"

# removing files one by one; the shared objects stay until the last
T rm "$MNT/main/d1" "$MNT/other/d2" "$MNT/main/d3"
assert_eq "object files while other/d1 still shares 2 blocks" 4 \
	"$(object_count)"
assert_eq "refs of other/d1" "1 1 1" "$(refs "$MNT/other/d1")"
T rm "$MNT/other/d1"
drain
assert_eq "object files left (main/twice only)" 1 "$(object_count)"

# --------------------- unlinked but open: readable and writable until close
rand_file "$TMP/open" $((MIB + 7))
T cp "$TMP/open" "$MNT/main/open"
mapfile -t open_objs < <(objects "$MNT/main/open")
assert_eq "object files with main/open" 3 "$(object_count)"
exec 4<"$MNT/main/open"
T rm "$MNT/main/open"
assert_absent "$MNT/main/open"
drain
assert_eq "object files while the unlinked file is open" 3 "$(object_count)"
T cmp - "$TMP/open" <&4 || fail "unlinked open file reads back wrong"
exec 4<&-
# and writable: through a read-write handle kept open across the unlink
exec 4<>"$MNT/main/open2"
printf 'before unlink\n' >&4
T rm "$MNT/main/open2"
printf 'after unlink\n' >&4
assert_eq "unlinked open file read back through its fd" \
	$'before unlink\nafter unlink' "$(cat "/proc/$$/fd/4")"
exec 4>&-
# the release (and the kernel's forget) reach the daemon asynchronously
for ((i = 0; i < 50; i++)); do
	[[ $(object_count) == 1 ]] && break
	sleep 0.1
done
drain
assert_eq "object files after the last close" 1 "$(object_count)"
for h in "${open_objs[@]}"; do
	assert_absent "$STORE/shards/0/${h:0:2}/$h"
done

# --------------------------------- mv across namespaces: same objects
rand_file "$TMP/mv" $((MIB + 3))
T cp "$TMP/mv" "$MNT/main/tomove"
T setfattr -n user.k -v kept "$MNT/main/tomove"
objs_before=$(store_objects)
T mv "$MNT/main/tomove" "$MNT/other/moved"
assert_absent "$MNT/main/tomove"
assert_same_content "$TMP/mv" "$MNT/other/moved"
assert_eq "refs of the moved file" "1 1" "$(refs "$MNT/other/moved")"
assert_eq "xattr of the moved file" kept "$(xattr "$MNT/other/moved" user.k)"
drain
assert_eq "object files after mv across namespaces" "$objs_before" \
	"$(store_objects)"
T rm "$MNT/other/moved"
drain
assert_eq "object files after rm of the moved file" 1 "$(object_count)"

# -------------------------------------------------- namespaces go away
T rm "$MNT/main/twice"
T rmdir "$MNT/main" "$MNT/other"
assert_eq "ls of the root at the end" "" "$(ls "$MNT")"
drain
assert_eq "object files at the end" 0 "$(object_count)"
assert_eq "status namespaces at the end" 0 "$(status_get namespaces)"
assert_eq "status objects at the end" 0 "$(status_get objects)"

umount_fs
fsck_store "$STORE"
assert_eq "tallyfsck exit code" 0 "$FSCK_RC"
log "ok"
