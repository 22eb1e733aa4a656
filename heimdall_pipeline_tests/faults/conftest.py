"""Fixtures for the fault tests.

`private_services` starts a PRIVATE SeaweedFS + PostgreSQL/TimescaleDB (own runtime folder,
own ports) that tests may kill and restart; the shared embedded services are never touched.
`build_defs(env)` builds the project's Definitions with resources pointing at a given service
env explicitly (no process-wide environment switching), optionally with a hooked S3 resource.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import uuid
from collections.abc import Callable
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import pytest
from dagster import DagsterInstance, Definitions

from heimdall_pipeline.resources.s3 import HeimdallS3Resource

# (S3 port, SeaweedFS internal port base, PostgreSQL port) candidates: every SeaweedFS port P
# also uses P + 10000; all stay below Linux's ephemeral range (32768-60999), as the defaults do.
PORT_CANDIDATES = [(8433, 9433, 15433), (8533, 9533, 15533), (8633, 9633, 15633), (8733, 9733, 15733)]


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_port_set() -> tuple[int, int, int]:
    from heimdall_pipeline.services.seaweedfs import INTERNAL_PORT_OFFSETS

    for s3_port, base, pg_port in PORT_CANDIDATES:
        ports = [s3_port, s3_port + 10000, pg_port]
        for offset in INTERNAL_PORT_OFFSETS.values():
            ports += [base + offset, base + offset + 10000]
        if all(_port_free(p) for p in ports):
            return s3_port, base, pg_port
    pytest.fail(f"no free port set among {PORT_CANDIDATES} for the private fault-test services")


@contextmanager
def _env(values: dict[str, str]):
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.fixture(scope="module")
def private_services():
    """A private SeaweedFS + PostgreSQL in a temporary runtime folder, stopped and removed at the end.

    Yields manager.EmbeddedServices (.s3 / .postgres with pid(), stop(), start(); .env)."""
    from heimdall_pipeline.services import manager
    from heimdall_pipeline_tests.integration.db_fixtures import migrate_database

    s3_port, base, pg_port = _free_port_set()
    home = Path(tempfile.mkdtemp(prefix="heimdall-faults-"))
    override = {"HEIMDALL_HOME": str(home), "HEIMDALL_S3_PORT": str(s3_port),
                "HEIMDALL_SEAWEEDFS_PORT_BASE": str(base), "HEIMDALL_PG_PORT": str(pg_port)}
    with _env(override):
        services = manager.up()
        services.session_worker.wait_ready()
    migrate_database(services.env["HEIMDALL_DATABASE_URL"])
    pg_data = Path(services.env["HEIMDALL_PG_DATA"])
    try:
        yield services
    finally:
        with _env(override):
            manager.down()
        from heimdall_pipeline.db.engine import dispose_engine

        dispose_engine(services.env["HEIMDALL_DATABASE_URL"])
        shutil.rmtree(home, ignore_errors=True)
        if not str(pg_data).startswith(str(home)):
            shutil.rmtree(pg_data, ignore_errors=True)


# -- S3 request hooks ----------------------------------------------------------------------------
# botocore event handlers registered on every client a HookedS3Resource creates. Tests append
# (event_name, handler) pairs and clear them afterwards.
S3_HOOKS: list[tuple[str, Callable]] = []


class HookedS3Resource(HeimdallS3Resource):
    """The real S3 resource; its clients also call the handlers in S3_HOOKS (fault injection,
    request counting). Requests still go to the real server."""

    def get_client(self, **options):
        client = super().get_client(**options)
        for event_name, handler in list(S3_HOOKS):
            client.meta.events.register(event_name, handler)
        return client


@pytest.fixture()
def s3_hooks():
    S3_HOOKS.clear()
    yield S3_HOOKS
    S3_HOOKS.clear()


def make_s3_resource(env: dict[str, str], *, access_key_id: str | None = None,
                     secret_access_key: str | None = None, max_attempts: int = 5) -> HookedS3Resource:
    return HookedS3Resource(
        endpoint_url=env["HEIMDALL_S3_ENDPOINT_URL"],
        aws_access_key_id=access_key_id or env["HEIMDALL_S3_ACCESS_KEY_ID"],
        aws_secret_access_key=secret_access_key or env["HEIMDALL_S3_SECRET_ACCESS_KEY"],
        region_name=env.get("HEIMDALL_S3_REGION", "us-east-1"),
        max_attempts=max_attempts,
    )


def make_store(env: dict[str, str], **s3_overrides):
    from heimdall_pipeline.resources import build_resources

    return build_resources(env, s3=make_s3_resource(env, **s3_overrides))["iq_store"]


def build_defs(env: dict[str, str], *, extra_jobs=(), **s3_overrides) -> Definitions:
    """The project's assets, checks, jobs and sensors with resources pointing at `env`."""
    from heimdall_pipeline import definitions as d
    from heimdall_pipeline.resources import build_resources

    resources = build_resources(env, s3=make_s3_resource(env, **s3_overrides),
                                receiver_network={"retry_backoff_base_s": 0.05})
    return Definitions(assets=d.defs.assets, asset_checks=d.defs.asset_checks,
                       jobs=[*d.defs.jobs, *extra_jobs], sensors=d.defs.sensors,
                       schedules=d.defs.schedules, resources=resources)


def shared_env() -> dict[str, str]:
    names = ("HEIMDALL_S3_ENDPOINT_URL", "HEIMDALL_S3_ACCESS_KEY_ID", "HEIMDALL_S3_SECRET_ACCESS_KEY",
             "HEIMDALL_S3_REGION", "HEIMDALL_S3_BUCKET", "HEIMDALL_DATABASE_URL")
    return {name: os.environ[name] for name in names}


@pytest.fixture()
def shared_services_env(embedded_services) -> dict[str, str]:
    return shared_env()


@pytest.fixture(scope="module")
def private_engine(private_services):
    from heimdall_pipeline.db.receivers_repo import seed_default_receivers
    from heimdall_pipeline.resources import build_resources

    engine = build_resources(private_services.env)["database"].engine()
    seed_default_receivers(engine)
    return engine


@pytest.fixture()
def fresh_instance():
    with DagsterInstance.ephemeral() as instance:
        yield instance


def new_key(prefix: str = "f") -> str:
    return f"{prefix}{uuid.uuid4().hex[:12]}"


def request(engine, session_key: str | None = None, *, receivers=(), duration_s: float = 0.2,
            frequency_hz: float = 7.1e6, **fields):
    """A small, valid session request through THE request function (simulated receivers)."""
    from heimdall_pipeline.session_requests import request_session

    return request_session(engine, requested_by=fields.pop("requested_by", "faults-test"), session_key=session_key or new_key(),
                           center_frequency_hz=frequency_hz, duration_s=duration_s, sample_rate_hz=12000.0,
                           receiver_ids=list(receivers), scheduled_for=fields.pop("scheduled_for",
                                                                                    datetime.now(timezone.utc)),
                           **fields)


def error_text(result) -> str:
    """Every failure message (with causes) of an execute_in_process result, as one string."""
    texts = []
    for event in result.all_events:
        if event.is_failure:
            data = event.event_specific_data
            error = getattr(data, "error", None)
            while error is not None:
                texts.append(error.to_string())
                error = error.cause or getattr(error, "context", None)
        texts.append(event.message or "")
    return "\n".join(texts)


def check_evaluations(instance, run_id: str) -> dict[str, list]:
    """AssetCheckEvaluation objects of a run, by check name."""
    from dagster import DagsterEventType

    found: dict[str, list] = {}
    for record in instance.all_logs(run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION):
        evaluation = record.dagster_event.event_specific_data
        found.setdefault(evaluation.check_name, []).append(evaluation)
    return found


def partition_metadata(instance, asset: str, keys: list[str]) -> dict[str, dict]:
    """Latest materialization metadata of each partition key (plain values)."""
    from dagster import AssetKey, AssetRecordsFilter

    records = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=AssetKey(asset), asset_partitions=keys), limit=len(keys) * 4).records
    out: dict[str, dict] = {}
    for record in records:  # newest first
        m = record.asset_materialization
        out.setdefault(m.partition, {k: getattr(v, "value", v) for k, v in m.metadata.items()})
    return out


def list_session_keys(client, bucket: str, session_key: str) -> list[str]:
    from heimdall_pipeline.verify import list_keys

    return list_keys(client, bucket, f"sessions/{session_key}/")


def private_client(env: dict[str, str], **kwargs):
    from heimdall_pipeline.storage.object_store import s3_client

    return s3_client(env["HEIMDALL_S3_ENDPOINT_URL"], env["HEIMDALL_S3_ACCESS_KEY_ID"],
                     env["HEIMDALL_S3_SECRET_ACCESS_KEY"], env.get("HEIMDALL_S3_REGION", "us-east-1"), **kwargs)
