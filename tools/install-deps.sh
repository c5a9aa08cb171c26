#!/bin/sh
# SPDX-License-Identifier: MIT
# Install what tallyfs needs to build, mount and test, from Debian 12's
# packages. Does nothing when everything is already installed. nodejs and
# npm run the S3 test server (tests/s3); python3-botocore, the independent
# SigV4 signer of tests/s3/test_sig.sh, is importable by /usr/bin/python3.
set -eu
PKGS="gcc clang meson ninja-build pkg-config libfuse3-dev fuse3
libxxhash-dev libsqlite3-dev sqlite3 libcriterion-dev clang-format
attr rsync tar python3 git bc libclang-rt-14-dev libjansson-dev
libcurl4-openssl-dev libexpat1-dev libssl-dev nodejs npm python3-botocore curl
xxhash"
SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo
missing=""
for p in $PKGS; do
	# a node and npm installed from elsewhere (a newer Node.js) will do
	case $p in
	nodejs | npm)
		command -v node >/dev/null 2>&1 &&
			command -v npm >/dev/null 2>&1 && continue
		;;
	esac
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" ||
		missing="$missing $p"
done
if [ -n "$missing" ]; then
	echo "install-deps: installing:$missing"
	export DEBIAN_FRONTEND=noninteractive
	$SUDO apt-get update -qq
	# shellcheck disable=SC2086
	$SUDO apt-get install -y -qq --no-install-recommends $missing
fi
