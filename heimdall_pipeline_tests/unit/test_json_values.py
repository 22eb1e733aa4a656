"""json_dumps: the text every jsonb value is sent as (bulk upsert and SQLAlchemy alike)."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import numpy as np

from heimdall_pipeline.db.engine import json_dumps


def test_plain_values_round_trip():
    value = {"metrics": {"snr_db": 10.5, "nperseg": 1024, "ok": True, "none": None},
             "kinds": ["simulated", "é"], "nested": [[1, 2], {"a": "b"}]}
    assert json.loads(json_dumps(value)) == value
    assert json.loads(json_dumps("text")) == "text" and json_dumps(3) == "3" and json_dumps(None) == "null"


def test_non_finite_numpy_and_datetimes_are_made_valid_json():
    value = {"nan": float("nan"), "inf": [float("-inf")], "np": np.float32(1.5), "arr": np.arange(3),
             "at": datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc), 7: "int key"}
    assert json.loads(json_dumps(value)) == {"nan": None, "inf": [None], "np": 1.5, "arr": [0, 1, 2],
                                             "at": "2026-01-02T03:04:05+00:00", "7": "int key"}
