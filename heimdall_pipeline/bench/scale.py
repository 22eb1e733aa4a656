"""`heimdall bench --scale`: partition designs at network scale on a PostgreSQL-backed instance.

On a PRIVATE instance (a scratch `dagster` database in the embedded PostgreSQL, dropped at the
end, so nobody else's UI or tests slow down) and a scratch heimdall database with 600 registered
(simulated) receivers, it creates 10,000 sessions of 5 receivers each, picked across the registry
(--quick: 200), and compares three ways to partition raw_iq (docs/architecture.md, "Partitions"):

- `captures` (the project's): one dynamic key per capture, `<session>.<receiver>`: 50,000 keys;
- `slots`: sessions × a static slot dimension 0..6 (slot i = the session's i-th receiver): 70,000;
- `product`: sessions × every registered receiver (main 4ef43da): 6,000,000 keys; its key listing
  is timed on the first 1,000 sessions (600,000 keys: the listing is linear in keys).

For each: the partition count, listing every key (`get_partition_keys`), and the GraphQL query the
UI's asset partition page sends (`PartitionHealthQuery`) and the asset graph's `partitionStats`,
against a real dagster-webserver serving `heimdall_pipeline.bench.scale_location`. Materializations
are reported (`report_runless_asset_event`, threads over pooled connections) for as many sessions
as the time budget allows (HEIMDALL_SCALE_BUDGET_S per design, default 300 s), the same sessions in
each design; the count is printed. Also one tick of `session_request_sensor` with 10 pending
requests among the 50,000 captures, and one whole session through `run_session` (a simulated
5-receiver session of 1 s, both runs) among them; the baselines: the same on an empty instance.
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

N_RECEIVERS = 600
SESSION_SIZE = 5
FULL_SESSIONS, QUICK_SESSIONS = 10_000, 200
PRODUCT_LISTED_SESSIONS = 1_000  # the product's listing is timed on this many sessions (quick: all)
USABLE_QUERY_S = 2.0  # a UI query slower than this is "not usable" for the partition view
SCALE_LOCATION = "heimdall_pipeline.bench.scale_location"


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
    # the storage of the project's dagster.yaml (heimdall_pipeline/instance_storage.py)
    return f"""storage:
  custom:
    module: heimdall_pipeline.instance_storage
    class: PooledPostgresStorage
    config:
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


def network(n: int):
    """n simulated receivers, the registry of the bench."""
    import random

    from heimdall_pipeline.receivers import Receiver

    rng = random.Random(n)
    return [Receiver(id=f"sim{i:03d}", name=f"SIM{i:03d}", url=f"sim://{i}", kind="simulated", location_name=f"site {i}",
                     latitude=round(rng.uniform(40, 60), 4), longitude=round(rng.uniform(-5, 20), 4)) for i in range(n)]


def report_materializations(instance, items: list[tuple[str, object]], *, threads: int = 4) -> float:
    """One materialization per (asset, partition key); returns seconds."""
    from dagster import AssetMaterialization

    def report(item) -> None:
        asset, key = item
        instance.report_runless_asset_event(AssetMaterialization(
            asset_key=asset, partition=key, metadata={"capture_status": "stored", "synthetic": True}))

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(report, items))
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
def webserver(home: Path, env: dict, location: list[str] | None = None) -> Iterator[str]:
    """A dagster-webserver on the instance of `home`, serving `location` (dagster-webserver's
    arguments; default the project's workspace.yaml); yields its GraphQL URL."""
    port = free_port()
    exe = Path(sys.executable).parent / "dagster-webserver"
    log = open(home / "webserver.log", "wb")
    proc = subprocess.Popen([str(exe), "-h", "127.0.0.1", "-p", str(port),
                             *(location or ["-w", str(settings.REPO_ROOT / "workspace.yaml")])],
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


def measure_graphql(url: str, asset: str, timeout: float = 600.0) -> dict:
    """The asset partition page's PartitionHealthQuery (first call, then 2 more) and partitionStats."""
    variables = {"assetKey": {"path": [asset]}}
    start = time.perf_counter()
    try:
        data = graphql(url, PARTITION_HEALTH_QUERY, variables, timeout=timeout)
    except Exception as exc:  # noqa: BLE001 - a time-out is a figure too
        return {"error": f"{type(exc).__name__}: {exc}"[:300], "first_s": time.perf_counter() - start}
    first = time.perf_counter() - start
    timing = _timed(lambda: graphql(url, PARTITION_HEALTH_QUERY, variables, timeout=timeout), repeat=2)
    dims = data["assetNodeOrError"].get("partitionKeysByDimension") or []
    stats_vars = {"assetKeys": [{"path": [asset]}]}
    stats = _timed(lambda: graphql(url, PARTITION_STATS_QUERY, stats_vars, timeout=timeout), repeat=2)
    stats_data = graphql(url, PARTITION_STATS_QUERY, stats_vars, timeout=timeout)["assetNodes"][0]["partitionStats"]
    return {"partition_health": {"first_s": first, **timing,
                                 "keys_returned": sum(len(d["partitionKeys"]) for d in dims)},
            "partition_stats": {**stats, **stats_data}}


def measure_sensor(instance, engine, tag: str, receiver_ids: list[str], rng) -> dict:
    """One tick of session_request_sensor with 10 pending requests (launching nothing)."""
    from dagster import build_sensor_context

    from heimdall_pipeline.db.sessions_repo import list_sessions, transition
    from heimdall_pipeline.resources import HeimdallDatabase
    from heimdall_pipeline.session_requests import request_session
    from heimdall_pipeline.sensors import session_request_sensor

    database = HeimdallDatabase(url=engine.url.render_as_string(hide_password=False))
    counter = iter(range(1000))

    def setup():
        for i in range(10):
            request_session(engine, requested_by="bench", center_frequency_hz=7.1e6, duration_s=1.0,
                            source_kind="simulated", session_key=f"{tag}r{next(counter):03d}",
                            receiver_ids=rng.sample(receiver_ids, SESSION_SIZE))

    def tick():
        with build_sensor_context(instance=instance, resources={"database": database}) as context:
            result = session_request_sensor(context)
        assert len(result.run_requests) >= 10, result
        for record in list_sessions(engine, status="requested"):  # handed over: not pending next time
            transition(engine, record.session_key, "failed", reason="benchmark request, never launched")

    times = []
    for _ in range(3):
        setup()
        start = time.perf_counter()
        tick()
        times.append(time.perf_counter() - start)
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times), "n": len(times)}


def measure_session(instance, engine, tag: str, receiver_ids: list[str], rng, store) -> dict:
    """One simulated session of 5 receivers x 1 s through `run_session` (its capture run and its
    analysis run), as `heimdall session run` runs it; its objects are deleted afterwards."""
    from heimdall_pipeline.bench.figures import delete_object_versions
    from heimdall_pipeline.runner import run_session
    from heimdall_pipeline.session_requests import request_session

    times = []
    for i in range(3):
        key = request_session(engine, requested_by="bench", center_frequency_hz=7.1e6, duration_s=1.0,
                              source_kind="simulated", session_key=f"{tag}s{i:03d}",
                              receiver_ids=rng.sample(receiver_ids, SESSION_SIZE)).session_key
        start = time.perf_counter()
        result = run_session(instance, engine, key)
        times.append(time.perf_counter() - start)
        delete_object_versions(store, f"sessions/{key}/")
        if result.status != "succeeded":
            raise RuntimeError(f"benchmark session {key}: {result.status} ({result.status_reason})")
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times), "n": len(times)}


def run_scale(n_sessions: int, *, budget_s: float, threads: int, quick: bool) -> dict:
    import random

    from dagster import DagsterInstance, DynamicPartitionsDefinition, MultiPartitionKey

    from heimdall_pipeline.bench import scale_location as loc
    from heimdall_pipeline.db.receivers_repo import seed_default_receivers
    from heimdall_pipeline.partitions import add_session_partitions, capture_key, capture_partitions
    from heimdall_pipeline.resources import build_resources

    settings.load_embedded_env()
    rng = random.Random(24)
    registry = [r.id for r in network(N_RECEIVERS)]
    sessions = {session_key_of(i): rng.sample(registry, SESSION_SIZE) for i in range(n_sessions)}
    keys = list(sessions)
    listed = keys if quick else keys[:PRODUCT_LISTED_SESSIONS]
    report: dict = {"receivers": N_RECEIVERS, "sessions": n_sessions, "receivers_per_session": SESSION_SIZE,
                    "threads": threads, "budget_s_per_design": budget_s, "designs": {}}
    with private_dagster_home() as (home, db_name), scratch_heimdall_database() as app_url:
        env = {**os.environ, "DAGSTER_HOME": str(home), "HEIMDALL_DATABASE_URL": app_url}
        os.environ.update(DAGSTER_HOME=str(home), HEIMDALL_DATABASE_URL=app_url)  # the sessions' runs too
        resources = build_resources(env)
        engine = resources["database"].engine()
        seed_default_receivers(engine, network(N_RECEIVERS))
        report["instance_database"] = db_name
        # `loader`: pooled connections (what dagster-webserver does) only to load the synthetic
        # history faster; `instance`: Dagster's default (one connection per storage call, as in
        # the daemon and in runs) for the measured operations.
        with DagsterInstance.get() as loader, DagsterInstance.get() as instance:
            loader.optimize_for_webserver(statement_timeout=0, pool_recycle=3600, max_overflow=threads + 2)
            measure_sensor(instance, engine, "w", registry, rng)  # warm-up: imports, schema check, connections
            report["sensor_tick_empty_instance"] = measure_sensor(instance, engine, "e", registry, rng)
            measure_session(instance, engine, "w", registry, rng, resources["iq_store"])  # warm-up
            report["session_empty_instance"] = measure_session(instance, engine, "e", registry, rng,
                                                               resources["iq_store"])
            start = time.perf_counter()
            for chunk in range(0, n_sessions, 1000):
                add_session_partitions(loader, {k: sessions[k] for k in keys[chunk:chunk + 1000]})
            add_captures_s = time.perf_counter() - start
            loader.add_dynamic_partitions(loc.scale_receivers.name, registry)
            loader.add_dynamic_partitions(loc.scale_sessions.name, keys)
            listed_product = DynamicPartitionsDefinition(name="scale_sessions_listed")
            loader.add_dynamic_partitions(listed_product.name, listed)
            designs = {
                "captures": ("raw_iq", lambda k, i, rid: capture_key(k, rid), len(keys) * SESSION_SIZE,
                             lambda: capture_partitions.get_partition_keys(dynamic_partitions_store=instance)),
                "slots": ("scale_slot_iq", lambda k, i, rid: MultiPartitionKey({"session": k, "slot": str(i)}),
                          len(keys) * loc.SLOTS,
                          lambda: loc.slot_partitions.get_partition_keys(dynamic_partitions_store=instance)),
                "product": ("scale_product_iq", lambda k, i, rid: MultiPartitionKey({"session": k, "receiver": rid}),
                            len(keys) * N_RECEIVERS,
                            lambda: product_over(listed_product, loc.scale_receivers).get_partition_keys(
                                dynamic_partitions_store=instance)),
            }
            # the same sessions materialized in every design, as many as the budget allows in the first
            affordable = None
            for name, (asset, key_of, count, list_keys) in designs.items():
                items = [(asset, key_of(k, i, rid)) for k in keys[:affordable] for i, rid in enumerate(sessions[k])]
                spent, done = 0.0, 0
                for chunk in range(0, len(items), 2000):
                    spent += report_materializations(loader, items[chunk:chunk + 2000], threads=threads)
                    done = chunk + len(items[chunk:chunk + 2000])
                    if spent > budget_s:
                        break
                affordable = affordable or done // SESSION_SIZE
                listing = _timed(list_keys, repeat=1 if name == "product" else 3)
                report["designs"][name] = {
                    "asset": asset, "partitions": count, "materialized_partitions": done,
                    "report_events_per_s": round(done / spent, 1) if spent else None,
                    "listing": {**listing, "keys_listed": len(list_keys()) if name != "product"
                                else len(listed) * N_RECEIVERS},
                }
            report["add_capture_partitions_s"] = round(add_captures_s, 2)
            report["sensor_tick_10_pending"] = measure_sensor(instance, engine, "f", registry, rng)
            report["session_among_captures"] = measure_session(instance, engine, "f", registry, rng,
                                                               resources["iq_store"])
        with webserver(home, env, ["-m", SCALE_LOCATION, "-a", "defs"]) as url:
            for name, design in report["designs"].items():
                design["graphql"] = measure_graphql(url, design["asset"])
                print(format_design(name, design), flush=True)
    return report


def product_over(sessions_def, receivers_def):
    from dagster import MultiPartitionsDefinition

    return MultiPartitionsDefinition({"session": sessions_def, "receiver": receivers_def})


def format_design(name: str, d: dict) -> str:
    g = d.get("graphql", {})
    health = g.get("partition_health", {})
    stats = g.get("partition_stats", {})
    health_text = (f"{health['median_s']:6.2f} s (first {health['first_s']:6.2f} s)" if "median_s" in health
                   else f"failed after {g.get('first_s', 0):.0f} s: {g.get('error')}")
    return (f"{name:>9}: {d['partitions']:>9} partitions, {d['materialized_partitions']:>6} materialized | "
            f"list {d['listing']['keys_listed']:>7} keys {d['listing']['median_s']:7.2f} s | PartitionHealth "
            f"{health_text} | partitionStats {stats.get('median_s', float('nan')):6.2f} s")


def run(args) -> int:
    quick = bool(getattr(args, "quick", False))
    n_sessions = QUICK_SESSIONS if quick else int(os.environ.get("HEIMDALL_SCALE_SESSIONS", FULL_SESSIONS))
    budget = float(os.environ.get("HEIMDALL_SCALE_BUDGET_S", "30" if quick else "300"))
    threads = int(os.environ.get("HEIMDALL_SCALE_THREADS", "4"))
    print(f"scale bench: {N_RECEIVERS} receivers, {n_sessions} sessions x {SESSION_SIZE} receivers, "
          f"materialization budget {budget:.0f} s per design")
    report = run_scale(n_sessions, budget_s=budget, threads=threads, quick=quick)
    empty, full = report["sensor_tick_empty_instance"]["median_s"], report["sensor_tick_10_pending"]["median_s"]
    print(f"session_request_sensor tick, 10 pending: {full * 1e3:.0f} ms among {n_sessions * SESSION_SIZE} captures, "
          f"{empty * 1e3:.0f} ms on an empty instance ({full / empty:.2f}x)")
    empty, full = report["session_empty_instance"]["median_s"], report["session_among_captures"]["median_s"]
    print(f"one session (run_session, {SESSION_SIZE} receivers x 1 s): {full:.2f} s among {n_sessions * SESSION_SIZE} "
          f"captures, {empty:.2f} s on an empty instance ({full / empty:.2f}x)")
    captures = report["designs"]["captures"]["graphql"].get("partition_health", {})
    if "median_s" in captures:
        print(f"UI partition page (captures): {captures['median_s']:.2f} s (target <= {USABLE_QUERY_S:g} s)")
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
