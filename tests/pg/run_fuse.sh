#!/bin/bash
# SPDX-License-Identifier: MIT
# A tests/fuse suite with its metadata in PostgreSQL: the same tests, the
# same real mounts, each in a database of its own that tests/fuse/mount.c
# creates and drops (TALLY_TEST_PG). $1: the test binary; the rest goes
# to it (Criterion's options).
set -euo pipefail
: "${TALLY_SRC:=$(cd "$(dirname "$0")/../.." && pwd)}"
# shellcheck source=tests/pg/lib.sh
. "$TALLY_SRC/tests/pg/lib.sh"

bin=$1
shift
pg_start
pg_psql -c 'ALTER ROLE tally CREATEDB'
export TALLY_TEST_PG=${PG_URI%/*}
"$bin" "$@"
