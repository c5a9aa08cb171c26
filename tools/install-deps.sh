#!/bin/sh
# SPDX-License-Identifier: MIT
# Install what tallyfs needs to build, mount and test, from Debian 12's
# packages. Does nothing when everything is already installed.
set -eu
PKGS="gcc clang meson ninja-build pkg-config libfuse3-dev fuse3
libxxhash-dev libsqlite3-dev sqlite3 libcriterion-dev clang-format
attr rsync tar python3 git bc libclang-rt-14-dev libjansson-dev curl"
SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo
missing=""
for p in $PKGS; do
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
