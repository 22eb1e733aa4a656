"""Bad command-line input gets a named error and exit code 2, never a traceback, and nothing is stored."""

from __future__ import annotations

import os
import shutil
import uuid

import pytest
import sqlalchemy as sa

from heimdall_pipeline import cli
from heimdall_pipeline.db.receivers_repo import add_receiver, list_receivers
from heimdall_pipeline.db.sessions_repo import get_session
from heimdall_pipeline.receivers import Receiver
from heimdall_pipeline_tests.data import DCF77_DIR

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


# ----------------------------------------------------------------------------- session import
def _stored_nothing(engine, s3_client, key: str) -> bool:
    listed = s3_client.list_objects_v2(Bucket=os.environ["HEIMDALL_S3_BUCKET"], Prefix=f"incoming/{key}/")
    return get_session(engine, key) is None and not listed.get("Contents")


@pytest.mark.parametrize("case", ["two-files-one-name", "same-file-twice", "same-bytes-two-names", "missing-file",
                                  "missing-receivers-file"])
def test_session_import_refuses_clashes_by_name_and_stores_nothing(engine, s3_client, capsys, tmp_path, case):
    hb9odp = DCF77_DIR / "20200813T065220Z_77500_HB9ODP_iq.wav"
    jo51xl = DCF77_DIR / "20200813T065220Z_77500_JO51xl_iq.wav"
    positions = str(DCF77_DIR / "receivers.json")
    impostor = tmp_path / "copy" / hb9odp.name  # JO51xl's samples under HB9ODP's name
    impostor.parent.mkdir()
    shutil.copyfile(jo51xl, impostor)
    renamed = tmp_path / "20200813T065220Z_77500_pa0rdt_iq.wav"  # HB9ODP's bytes under another name
    shutil.copyfile(hb9odp, renamed)
    files, named = {
        "two-files-one-name": ([hb9odp, impostor], ["same name as", "other contents"]),
        "same-file-twice": ([hb9odp, jo51xl, hb9odp], ["given twice"]),
        "same-bytes-two-names": ([hb9odp, renamed], ["same bytes as"]),
        "missing-file": ([hb9odp, tmp_path / "nope_iq.wav"], ["nope_iq.wav", "cannot be read"]),
        "missing-receivers-file": ([hb9odp], [str(tmp_path / "no.json"), "cannot be read"]),
    }[case]
    if case == "missing-receivers-file":
        positions = str(tmp_path / "no.json")
    key = f"imp{uuid.uuid4().hex[:10]}"
    code, output = heimdall(capsys, "session", "import", *map(str, files), "--receivers", positions, "--key", key)
    assert code == 2, output
    assert all(text in output for text in named) and "Traceback" not in output, output
    assert _stored_nothing(engine, s3_client, key)


def test_session_request_refuses_an_empty_id_and_cuts_a_long_one(engine, capsys):
    key = f"cli{uuid.uuid4().hex[:10]}"
    code, output = heimdall(capsys, "session", "request", "--freq", "7.1e6", "--key", key,
                            "--receivers", "dk0ghz,,f5len")
    assert code == 2 and "empty receiver id at position 2" in output, output
    for argv in (["session", "request", "--freq", "7.1e6", "--receivers", "A" * 10_000],
                 ["session", "run", "x" * 10_000], ["receivers", "edit", "y" * 10_000, "--name", "n"]):
        code, output = heimdall(capsys, *argv)
        assert code == 2 and len(output) < 600 and "Traceback" not in output, (argv[:2], output[:700])
    assert get_session(engine, key) is None
