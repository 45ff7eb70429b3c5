#!/usr/bin/env bash
# The whole test suite from a fresh clone: venv, install core + plugins, lint, types, tests.
# PostgreSQL and Redis: METRICX_TEST_DATABASE_URL / METRICX_TEST_REDIS_URL when set (that Redis
# database is flushed), else embedded servers under .metricx/test.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install.sh --test
echo "== ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "== mypy"
.venv/bin/mypy core $(find plugins -mindepth 2 -maxdepth 2 -type d -name 'metricx_*' ! -name '*.egg-info')
echo "== pytest"
exec .venv/bin/python -m pytest "$@"
