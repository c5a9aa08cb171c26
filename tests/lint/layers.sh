#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# core/'s folders are layers (core/README.md): a folder includes the
# headers of, and calls the functions of, only itself and the folders
# below it. The order is the one core/meson.build builds them in.
#
# Two checks: the #include lines of the sources, and the calls the
# compiled objects of libtally (argument 1) make into each other, read
# with nm. A call upward goes through an interface the lower layer owns
# (function pointers it is handed: core/fs/tally.h, struct tally_upper).
set -u
src=${TALLY_SRC:?}
lib=${1:?usage: layers.sh LIBTALLY.a}
fail=0

mapfile -t order < <(sed -n "s/^foreach layer : \[\(.*\)\]$/\1/p" \
	"$src/core/meson.build" | tr -d "' " | tr ',' '\n')
declare -A rank
for i in "${!order[@]}"; do
	rank[${order[$i]}]=$i
done
if [ "${#order[@]}" -lt 2 ]; then
	echo "layers: cannot read the layers of core/meson.build"
	exit 1
fi

# every folder of core/ is a layer
for d in "$src"/core/*/; do
	d=$(basename "$d")
	[ -n "${rank[$d]:-}" ] ||
		{ echo "layers: core/$d/ is not a layer of core/meson.build"; fail=1; }
done

# 1. includes
while IFS=: read -r file line inc; do
	from=${file#core/}
	from=${from%%/*}
	to=${inc#*\"core/}
	to=${to%%/*}
	[ -n "${rank[$to]:-}" ] || continue
	if ((rank[$to] > rank[$from])); then
		echo "layers: $file:$line: core/$from/ includes core/$to/ (a layer above)"
		fail=1
	fi
done < <(cd "$src" && grep -nE '^#include "core/[a-z0-9_]+/' core/*/*.[ch])

# 2. calls: what each object needs that another object of libtally defines
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
nm -A --defined-only "$lib" 2>/dev/null |
	awk '$(NF-1) ~ /^[TDBR]$/ { split($1, p, ":"); n = split(p[2], q, "/"); print $NF, q[n] }' |
	sort -u >"$tmp/defs"
nm -A -u "$lib" 2>/dev/null |
	awk '{ split($1, p, ":"); n = split(p[2], q, "/"); print $NF, q[n] }' | sort -u >"$tmp/uses"
if [ ! -s "$tmp/defs" ]; then
	echo "layers: nm found nothing in $lib"
	exit 1
fi
# object names are FOLDER_FILE.c.o
while read -r sym user def; do
	from=${user%%_*}
	to=${def%%_*}
	[ -n "${rank[$from]:-}" ] && [ -n "${rank[$to]:-}" ] || continue
	if ((rank[$to] > rank[$from])); then
		echo "layers: core/$from/${user#*_} calls $sym of core/$to/${def#*_} (a layer above)"
		fail=1
	fi
done < <(join "$tmp/uses" "$tmp/defs" | sed 's/\.o//g')

if [ "$fail" = 0 ]; then
	echo "layers: ${order[*]}: no call or include upward"
	echo "1 passed, 0 failed"
	exit 0
fi
echo "0 passed, 1 failed"
exit 1
