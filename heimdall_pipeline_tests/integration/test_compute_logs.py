"""Step output through dagster.yaml's compute log manager (heimdall_pipeline/compute_logs.py): kept
in Dagster's files, where the UI reads it, and shown on the process's own output, with no helper
process started. A real Dagster instance in its own process; its storage is Dagster's default."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from heimdall_pipeline import settings

JOB = Path(__file__).with_name("talking_job.py")
OUT = ["python says out", "descriptor says out", "child says out"]
ERR = ["python says err", "child says err"]


def run_talking_job(home: Path) -> tuple[str, str, str]:
    process = subprocess.run([sys.executable, str(JOB)], env={**os.environ, "DAGSTER_HOME": str(home)},
                             capture_output=True, text=True, timeout=300)
    assert process.returncode == 0, process.stdout + process.stderr
    result = next(line for line in process.stdout.splitlines() if line.startswith("RESULT "))
    _, success, run_id, manager = result.split()
    assert success == "True", process.stdout + process.stderr
    assert manager == "ThreadMirroredComputeLogManager"
    assert f"STARTED {[]}" in process.stdout.splitlines()  # Dagster's own starts a tail and a watcher per stream
    return run_id, process.stdout, process.stderr


def lines_in(text: str, wanted: list[str]) -> list[str]:
    return [line for line in text.splitlines() if line in wanted]


def test_step_output_is_kept_for_the_ui_and_shown_without_helper_processes(tmp_path):
    shipped = yaml.safe_load((settings.REPO_ROOT / "dagster.yaml").read_text())
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump({"compute_logs": shipped["compute_logs"],
                                                            "telemetry": {"enabled": False}}))
    run_id, out, err = run_talking_job(tmp_path)
    # shown where the process's output goes (a user's terminal, a daemon's log)
    assert lines_in(out, OUT) == OUT and lines_in(err, ERR) == ERR
    # kept where Dagster's manager keeps it ($DAGSTER_HOME/storage), complete, for the UI
    from dagster import DagsterInstance
    from dagster._core.storage.compute_log_manager import ComputeIOType

    os.environ["DAGSTER_HOME"], home_before = str(tmp_path), os.environ.get("DAGSTER_HOME")
    try:
        with DagsterInstance.get() as instance:
            manager = instance.compute_log_manager
            (log_key,) = [key for key in manager.get_log_keys_for_log_key_prefix([run_id, "compute_logs"],
                                                                                   io_type=ComputeIOType.STDERR)]
            data = manager.get_log_data(log_key)
            assert manager.is_capture_complete(log_key)
    finally:
        if home_before is None:
            del os.environ["DAGSTER_HOME"]
        else:
            os.environ["DAGSTER_HOME"] = home_before
    assert Path(manager.get_captured_local_path(log_key, "out")).is_relative_to(tmp_path / "storage")
    assert lines_in(data.stdout.decode(), OUT) == OUT
    assert lines_in(data.stderr.decode(), ERR) == ERR


def test_the_default_folder_needs_dagster_home(monkeypatch, tmp_path):
    from heimdall_pipeline.compute_logs import ThreadMirroredComputeLogManager

    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    assert ThreadMirroredComputeLogManager.from_config_value(None, {})._base_dir == str(tmp_path / "storage")
    assert ThreadMirroredComputeLogManager.from_config_value(None, {"base_dir": "/elsewhere"})._base_dir == "/elsewhere"
    monkeypatch.delenv("DAGSTER_HOME")
    with pytest.raises(ValueError, match="DAGSTER_HOME"):
        ThreadMirroredComputeLogManager.from_config_value(None, {})
