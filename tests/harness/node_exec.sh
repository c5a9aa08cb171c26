#!/bin/sh
# SPDX-License-Identifier: MIT
# The tallyfs of a harness node (tests/harness/hosts.sh), given to
# mount_fs as $TALLYFS: runs the real daemon ($HARNESS_TALLYFS) in the
# node's network namespace ($HARNESS_NS). nsenter enters the network
# namespace alone, so the mount is made in the shared mount namespace,
# where the driver and the other nodes see it; it execs the daemon
# without forking, so the pid mount_fs records is the daemon's. With
# $HARNESS_SKEW set (a faketime offset, "-2m") the daemon's wall clock
# runs that far off (libfaketime preloaded; its monotonic clock left
# true).
if [ -n "${HARNESS_SKEW:-}" ]; then
	LD_PRELOAD=$HARNESS_FAKETIME_LIB
	FAKETIME=$HARNESS_SKEW
	FAKETIME_DONT_FAKE_MONOTONIC=1
	export LD_PRELOAD FAKETIME FAKETIME_DONT_FAKE_MONOTONIC
fi
exec nsenter --net="/var/run/netns/$HARNESS_NS" -- "$HARNESS_TALLYFS" "$@"
