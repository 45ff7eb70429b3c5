#!/usr/bin/env bash
# The demo from a fresh clone: venv, install core + plugins, then `metricx demo` (arguments pass through,
# e.g. --exit-after 60 or --reset).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install.sh
exec .venv/bin/metricx demo "$@"
