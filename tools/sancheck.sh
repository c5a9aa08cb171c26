#!/bin/sh
# SPDX-License-Identifier: MIT
# The wrapper of every test of the sanitizer build (tools/test.sh runs
# meson test --wrapper tools/sancheck.sh): what AddressSanitizer,
# LeakSanitizer and UBSan report, from any process the test starts
# (Criterion's workers, the daemons it mounts, the tools it runs), goes
# to files in a directory of the test's own below $TALLY_SANITIZER_LOGS,
# and any such file fails the test, printed on its stderr. Without it a
# report fails nothing: Criterion ignores how its workers exit, and a
# daemon's exit status is not the test's. tools/test.sh looks at the
# whole directory once more after the run, for a process that reported
# after its test had ended.
set -u
: "${TALLY_SANITIZER_LOGS:?the directory of the reports}"
dir=$(mktemp -d "$TALLY_SANITIZER_LOGS/test.XXXXXX") || exit 1
# a daemon that drops its privileges writes here too
chmod 1777 "$dir"
printf '%s\n' "$*" >"$dir/command"
ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}log_path=$dir/report"
UBSAN_OPTIONS="${UBSAN_OPTIONS:+$UBSAN_OPTIONS:}log_path=$dir/report"
export ASAN_OPTIONS UBSAN_OPTIONS
rc=0
"$@" || rc=$?
for f in "$dir"/report.*; do
	[ -e "$f" ] || continue
	printf 'sanitizer report %s of: %s\n' "${f##*/}" "$*" >&2
	cat "$f" >&2
	[ "$rc" -ne 0 ] || rc=1
done
exit "$rc"
