#!/usr/bin/env bash
# The tests on a fresh machine: install what is missing, then pytest. The test session starts the
# embedded services through the same code as `heimdall services up` and stops what it started.
# Extra arguments go to pytest (e.g. -m "not browser" or -k pipeline).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
venv=$(bash "$repo/scripts/bootstrap.sh")
cd "$repo"
exec "$venv/bin/python" -m pytest "$@"
