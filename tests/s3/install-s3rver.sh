#!/bin/sh
# SPDX-License-Identifier: MIT
# Install the S3 test server, @20minutes/s3rver at the version pinned by
# tests/s3/package-lock.json, with `npm ci` into $TALLY_S3RVER_DIR
# (default: $TALLY_BUILD/s3rver, or tests/s3 itself when TALLY_BUILD is
# not set either; node_modules/ lands there). Idempotent: a marker holding
# the lock file's hash says the install is complete and current. Tests
# running at once serialise on a lock file beside the directory. Prints
# the directory; fails (exit 1, npm's output on stderr) if npm does.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
if [ -n "${TALLY_S3RVER_DIR:-}" ]; then
	dir=$TALLY_S3RVER_DIR
elif [ -n "${TALLY_BUILD:-}" ]; then
	dir=$TALLY_BUILD/s3rver
else
	dir=$here
fi
for tool in node npm flock sha256sum; do
	command -v "$tool" >/dev/null 2>&1 || {
		echo "install-s3rver: $tool is missing (tools/install-deps.sh)" >&2
		exit 1
	}
done
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
want=$(sha256sum <"$here/package-lock.json" | cut -d' ' -f1)
marker=$dir/.s3rver-installed
module=$dir/node_modules/@20minutes/s3rver/package.json

current() {
	[ -f "$marker" ] && [ -f "$module" ] &&
		[ "$(cat "$marker")" = "$want" ]
}

if current; then
	echo "$dir"
	exit 0
fi
exec 9>"$dir/.s3rver-install.lock"
if ! flock -w 600 9; then
	echo "install-s3rver: waited 600s for the lock $dir/.s3rver-install.lock" >&2
	exit 1
fi
# another test may have installed it while this one waited
if current; then
	echo "$dir"
	exit 0
fi
rm -f "$marker"
if [ "$dir" != "$here" ]; then
	cp "$here/package.json" "$here/package-lock.json" "$dir/"
fi
log=$dir/.s3rver-install.log
echo "install-s3rver: npm ci in $dir" >&2
if ! (cd "$dir" && npm ci --no-audit --no-fund --ignore-scripts \
	--loglevel=error) >"$log" 2>&1; then
	echo "install-s3rver: npm ci failed in $dir:" >&2
	cat "$log" >&2
	exit 1
fi
if [ ! -f "$module" ]; then
	echo "install-s3rver: npm ci succeeded but $module is missing" >&2
	exit 1
fi
echo "$want" >"$marker"
echo "$dir"
