"""Bad command-line input gets a named error and exit code 2, never a traceback, and nothing is stored."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa

from heimdall_pipeline import cli
from heimdall_pipeline.db.receivers_repo import add_receiver, list_receivers
from heimdall_pipeline.db.sessions_repo import get_session
from heimdall_pipeline.receivers import Receiver

pytestmark = pytest.mark.faults


def heimdall(capsys, *argv: str) -> tuple[int, str]:
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out + captured.err


@pytest.mark.parametrize("extra, field", [
    (["--at", "0001-01-01T00:00:00+01:00"], "scheduled_for"),
    (["--receivers", ","], "receiver_ids"),
    (["--receivers", ""], "receiver_ids"),
    (["--receivers", " , "], "receiver_ids"),
], ids=["at-before-year-1-in-utc", "receivers-comma", "receivers-empty", "receivers-blank"])
def test_session_request_refuses_with_the_field_named(engine, capsys, extra, field):
    key = f"cli{uuid.uuid4().hex[:10]}"
    code, output = heimdall(capsys, "session", "request", "--freq", "7.1e6", "--key", key, *extra)
    assert code == 2, output
    assert field in output and "Traceback" not in output
    assert get_session(engine, key) is None


@pytest.mark.parametrize("argv, named", [
    (["receivers", "add"], "receiver id"),
    (["receivers", "add", "{rid}", "--url", "sim://x", "--kind", "simulated", "--lon", "1"], "--lat"),
    (["receivers", "add", "{rid}", "--url", "sim://x", "--kind", "simulated", "--lat", "1"], "--lon"),
    (["receivers", "add", "{rid}", "--url", "sim://x", "--kind", "simulated", "--lat", "1", "--lon", "1",
      "--channels", "0"], "max_channels"),
    (["receivers", "add", "{rid}", "--url", "sim://x", "--kind", "simulated", "--lat", "1", "--lon", "1",
      "--name", "red\x1b[31m"], "name"),
    (["receivers", "add", "{rid}", "--url", "sim://x", "--kind", "simulated", "--lat", "1", "--lon", "1",
      "--name", "two\nlines"], "name"),
    (["receivers", "add", "{rid}", "--url", "sim://x", "--kind", "simulated", "--lat", "1", "--lon", "1",
      "--location", "bell\x07"], "location_name"),
    (["receivers", "edit"], "receiver id"),
    (["receivers", "disable"], "receiver id"),
], ids=["add-no-id", "add-no-lat", "add-no-lon", "channels-0", "name-esc", "name-newline", "location-bel",
        "edit-no-id", "disable-no-id"])
def test_receivers_command_refuses_with_the_problem_named(engine, capsys, argv, named):
    rid = f"cli{uuid.uuid4().hex[:8]}"
    try:
        code, output = heimdall(capsys, *(part.format(rid=rid) for part in argv))
        assert code == 2, output
        assert named in output and "Traceback" not in output
        assert rid not in {r.id for r in list_receivers(engine)}
    finally:  # a wrongly accepted receiver would join every "all active receivers" session of the run
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE websdrs SET is_active = false WHERE id = :id"), {"id": rid})


def test_receivers_list_never_prints_raw_control_characters(engine, capsys):
    rid = f"cli{uuid.uuid4().hex[:8]}"
    add_receiver(engine, Receiver(id=rid, name="plain", url="sim://x", kind="simulated", location_name="x",
                                  latitude=1.0, longitude=1.0, is_active=False))
    # a row written before names were checked (or by hand in SQL)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE websdrs SET name = :name WHERE id = :id"),
                     {"name": "evil\x1b[2J\nname", "id": rid})
    code, output = heimdall(capsys, "receivers", "list")
    assert code == 0
    line = next(line for line in output.splitlines() if line.startswith(rid))
    assert "evil\\x1b[2J\\x0aname" in line
    assert not any(ord(ch) < 0x20 and ch != "\n" for ch in output) and "\x1b" not in output
