"""Sessions at network scale: 600 registered receivers, sessions on a few of them.

Partitions grow with the captures made (one `captures` key per requested receiver), each session is
one `session_job` run over exactly its captures, and a receiver's channels hold across runs
through the leases table whatever the registry holds.
"""

from __future__ import annotations

import os
import random
import threading
from datetime import timedelta

import pytest
from dagster import DagsterInstance, Definitions, build_sensor_context

from heimdall_pipeline.partitions import capture_key
from heimdall_pipeline.receivers import Receiver
from heimdall_pipeline_tests.integration.db_fixtures import scratch_database

N_RECEIVERS = 600


def network(n: int) -> list[Receiver]:
    """n simulated receivers spread over Europe, ids in registration order; the last one has 2
    channels (nothing names it in a configuration)."""
    rng = random.Random(600)
    return [Receiver(id=f"sim{i:03d}", name=f"SIM{i:03d}", url=f"sim://{i}", kind="simulated", location_name=f"site {i}",
                     latitude=round(rng.uniform(40, 60), 4), longitude=round(rng.uniform(-5, 20), 4),
                     max_channels=2 if i == n - 1 else 4)
            for i in range(n)]


@pytest.fixture(scope="module")
def big_registry(embedded_services):
    from heimdall_pipeline.db.receivers_repo import seed_default_receivers

    with scratch_database(timescaledb=True) as engine:
        assert seed_default_receivers(engine, network(N_RECEIVERS)) == N_RECEIVERS
        yield engine


def scratch_defs(engine) -> Definitions:
    from heimdall_pipeline import definitions as d
    from heimdall_pipeline.resources import build_resources

    env = {**os.environ, "HEIMDALL_DATABASE_URL": engine.url.render_as_string(hide_password=False)}
    return Definitions(assets=d.defs.assets, asset_checks=d.defs.asset_checks, jobs=d.defs.jobs,
                       sensors=d.defs.sensors, resources=build_resources(env))


def test_sessions_scattered_over_600_receivers_are_one_run_each(big_registry):
    """Sessions on 7 receivers picked across the whole registry: the sensor adds 7 capture
    partitions per session (not 600) and asks for ONE session_job run each, whose range is exactly
    those 7; the run records all 7 and the analysis sensor follows it with one analysis run."""
    from heimdall_pipeline.db.captures_repo import outcomes_for_session
    from heimdall_pipeline.db.sessions_repo import get_session
    from heimdall_pipeline.sensors import session_analysis_sensor, session_request_sensor
    from heimdall_pipeline.session_requests import request_session

    engine = big_registry
    rng = random.Random(7)
    ids = [r.id for r in network(N_RECEIVERS)]
    sessions = {}
    for i in range(5):
        chosen = rng.sample(ids, 7)  # scattered: far apart in registration order
        key = f"net{os.urandom(3).hex()}{i}"
        request_session(engine, requested_by="test", session_key=key, center_frequency_hz=7.1e6, duration_s=0.5,
                        receiver_ids=chosen, source_kind="simulated")
        sessions[key] = chosen
    defs = scratch_defs(engine)
    with DagsterInstance.ephemeral() as instance:
        with build_sensor_context(instance=instance, resources={"database": defs.resources["database"]}) as context:
            result = session_request_sensor(context)
        captures = instance.get_dynamic_partitions("captures")
        assert len(captures) == 5 * 7  # grows with captures, not with 5 × 600
        by_session = {}
        for request in result.run_requests:
            by_session.setdefault(request.tags["heimdall/session"], []).append(request)
        assert set(by_session) == set(sessions) and all(len(r) == 1 for r in by_session.values())
        for key, [request] in by_session.items():
            start = captures.index(request.tags["dagster/asset_partition_range_start"])
            end = captures.index(request.tags["dagster/asset_partition_range_end"])
            assert captures[start:end + 1] == [capture_key(key, rid) for rid in sessions[key]]

        key, [request] = next(iter(by_session.items()))
        run = defs.resolve_job_def("session_job").execute_in_process(instance=instance, tags=request.tags)
        assert run.success
        assert {o.receiver_id: o.status for o in outcomes_for_session(engine, key).values()} == \
            dict.fromkeys(sessions[key], "stored")
        materialized = {str(m.partition) for m in run.asset_materializations_for_node("raw_iq")}
        assert materialized == {capture_key(key, rid) for rid in sessions[key]}

        # The analysis follows the capture run: one analysis run, exactly once.
        with build_sensor_context(instance=instance) as context:
            analysis = session_analysis_sensor(context)
        assert [(r.partition_key, r.tags["heimdall/analysis_of"]) for r in analysis.run_requests] == [(key, run.run_id)]
        with build_sensor_context(instance=instance, cursor=analysis.cursor) as context:
            again = session_analysis_sensor(context)
        assert {r.run_key for r in again.run_requests} <= {r.run_key for r in analysis.run_requests}
        [follow_up] = analysis.run_requests
        assert defs.resolve_job_def("session_analysis_job").execute_in_process(
            instance=instance, partition_key=follow_up.partition_key, tags=follow_up.tags).success
        assert get_session(engine, key).status == "succeeded"


def test_receiver_channels_hold_across_runs_without_naming_receivers(big_registry):
    """max_channels leases: concurrent runs never hold more channels of a receiver than it has; a
    busy receiver is named with the sessions holding it; an expired lease (a dead worker) frees its
    channel; releasing gives the channels back."""
    from heimdall_pipeline.db import leases_repo

    engine = big_registry
    held: list[str] = []
    lock = threading.Lock()

    def run(i: int) -> None:
        result = leases_repo.try_acquire(engine, ["sim599", "sim000"], run_id=f"run{i}", session_key=f"s{i}",
                                         expires_at=_now() + timedelta(minutes=5))
        with lock:
            held.extend(f"run{i}" for rid in result.held if rid == "sim599")

    threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(held) == 2  # 8 runs at once, 2 channels
    busy = leases_repo.try_acquire(engine, ["sim599"], run_id="late", session_key="slate",
                                   expires_at=_now() + timedelta(minutes=5))
    assert busy.held == () and "all 2 channel(s) held by session(s)" in busy.busy["sim599"]
    assert leases_repo.release(engine, held[0]) == 2  # sim599 and sim000
    assert leases_repo.try_acquire(engine, ["sim599"], run_id="late", session_key="slate",
                                   expires_at=_now() - timedelta(seconds=1)).held == ("sim599",)
    # the late lease has already expired: the next run takes its channel without waiting
    assert leases_repo.acquire(engine, ["sim599"], run_id="next", session_key="snext", hold_for=timedelta(minutes=1),
                               wait_s=0).held == ("sim599",)
    for run_id in ("run0", "run1", "run2", "run3", "run4", "run5", "run6", "run7", "late", "next"):
        leases_repo.release(engine, run_id)


def _now():
    from datetime import datetime, timezone

    return datetime.now(timezone.utc)
