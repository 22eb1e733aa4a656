"""What loading the code location imports: every run worker and code server pays for it before
doing anything, so heavy modules load where they are used (docs/benchmark.md, `import_time`)."""

from __future__ import annotations

import json
import subprocess
import sys

# Loaded by the first capture, measurement, picture or database call, never by the definitions.
LOADED_WHEN_USED = (
    "aiohttp",                      # the KiwiSDR client (sources/kiwisdr.py)
    "scipy",                        # simulator FFT, metrics, localization
    "sigmf", "jsonschema",          # the stored metadata format (storage/iq_format.py)
    "matplotlib",                   # spectrum and localization pictures
    "psycopg",                      # the database driver
    "heimdall_pipeline.db.models",  # the database layer (its SQLAlchemy ORM models and migrations)
    "heimdall_pipeline.sources.kiwisdr",
)


def test_loading_the_code_location_leaves_heavy_modules_for_later():
    code = ("import json, sys; import heimdall_pipeline.definitions; "
            f"print(json.dumps(sorted(m for m in {LOADED_WHEN_USED!r} if m in sys.modules)))")
    proc = subprocess.run([sys.executable, "-W", "ignore", "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []
