"""`heimdall bench --scale`: how a PostgreSQL-backed Dagster instance behaves with many sessions.

On a PRIVATE instance (a scratch `dagster` database in the embedded PostgreSQL, dropped at the
end, so nobody else's UI or tests slow down) it grows the `sessions` dynamic partitions step by
step (1k, 10k, 50k sessions × 7 receivers; --quick: 50, 200) through Dagster's public API
(`add_dynamic_partitions`, `report_runless_asset_event(AssetMaterialization(...))` for raw_iq,
one per session × receiver) and at each size measures:

- adding one more session partition (`add_dynamic_partitions`),
- one tick of `session_request_sensor` (`build_sensor_context(instance=...)`) with 10 pending
  requests (in a scratch heimdall database, so the real sessions table is untouched),
- the GraphQL queries the UI sends for the partition health of raw_iq (the asset page's
  `PartitionHealthQuery` + the asset-graph/catalog `partitionStats`), against a real
  dagster-webserver on that instance.

Reporting (one raw_iq materialization per partition) is done in parallel threads over pooled
connections; when the largest size cannot be reached within the time
budget (HEIMDALL_SCALE_BUDGET_S, default 1200 s of reporting), the remaining sessions are added as
partitions WITHOUT materializations and the report says so (partition count is what the status
queries scale with; materialization count is reported next to it).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

from sqlalchemy.engine import make_url

from heimdall_pipeline import settings
from heimdall_pipeline.services.common import stop_process_group
from heimdall_pipeline.services.manager import embedded_services

RECEIVERS = ["f5len", "ph0m", "g0mjw", "hb9q", "dk0ghz", "oe3xec", "hb9sl"]
FULL_SIZES = [1_000, 10_000, 50_000]
QUICK_SIZES = [50, 200]
USABLE_QUERY_S = 2.0  # a UI query slower than this is "not usable" for the partition view


# --------------------------------------------------------------------------------------------
# A private Dagster instance: scratch database + DAGSTER_HOME (also used by test_run_queue.py)
# --------------------------------------------------------------------------------------------
def create_scratch_database(prefix: str, owner: str, *, timescaledb: bool = False) -> str:
    name = f"{prefix}_{secrets.token_hex(5)}"
    embedded_services().postgres.create_database(name, owner, timescaledb=timescaledb)
    return name


def drop_scratch_database(name: str) -> None:
    embedded_services().postgres.drop_database(name)


def instance_yaml(db_name: str, *, run_coordinator: str = "") -> str:
    return f"""storage:
  postgres:
    postgres_db:
      username: {{env: DAGSTER_PG_USER}}
      password: {{env: DAGSTER_PG_PASSWORD}}
      hostname: {{env: DAGSTER_PG_HOST}}
      port: {{env: DAGSTER_PG_PORT}}
      db_name: {db_name}
      scheme: postgresql+psycopg2
{run_coordinator}
telemetry:
  enabled: false
"""


@contextlib.contextmanager
def private_dagster_home(prefix: str = "heimdall_scale", *, run_coordinator: str = "",
                         extra_yaml: str = "") -> Iterator[tuple[Path, str]]:
    """(DAGSTER_HOME path, database name) of a fresh PostgreSQL-backed instance; both removed on exit."""
    settings.load_embedded_env()
    db_name = create_scratch_database(prefix, os.environ["DAGSTER_PG_USER"])
    home = Path(tempfile.mkdtemp(prefix=f"{prefix}_home_"))
    try:
        (home / "dagster.yaml").write_text(instance_yaml(db_name, run_coordinator=run_coordinator) + extra_yaml)
        yield home, db_name
    finally:
        shutil.rmtree(home, ignore_errors=True)
        drop_scratch_database(db_name)


@contextlib.contextmanager
def scratch_heimdall_database(prefix: str = "heimdall_scale_app") -> Iterator[str]:
    """SQLAlchemy URL of a fresh heimdall (TimescaleDB) database owned by the app role, migrated."""
    from heimdall_pipeline.db.engine import dispose_engine, make_engine
    from heimdall_pipeline.db.migrations import migrate

    settings.load_embedded_env()
    app = make_url(os.environ["HEIMDALL_DATABASE_URL"])
    name = create_scratch_database(prefix, app.username, timescaledb=True)
    try:
        url = app.set(database=name).render_as_string(hide_password=False)
        migrate(make_engine(url))
        yield url
    finally:

        with contextlib.suppress(Exception):
            dispose_engine(app.set(database=name))
        drop_scratch_database(name)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --------------------------------------------------------------------------------------------
# Measurements
# --------------------------------------------------------------------------------------------
def _timed(fn, repeat: int = 3) -> dict:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times), "n": repeat}


def session_key_of(i: int) -> str:
    return f"scale{i:06d}"


def report_materializations(instance, session_keys: list[str], *, threads: int = 4) -> float:
    """A raw_iq materialization for every session × receiver (one event per partition, the
    asset whose partition health is measured); returns seconds."""
    from dagster import AssetMaterialization

    from heimdall_pipeline.partitions import partition_key_for

    def report(session_key: str) -> None:
        for rid in RECEIVERS:
            key = partition_key_for(session_key, rid)
            instance.report_runless_asset_event(AssetMaterialization(
                asset_key="raw_iq", partition=key, metadata={"capture_status": "stored", "synthetic": True}))

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(report, session_keys))
    return time.perf_counter() - start


PARTITION_HEALTH_QUERY = """
query PartitionHealthQuery($assetKey: AssetKeyInput!) {
  assetNodeOrError(assetKey: $assetKey) {
    __typename
    ... on AssetNode {
      id
      partitionKeysByDimension { name type partitionKeys }
      assetPartitionStatuses {
        __typename
        ... on DefaultPartitionStatuses { materializedPartitions materializingPartitions failedPartitions }
        ... on MultiPartitionStatuses {
          primaryDimensionName
          ranges {
            primaryDimStartKey primaryDimEndKey primaryDimStartTime primaryDimEndTime
            secondaryDim {
              __typename
              ... on DefaultPartitionStatuses { materializedPartitions materializingPartitions failedPartitions }
              ... on TimePartitionStatuses { ranges { status startKey endKey } }
            }
          }
        }
        ... on TimePartitionStatuses { ranges { status startKey endKey } }
      }
    }
  }
}
"""

PARTITION_STATS_QUERY = """
query AssetGraphLiveQuery($assetKeys: [AssetKeyInput!]!) {
  assetNodes(assetKeys: $assetKeys, loadMaterializations: true) {
    id
    partitionStats { numMaterialized numMaterializing numPartitions numFailed }
  }
}
"""


def graphql(url: str, query: str, variables: dict, timeout: float = 600.0) -> dict:
    body = json.dumps({"query": query, "variables": variables}).encode()
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        payload = json.loads(response.read())
    if payload.get("errors"):
        raise RuntimeError(f"GraphQL errors: {payload['errors'][:2]}")
    return payload["data"]


@contextlib.contextmanager
def webserver(home: Path, env: dict) -> Iterator[str]:
    port = free_port()
    exe = Path(sys.executable).parent / "dagster-webserver"
    log = open(home / "webserver.log", "wb")
    proc = subprocess.Popen([str(exe), "-h", "127.0.0.1", "-p", str(port), "-w",
                             str(settings.REPO_ROOT / "workspace.yaml")],
                            env=env, cwd=settings.REPO_ROOT, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}/graphql"
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"dagster-webserver exited: {(home / 'webserver.log').read_text()[-2000:]}")
            try:
                data = graphql(url, "{ workspaceOrError { ... on Workspace { locationEntries { "
                                    "locationOrLoadError { __typename } } } } }", {}, timeout=10)
                entries = data["workspaceOrError"]["locationEntries"]
                if entries and entries[0]["locationOrLoadError"] and \
                        entries[0]["locationOrLoadError"]["__typename"] == "RepositoryLocation":
                    break
            except Exception:  # noqa: BLE001 - not up yet
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("dagster-webserver did not load the code location within 180 s")
            time.sleep(1)
        yield url
    finally:
        stop_process_group(proc, "dagster-webserver")
        log.close()


def measure_graphql(url: str) -> dict:
    results = {}
    for asset in ("raw_iq", "session_summary"):
        variables = {"assetKey": {"path": [asset]}}
        start = time.perf_counter()
        data = graphql(url, PARTITION_HEALTH_QUERY, variables)
        first = time.perf_counter() - start
        timing = _timed(lambda: graphql(url, PARTITION_HEALTH_QUERY, variables), repeat=2)
        dims = data["assetNodeOrError"].get("partitionKeysByDimension") or []
        results[f"partition_health_{asset}"] = {"first_s": first, **timing,
                                                "keys_returned": sum(len(d["partitionKeys"]) for d in dims)}
    variables = {"assetKeys": [{"path": ["raw_iq"]}, {"path": ["receiver_metrics"]}, {"path": ["session_summary"]}]}
    data = graphql(url, PARTITION_STATS_QUERY, variables)
    results["partition_stats"] = {**_timed(lambda: graphql(url, PARTITION_STATS_QUERY, variables), repeat=2),
                                  "raw_iq": next(n["partitionStats"] for n in data["assetNodes"]
                                                 if n["id"].endswith("raw_iq"))}
    return results


def measure_sensor(instance, engine, tag: str) -> dict:
    """One tick of session_request_sensor with 10 pending requests (launching nothing)."""
    from dagster import build_sensor_context

    from heimdall_pipeline.db.sessions_repo import list_sessions, transition
    from heimdall_pipeline.resources import HeimdallDatabase
    from heimdall_pipeline.session_requests import request_session
    from heimdall_pipeline.sensors import session_request_sensor

    for i in range(10):
        request_session(engine, requested_by="bench", center_frequency_hz=7.1e6, duration_s=1.0,
                        source_kind="simulated", session_key=f"{tag}r{i:02d}")
    database = HeimdallDatabase(url=engine.url.render_as_string(hide_password=False))

    def tick():
        with build_sensor_context(instance=instance, cursor="0", resources={"database": database}) as context:
            result = session_request_sensor(context)
        assert len(result.run_requests) >= 10, result

    timing = _timed(tick, repeat=3)
    # Leave no pending requests behind for the next size.
    for record in list_sessions(engine, status="requested"):
        transition(engine, record.session_key, "failed", reason="benchmark request, never launched")
    return timing


def measure_add_partition(instance, tag: str) -> dict:
    counter = iter(range(10_000))
    return _timed(lambda: instance.add_dynamic_partitions("sessions", [f"{tag}add{next(counter):03d}"]), repeat=5)


def run_scale(sizes: list[int], *, budget_s: float, threads: int) -> dict:
    from dagster import DagsterInstance

    from heimdall_pipeline.db.receivers_repo import seed_default_receivers
    from heimdall_pipeline.resources import build_resources

    settings.load_embedded_env()
    report: dict = {"receivers": len(RECEIVERS), "threads": threads, "budget_s": budget_s, "sizes": []}
    with private_dagster_home() as (home, db_name), scratch_heimdall_database() as app_url:
        env = {**os.environ, "DAGSTER_HOME": str(home), "HEIMDALL_DATABASE_URL": app_url}
        os.environ["DAGSTER_HOME"] = str(home)
        engine = build_resources(env)["database"].engine()
        seed_default_receivers(engine)
        report["instance_database"] = db_name
        # `loader`: pooled connections (what dagster-webserver does, optimize_for_webserver) only
        # to load the synthetic history faster; `instance`: Dagster's default (one connection
        # per storage call, as in the daemon and in runs) for the measured operations.
        with DagsterInstance.get() as loader, DagsterInstance.get() as instance:
            loader.optimize_for_webserver(statement_timeout=0, pool_recycle=3600, max_overflow=threads + 2)
            instance.add_dynamic_partitions("receivers", RECEIVERS)
            done = 0          # sessions added
            reported = 0      # sessions with materializations
            spent = 0.0
            for size in sizes:
                step = {"sessions": size, "partitions": size * len(RECEIVERS)}
                keys = [session_key_of(i) for i in range(done, size)]
                start = time.perf_counter()
                for chunk in range(0, len(keys), 5000):
                    loader.add_dynamic_partitions("sessions", keys[chunk:chunk + 5000])
                step["add_partitions_bulk_s"] = time.perf_counter() - start
                # Materializations, within the budget; the rest are partitions without events.
                to_report = keys
                if spent > 0 and reported:
                    rate = reported / spent
                    affordable = int(max(0.0, budget_s - spent) * rate)
                    to_report = keys[:affordable]
                elapsed = 0.0
                for chunk in range(0, len(to_report), 500):
                    part = to_report[chunk:chunk + 500]
                    elapsed += report_materializations(loader, part, threads=threads)
                    reported += len(part)
                    if elapsed + spent > budget_s:
                        break
                spent += elapsed
                done = size
                step["sessions_materialized"] = reported
                step["materialization_events"] = reported * len(RECEIVERS)
                step["report_events_per_s"] = (reported * len(RECEIVERS) / spent) if spent else None
                step["add_one_session_partition"] = measure_add_partition(instance, f"s{size}")
                step["sensor_tick_10_pending"] = measure_sensor(instance, engine, f"b{size}")
                with webserver(home, env) as url:
                    step["graphql"] = measure_graphql(url)
                report["sizes"].append(step)
                print(format_step(step), flush=True)
    slow = [s for s in report["sizes"]
            if max(v["median_s"] for k, v in s["graphql"].items()) > USABLE_QUERY_S]
    report["first_unusable_sessions"] = slow[0]["sessions"] if slow else None
    return report


def format_step(step: dict) -> str:
    g = step["graphql"]
    return (f"{step['sessions']:>7} sessions ({step['partitions']:>7} partitions, {step['sessions_materialized']:>6} "
            f"sessions materialized): add 1 partition {step['add_one_session_partition']['median_s'] * 1e3:7.1f} ms | "
            f"sensor tick {step['sensor_tick_10_pending']['median_s'] * 1e3:7.0f} ms | "
            f"PartitionHealth raw_iq {g['partition_health_raw_iq']['median_s']:6.2f} s "
            f"(first {g['partition_health_raw_iq']['first_s']:6.2f} s) | session_summary "
            f"{g['partition_health_session_summary']['median_s']:6.2f} s | partitionStats "
            f"{g['partition_stats']['median_s']:6.2f} s")


def run(args) -> int:
    quick = bool(getattr(args, "quick", False))
    sizes = QUICK_SIZES if quick else [int(s) for s in os.environ.get(
        "HEIMDALL_SCALE_SIZES", ",".join(map(str, FULL_SIZES))).split(",")]
    budget = float(os.environ.get("HEIMDALL_SCALE_BUDGET_S", "60" if quick else "1200"))
    threads = int(os.environ.get("HEIMDALL_SCALE_THREADS", "4"))
    print(f"scale bench: sizes {sizes} sessions × {len(RECEIVERS)} receivers, reporting budget {budget:.0f} s")
    report = run_scale(sizes, budget_s=budget, threads=threads)
    first = report["first_unusable_sessions"]
    print(f"partition views slower than {USABLE_QUERY_S:g} s from: "
          + (f"{first} sessions" if first else "never, at these sizes"))
    if getattr(args, "json", None):
        Path(args.json).write_text(json.dumps(report, indent=2))
        print(f"written {args.json}")
    return 0


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--json")
    parser.add_argument("--quick", action="store_true")
    sys.exit(run(parser.parse_args()))
