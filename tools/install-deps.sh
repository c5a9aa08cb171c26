#!/bin/sh
# SPDX-License-Identifier: MIT
# Install what tallyfs needs to build, mount and test, from Debian 12's
# packages. Does nothing when everything is already installed. nodejs and
# npm run the S3 test server (tests/s3); python3-botocore, the independent
# SigV4 signer of tests/s3/test_sig.sh, is importable by /usr/bin/python3.
# postgresql-15 provides the server binaries (/usr/lib/postgresql/15/bin)
# of the throwaway clusters of tests/pg/lib.sh; libpq-dev, libpq's headers
# and pkg-config file, is for the code that talks to PostgreSQL.
# faketime runs a test process with its clock off the server's
# (tests/pg/meson.build, unit_meta_pg_skew, and the fault harness's
# skewed node). iproute2 makes the harness's network namespaces, veth
# pairs and bridge (tests/harness/hosts.sh). pandoc makes the man pages
# from docs/*.md at build time; man-db and groff-base read them (the
# install test, tests/scenario/32_install.sh), which also completes
# tallyctl's words with bash-completion. libmicrohttpd-dev serves the
# metrics to Prometheus (-o metrics=ADDR:PORT, fs/metrics_http.c);
# python3-prometheus-client parses them in tests/scenario/33_metrics.sh.
set -eu
PKGS="gcc clang meson ninja-build pkg-config libfuse3-dev fuse3
libxxhash-dev libsqlite3-dev sqlite3 libcriterion-dev clang-format
attr rsync tar python3 git bc libclang-rt-14-dev libjansson-dev
libcurl4-openssl-dev libexpat1-dev libssl-dev nodejs npm python3-botocore curl
xxhash postgresql-15 libpq-dev faketime iproute2 pandoc man-db groff-base
bash-completion libmicrohttpd-dev python3-prometheus-client libzstd-dev
e2fsprogs mount"
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
	# Installing postgresql-15 creates and starts a cluster "main" on port
	# 5432 (configure_version in postgresql-common's maintscripts-functions)
	# unless create_main_cluster is off in
	# /etc/postgresql-common/createcluster.conf. The tests never use it.
	# That file is postgresql-common's, installed through ucf: written
	# beforehand it would lack the packaged values of the other settings
	# (ucf, seeing a local file, asks; noninteractive, keeps it). So
	# install postgresql-common first, then turn the setting off (the
	# postgres Docker image's recipe), then the rest. Only when
	# postgresql-common was not installed: a machine that already had a
	# PostgreSQL set-up keeps its own choice.
	if ! dpkg-query -W -f='${Status}' postgresql-common 2>/dev/null |
		grep -q "ok installed"; then
		case " $missing " in
		*" postgresql-15 "*)
			$SUDO apt-get install -y -qq --no-install-recommends \
				postgresql-common
			$SUDO pg_conftool /etc/postgresql-common/createcluster.conf \
				set create_main_cluster false
			;;
		esac
	fi
	# shellcheck disable=SC2086
	$SUDO apt-get install -y -qq --no-install-recommends $missing
fi
