#!/bin/bash
# SPDX-License-Identifier: MIT
# tests/unit/test_meta_pg against a throwaway PostgreSQL cluster: the
# engine of core/meta_pg.c, a database per test (the role may create
# them). $1: the test binary; the rest goes to it (Criterion's options).
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
