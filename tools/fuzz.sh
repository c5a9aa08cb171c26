#!/bin/sh
# SPDX-License-Identifier: MIT
# The long mode of the fuzz harnesses (tests/fuzz): build them in the
# clang ASan+UBSan tree (build-asan, as tools/test.sh does) and run each
# for SECONDS (default 300), seeded from tests/fuzz/corpus/NAME, new inputs
# kept in build-asan/tests/fuzz/corpus-NAME. Prints the executions of each
# harness; exits non-zero if one found a crash (its input is saved as
# build-asan/tests/fuzz/crash-*).
#   tools/fuzz.sh [SECONDS] [NAME...]
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
secs=${1:-300}
[ $# -gt 0 ] && shift
names=${*:-ctl marker shard_marker key status store_open}

if [ ! -f build-asan/build.ninja ]; then
	CC=clang meson setup build-asan -Dwerror=true -Dtests=enabled \
		-Db_sanitize=address,undefined -Db_lundef=false \
		-Dbuildtype=debug >/dev/null
fi
for n in $names; do
	ninja -C build-asan "tests/fuzz/fuzz_$n" >/dev/null
done
export ASAN_OPTIONS=abort_on_error=0:detect_leaks=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
status=0
out=build-asan/tests/fuzz
for n in $names; do
	mkdir -p "$out/corpus-$n"
	if "$out/fuzz_$n" -max_total_time="$secs" -print_final_stats=1 \
		-artifact_prefix="$out/" "$out/corpus-$n" \
		"tests/fuzz/corpus/$n" >"$out/fuzz_$n.log" 2>&1; then
		verdict=ok
	else
		verdict="FAILED (see $out/fuzz_$n.log)"
		status=1
	fi
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' \
		"$out/fuzz_$n.log" | tail -n 1)
	printf '%-14s %12s executions in %ss: %s\n' "$n" "${execs:-?}" \
		"$secs" "$verdict"
done
exit $status
