"""Smoke test of `heimdall bench`: tiny sizes (--quick), every figure present with finite numbers.
No timing assertions: the numbers depend on the machine and on what else runs on it."""

from __future__ import annotations

import argparse
import json
import math

from heimdall_pipeline.bench.figures import ALL_FIGURES


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def test_bench_quick_writes_every_figure(embedded_services, engine, tmp_path, capsys):
    from heimdall_pipeline import bench

    out = tmp_path / "bench.json"
    code = bench.run(argparse.Namespace(json=str(out), quick=True, scale=False, repeat=2))
    printed = capsys.readouterr().out
    doc = json.loads(out.read_text())
    assert doc["errors"] == {}, doc["errors"]
    assert code == 0
    assert doc["quick"] is True
    assert set(doc["figures"]) == set(ALL_FIGURES)
    machine = doc["machine"]
    assert machine["cores"] >= 1 and machine["memory_mb"] > 0 and machine["versions"]["dagster"]
    for fid, figure in doc["figures"].items():
        for part in ("value", "baseline"):
            stat = figure[part]
            assert stat["n"] >= 2, (fid, part)
            for name in ("median", "min", "max"):
                assert _finite(stat[name]) and stat[name] > 0, (fid, part, name, stat[name])
            assert all(_finite(s) for s in stat["samples"]), (fid, part)
            assert stat["min"] <= stat["median"] <= stat["max"]
        assert _finite(figure["ratio"]) and figure["ratio"] > 0, fid
        assert figure["targets"], fid
        for target in figure["targets"]:
            assert _finite(target["value"]) and _finite(target["limit"]) and isinstance(target["met"], bool)
        assert fid in printed  # the table names every figure


def test_bench_scale_flag_delegates_or_says_unavailable(capsys, monkeypatch):
    import importlib.util

    from heimdall_pipeline import bench

    if importlib.util.find_spec("heimdall_pipeline.bench.scale") is not None:
        import heimdall_pipeline.bench.scale as scale

        monkeypatch.setattr(scale, "run", lambda args: 7)
        assert bench.run(argparse.Namespace(json=None, quick=True, scale=True, repeat=5)) == 7
    else:
        assert bench.run(argparse.Namespace(json=None, quick=True, scale=True, repeat=5)) == 2
        assert "not available" in capsys.readouterr().out


def test_bench_leaves_nothing_behind(embedded_services, engine, s3_client):
    """A quick run's sessions, rows and objects are removed (checked on a tiny Bench)."""
    import os

    import sqlalchemy as sa

    from heimdall_pipeline.bench.figures import Bench, Sizes, upsert_figure

    b = Bench(Sizes.quick(), 2, True)
    key = b.request(0.2, "t")
    upsert_figure(b)
    b.cleanup()
    with engine.connect() as conn:
        left = conn.execute(sa.text("SELECT count(*) FROM measurements WHERE session_key LIKE :p"),
                            {"p": f"bench{b.run_tag}%"}).scalar_one()
        sessions = conn.execute(sa.text("SELECT count(*) FROM sessions WHERE session_key = :k"), {"k": key}).scalar_one()
    assert left == 0 and sessions == 0
    listed = s3_client.list_object_versions(Bucket=os.environ["HEIMDALL_S3_BUCKET"], Prefix=f"sessions/bench{b.run_tag}")
    assert not listed.get("Versions") and not listed.get("DeleteMarkers")
