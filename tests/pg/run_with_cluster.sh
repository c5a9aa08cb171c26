#!/bin/bash
# SPDX-License-Identifier: MIT
# Run a test binary against a throwaway PostgreSQL cluster
# (tests/pg/lib.sh): tests/unit/test_meta_pg (the engine of
# core/meta/meta_pg.c) and every tests/fuse suite with its metadata in the
# cluster. Each test makes a database of its own (TALLY_TEST_PG: the
# cluster's address, a role that may create databases; tests/fuse/mount.c
# and test_meta_pg create and drop them). $1: the binary; the rest goes
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
