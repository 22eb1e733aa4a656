"""Shared fixtures. Integration tests use the real embedded services, started (or reused) through
the same code as `heimdall services up`, and stopped at the end if this test run started them."""

from __future__ import annotations

import os
import uuid
import warnings

import pytest

from heimdall_pipeline import settings
# A skip is a failure in this suite (hooks found by name in this conftest).
from heimdall_pipeline_tests.no_skips import pytest_make_collect_report, pytest_runtest_makereport  # noqa: F401

warnings.filterwarnings("ignore", category=Warning, module="dagster")


@pytest.fixture(scope="session")
def embedded_services():
    from heimdall_pipeline.services import manager
    from heimdall_pipeline_tests.integration.db_fixtures import migrate_database

    try:
        before = manager.embedded_services()
        was_running = before.s3.pid() is not None and before.postgres.pid() is not None
    except Exception:  # noqa: BLE001 - no runtime folder yet
        was_running = False
    services = manager.up()
    services.session_worker.wait_ready()  # `heimdall session run` in the tests takes the user's path
    for name, value in services.env.items():
        os.environ[name] = value
    migrate_database(os.environ["HEIMDALL_DATABASE_URL"])
    yield services
    if not was_running and not os.environ.get("HEIMDALL_KEEP_SERVICES"):
        manager.down()


@pytest.fixture(scope="session")
def resources(embedded_services) -> dict:
    """The pipeline's resources built from the embedded services' settings, for direct use."""
    from heimdall_pipeline.resources import build_resources

    return build_resources(os.environ)


@pytest.fixture(scope="session")
def engine(resources):
    from heimdall_pipeline.db.receivers_repo import seed_default_receivers

    engine = resources["database"].engine()
    seed_default_receivers(engine)
    return engine


@pytest.fixture(scope="session")
def defs(embedded_services):
    from heimdall_pipeline.definitions import defs

    return defs


@pytest.fixture()
def instance():
    from dagster import DagsterInstance

    with DagsterInstance.ephemeral() as instance:
        yield instance


@pytest.fixture()
def session_key() -> str:
    """A fresh, valid session key per test, so tests never see each other's data."""
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture()
def kiwi_network():
    """KiwiSDR doubles on one event loop: `kiwi_network.add_many(7)`, then `.register(engine)`
    makes them kiwisdr receivers (deactivated again after the test)."""
    from heimdall_pipeline_tests.kiwisdr_server import FakeKiwiNetwork

    with FakeKiwiNetwork() as network:
        yield network


@pytest.fixture()
def s3_client(resources):
    return resources["s3"].get_client()


def pytest_configure(config):
    config.addinivalue_line("markers", "browser: drives the Dagster UI in headless Chromium")
    config.addinivalue_line("markers", "faults: fault injection against the real services")
    settings.load_embedded_env()
