#!/bin/sh
# SPDX-License-Identifier: MIT
# Install dependencies, build, and run every test suite twice: once with
# gcc and -Werror, once with clang and AddressSanitizer+UBSan.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
tools/install-deps.sh

setup() {
	dir=$1
	shift
	if [ -f "$dir/build.ninja" ]; then
		meson configure "$dir" "$@" >/dev/null
	else
		meson setup "$dir" "$@" >/dev/null
	fi
}

echo "== gcc, -Werror"
setup build-test -Dwerror=true -Dtests=enabled
ninja -C build-test
meson test -C build-test --print-errorlogs --num-processes 2

echo "== clang, ASan + UBSan"
CC=clang setup build-asan -Dwerror=true -Dtests=enabled \
	-Db_sanitize=address,undefined -Db_lundef=false -Dbuildtype=debug
ninja -C build-asan
ASAN_OPTIONS=abort_on_error=0:detect_leaks=1 \
UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	meson test -C build-asan --print-errorlogs --num-processes 2 \
	--timeout-multiplier 3
