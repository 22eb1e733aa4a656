#!/usr/bin/env bash
# The main job on a fresh machine: install what is missing, start the embedded services and run
# one whole acquisition session through Dagster. Extra arguments go to `heimdall main`
# (e.g. --freq 14.2e6 --duration 30 --ui).
set -euo pipefail
venv=$(bash "$(dirname "$0")/bootstrap.sh")
exec "$venv/bin/heimdall" main "$@"
