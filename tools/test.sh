#!/bin/sh
# SPDX-License-Identifier: MIT
# Install dependencies, build, and run every test suite twice: once with
# gcc and -Werror, once with clang and AddressSanitizer+UBSan; then the
# concurrency stress test once more under ThreadSanitizer.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
tools/install-deps.sh
# Debian's python3, with the modules tools/install-deps.sh installs, and
# not a shim of a version manager in front of it in PATH: the tests start
# python some thousand times, and a shim costs 0.4 s of each start.
PATH=/usr/bin:$PATH
export PATH

setup() {
	dir=$1
	shift
	if [ -f "$dir/build.ninja" ]; then
		meson configure "$dir" "$@" >/dev/null
	else
		meson setup "$dir" "$@" >/dev/null
	fi
}

# The fault harness's draws in CI: one seed, so that main's CI does not
# fail at random on a seed no one tried (SEED= explores; docs/design.md,
# "The fault harness")
export HARNESS_SEED=20261126

echo "== gcc, -Werror"
setup build-test -Dwerror=true -Dtests=enabled
ninja -C build-test
# 15_crash kills 60 times in CI (100 by default: KILLS=, SEED= replays)
KILLS=60 meson test -C build-test --print-errorlogs --num-processes 2

echo "== clang, ASan + UBSan"
CC=clang setup build-asan -Dwerror=true -Dtests=enabled \
	-Db_sanitize=address,undefined -Db_lundef=false -Dbuildtype=debug
ninja -C build-asan
# Every sanitizer report, a leak included, fails its test
# (tools/sancheck.sh), and the run, found here if it came late.
logs=$top/build-asan/sanitizer-logs
rm -rf "$logs"
mkdir "$logs"
# The fault harness (tests/harness) plays 30 rounds in the gcc run and
# 10 here, and 15_crash kills 60 times there and 40 here: every
# sanitizer run of them costs minutes of CI's 60.
ROUNDS=10 KILLS=40 ASAN_OPTIONS=abort_on_error=0:detect_leaks=1 \
UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
TALLY_SANITIZER_LOGS=$logs SCN_TIMEOUT_SCALE=3 \
	meson test -C build-asan --print-errorlogs --num-processes 2 \
	--timeout-multiplier 3 --wrapper "$top/tools/sancheck.sh"
n=$(find "$logs" -name 'report.*' | wc -l)
if [ "$n" -gt 0 ]; then
	find "$logs" -name 'report.*' | sort | while read -r f; do
		printf '== sanitizer report %s of: %s\n' "$f" \
			"$(cat "${f%/*}/command")"
		cat "$f"
	done
	echo "sanitizer reports: $n" >&2
	exit 1
fi

# Criterion cannot start under TSan: the stress test is built without it
# (tests/unit/nocriterion.h), and only what it needs is built.
echo "== clang, ThreadSanitizer: the concurrency stress test"
CC=clang setup build-tsan -Dwerror=true -Dtests=enabled \
	-Db_sanitize=thread -Db_lundef=false -Dbuildtype=debug
ninja -C build-tsan tests/unit/test_stress_plain
TSAN_OPTIONS=halt_on_error=1:exitcode=66 \
	timeout 300 build-tsan/tests/unit/test_stress_plain
