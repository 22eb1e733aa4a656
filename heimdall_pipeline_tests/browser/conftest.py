"""Browser fixtures: a real dagster-webserver + dagster-daemon on the embedded services, driven
by Playwright with Debian's Chromium.

Isolation: the daemon runs the default-RUNNING sensors, which act on EVERY requested session in
the Heimdall database and on every partition of the Dagster instance. Pointed at the shared
databases it would launch runs for other engineers' tests. So this module gets its own two
databases on the same embedded PostgreSQL server (dropped at the end) and its own DAGSTER_HOME;
only the S3 bucket is shared (session keys are unique).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from heimdall_pipeline import settings
from heimdall_pipeline.services.common import stop_process_group
from heimdall_pipeline_tests.dev_server import VENV_BIN, free_port, wait_for_webserver

ARTIFACTS = settings.REPO_ROOT / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
# As root, headless, on a closed network: no sandbox, no background traffic (see shared README).
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def ui_env(embedded_services, tmp_path_factory):
    """Environment of the UI processes: private databases, private DAGSTER_HOME."""
    suffix = f"{os.getpid()}_{uuid.uuid4().hex[:6]}"
    heimdall_db, dagster_db = f"heimdall_ui_{suffix}", f"dagster_ui_{suffix}"
    user = embedded_services.env["DAGSTER_PG_USER"]
    embedded_services.postgres.create_database(heimdall_db, user, timescaledb=True)
    embedded_services.postgres.create_database(dagster_db, user)
    home = tmp_path_factory.mktemp("dagster_home")
    shutil.copyfile(settings.REPO_ROOT / "dagster.yaml", home / "dagster.yaml")
    env = {**os.environ, **embedded_services.env, "DAGSTER_HOME": str(home), "DAGSTER_PG_DB": dagster_db,
           "HEIMDALL_DATABASE_URL": embedded_services.postgres.url(heimdall_db)}
    env.pop("HEIMDALL_PG_ADMIN_PASSWORD", None)  # the UI processes need no admin rights
    try:
        yield env
    finally:
        for db in (heimdall_db, dagster_db):
            embedded_services.postgres.drop_database(db)


@pytest.fixture(scope="module")
def ui_engine(ui_env):
    """The private Heimdall database: migrated, default receivers registered."""
    from heimdall_pipeline.db.engine import make_engine
    from heimdall_pipeline.db.migrations import migrate
    from heimdall_pipeline.db.receivers_repo import seed_default_receivers

    engine = make_engine(ui_env["HEIMDALL_DATABASE_URL"])
    migrate(engine)
    seed_default_receivers(engine)
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def dagster_ui(ui_env, ui_engine, tmp_path_factory):
    """Base URL of a running webserver with a running daemon on the private instance."""
    from dagster import DagsterInstance

    # Create the instance schema once here: the two processes would race to create it.
    with _patched_environ(ui_env):
        DagsterInstance.get().dispose()
    logs = tmp_path_factory.mktemp("dagster_logs")
    port = free_port()
    workspace = str(settings.REPO_ROOT / "workspace.yaml")
    commands = {
        "webserver": [str(VENV_BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(port), "-w", workspace],
        "daemon": [str(VENV_BIN / "dagster-daemon"), "run", "-w", workspace],
    }
    processes: dict[str, subprocess.Popen] = {}
    try:
        for name, command in commands.items():
            with open(logs / f"{name}.log", "wb") as log:
                processes[name] = subprocess.Popen(command, env=ui_env, cwd=settings.REPO_ROOT, stdout=log,
                                                   stderr=subprocess.STDOUT, start_new_session=True)
        base_url = f"http://127.0.0.1:{port}"
        wait_for_webserver(base_url, processes, {name: logs / f"{name}.log" for name in processes})
        print(f"\ndagster-webserver at {base_url}; logs in {logs}")
        yield base_url
    finally:
        for name, process in processes.items():
            stop_process_group(process, name)


class _patched_environ:
    """Temporarily replaces os.environ (DagsterInstance.get() reads DAGSTER_HOME and DAGSTER_PG_*)."""

    def __init__(self, env: dict[str, str]):
        self.env = env

    def __enter__(self):
        self.saved = dict(os.environ)
        os.environ.clear()
        os.environ.update(self.env)

    def __exit__(self, *exc):
        os.environ.clear()
        os.environ.update(self.saved)


@pytest.fixture(scope="module")
def ui_instance(ui_env, dagster_ui):
    """A DagsterInstance on the private instance storage (for reading what the UI did)."""
    from dagster import DagsterInstance

    with _patched_environ(ui_env):
        instance = DagsterInstance.get()
    yield instance
    instance.dispose()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture()
def page(browser):
    # Playwright gives each context a fresh, empty profile: the "--user-data-dir" of the notes.
    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    page = context.new_page()
    yield page
    context.close()


@pytest.fixture(scope="module")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
