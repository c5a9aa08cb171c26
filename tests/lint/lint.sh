#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# House rules that a compiler does not check: formatting,
# layering (core/ is FUSE-free; its folders: layers.sh), banned functions, SPDX headers, the
# size of a file of core/.
set -u
cd "${TALLY_SRC:?}" || exit 1
fail=0
mapfile -t files < <(git ls-files '*.c' '*.h' 2>/dev/null || find core fs tools tests -name '*.[ch]')

for f in "${files[@]}"; do
	head -n 2 "$f" | grep -q 'SPDX-License-Identifier' ||
		{ echo "lint: $f: no SPDX line"; fail=1; }
done

if grep -nE '#include *[<"]fuse' core/*/*.c core/*/*.h; then
	echo "lint: core/ must not include FUSE headers"
	fail=1
fi
if grep -nE 'fuse_req_t' core/*/*.c core/*/*.h; then
	echo "lint: core/ must not see fuse_req_t"
	fail=1
fi

# a file of core/ a reader can hold: 1,200 lines at most (split it by job,
# as core/remote/, with a private header for what the parts share)
for f in core/*/*.c core/*/*.h; do
	n=$(wc -l <"$f")
	((n <= 1200)) ||
		{ echo "lint: $f has $n lines (1,200 at most)"; fail=1; }
done

banned='\b(strcpy|strcat|sprintf|vsprintf|strtok|gets)[[:space:]]*\('
if grep -nE "$banned" "${files[@]}"; then
	echo "lint: banned function used"
	fail=1
fi

# the metadata lock is private to core/fs/tally.c (docs/design.md, 9)
if grep -nE '\btally_meta_(lock|unlock)[[:space:]]*\(' core/*/*.c fs/*.c \
	tools/*.c | grep -v '^core/fs/tally\.c:'; then
	echo "lint: core modules use tally_meta_read/txn, not the lock"
	fail=1
fi

# object files are deleted by core/objects/reap.c alone (docs/design.md, 4)
if grep -nE '\bobjstore_(unlink|doom|unlink_doomed)[[:space:]]*\(' \
	core/*/*.c fs/*.c tools/*.c | grep -vE '^core/objects/(reap|objstore)\.c:'; then
	echo "lint: object files are deleted through core/objects/reap.c only"
	fail=1
fi

# keys of the bucket too (docs/design.md, 10)
if grep -nE '\bs3_delete[[:space:]]*\(' core/*/*.c fs/*.c tools/*.c |
	grep -vE '^core/(objects/reap|s3/s3)\.c:'; then
	echo "lint: bucket keys are deleted through core/objects/reap.c only"
	fail=1
fi

if command -v clang-format >/dev/null; then
	for f in "${files[@]}"; do
		if ! clang-format --dry-run --Werror "$f" 2>/dev/null; then
			echo "lint: $f: not clang-formatted (clang-format -i $f)"
			fail=1
		fi
	done
else
	echo "lint: clang-format missing: install it (tools/install-deps.sh)"
	fail=1
fi

if [ "$fail" = 0 ]; then
	echo "1 passed, 0 failed"
	exit 0
fi
echo "0 passed, 1 failed"
exit 1
