"""The source registry: every place that depends on the kinds reads them from it."""

from __future__ import annotations

import asyncio
import dataclasses
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from heimdall_pipeline.cli import build_parser
from heimdall_pipeline.receivers import DEFAULT_RECEIVERS, InvalidReceiverError, Receiver
from heimdall_pipeline.sessions import InvalidSessionRequestError, Session
from heimdall_pipeline.sources import registry
from heimdall_pipeline.sources.acquisition import AcquisitionError, StartMissedError
from heimdall_pipeline.sources.base import CaptureIO
from heimdall_pipeline.sources.dispatch import (
    LiveWindowClosedError, attempt_time_limit, capture_function, check_live_window, session_start,
)
from heimdall_pipeline.validation import validate_receiver, validate_session_request
from heimdall_pipeline_tests.stored_file_source import stored_file_kind, stored_file_receiver  # noqa: F401 (fixture)

NOW = datetime(2026, 11, 23, 13, 26, tzinfo=timezone.utc)
KIWI = Receiver(id="kiwi1", name="Kiwi", url="http://kiwi.example:8073", kind="kiwisdr", location_name="x",
                latitude=50.0, longitude=5.0)


@pytest.fixture()
def tape(stored_file_kind, tmp_path):
    np.save(tmp_path / "tape.npy", np.full(12_000, 1e-6, dtype=np.complex64))
    return stored_file_kind


def tape_receiver(**fields) -> Receiver:
    return stored_file_receiver(Path(tempfile.gettempdir()) / "missing.npy", **fields)


def choices(argv_prefix: list[str], flag: str) -> list[str]:
    parser = build_parser()
    sub = parser._subparsers._group_actions[0].choices[argv_prefix[0]]
    if len(argv_prefix) > 1:
        sub = sub._subparsers._group_actions[0].choices[argv_prefix[1]]
    return next(a for a in sub._actions if flag in a.option_strings).choices


def test_the_built_in_kinds():
    assert registry.source_kinds() == ("kiwisdr", "openwebrx", "recording", "simulated")
    assert registry.get_source("kiwisdr").live and not registry.get_source("simulated").live
    assert registry.get_source("openwebrx").live and not registry.get_source("recording").live
    with pytest.raises(ValueError, match="'websdr' is not a source kind"):
        registry.get_source("websdr")


def test_a_kind_is_registered_once():
    with pytest.raises(ValueError, match="already registered"):
        registry.register(registry.get_source("kiwisdr"))
    with pytest.raises(TypeError):
        registry.register(object())


def test_a_registered_kind_reaches_receivers_sessions_and_the_cli(tape):
    receiver = validate_receiver(tape_receiver())
    assert tape.frequency_range_hz(receiver) == (0.0, 30e6)
    with pytest.raises(InvalidReceiverError, match="file for a storedfile receiver") as info:
        validate_receiver(tape_receiver(url="http://x"))
    assert info.value.field == "url"
    assert "storedfile" in choices(["receivers"], "--kind")
    assert "storedfile" in choices(["session", "request"], "--source")

    session = validate_session_request(center_frequency_hz=20e6, duration_s=1, receiver_ids=["tape1"],
                                       receivers=[receiver], now=NOW)
    assert registry.source_for(session, receiver) is tape and session.transmitter is None
    with pytest.raises(InvalidSessionRequestError, match=r"receiver 'tape1' \(storedfile\) range 0..30 MHz"):
        validate_session_request(center_frequency_hz=60e6, duration_s=1, receivers=[receiver], now=NOW)
    # a session that names the kind is refused for receivers of another kind
    with pytest.raises(InvalidSessionRequestError, match="f5len.*cannot be recorded as storedfile"):
        validate_session_request(center_frequency_hz=7e6, duration_s=1, source_kind="storedfile",
                                 receiver_ids=["f5len"], receivers=DEFAULT_RECEIVERS, now=NOW)


def test_unregistered_kinds_are_refused_by_name():
    with pytest.raises(InvalidReceiverError, match="'storedfile' is not a source kind") as info:
        validate_receiver(tape_receiver())
    assert info.value.field == "kind"
    with pytest.raises(InvalidSessionRequestError, match="'storedfile' is not one of auto, kiwisdr, openwebrx, recording, simulated"):
        validate_session_request(center_frequency_hz=7e6, duration_s=1, source_kind="storedfile",
                                 receivers=DEFAULT_RECEIVERS, now=NOW)
    # a row written by hand with a kind no module provides
    stray = dataclasses.replace(DEFAULT_RECEIVERS[0], kind="storedfile")
    with pytest.raises(InvalidSessionRequestError, match="f5len.*'storedfile' is not a source kind") as info:
        validate_session_request(center_frequency_hz=7e6, duration_s=1, receiver_ids=["f5len"],
                                 receivers=[stray], now=NOW)
    assert info.value.field == "receiver_ids"


def test_kiwisdr_refuses_what_it_cannot_tune_naming_receiver_and_range():
    with pytest.raises(InvalidSessionRequestError, match=r"145.5 MHz is outside receiver 'kiwi1' \(kiwisdr\) "
                                                         r"range 0..30 MHz"):
        validate_session_request(center_frequency_hz=145.5e6, duration_s=1, receiver_ids=["kiwi1"],
                                 receivers=[KIWI], now=NOW)
    with pytest.raises(InvalidSessionRequestError, match="48000 Hz is not available on kiwisdr receiver 'kiwi1'"):
        validate_session_request(center_frequency_hz=7e6, duration_s=1, sample_rate_hz=48000,
                                 receiver_ids=["kiwi1"], receivers=[KIWI], now=NOW)


def test_only_live_sources_are_held_to_the_live_window(tape):
    past = Session(session_key="old", center_frequency_hz=7e6, duration_s=1, scheduled_for=NOW - timedelta(days=1))
    check_live_window(past, [tape_receiver(), DEFAULT_RECEIVERS[0]], now=NOW)  # neither is live
    with pytest.raises(LiveWindowClosedError, match="kiwi1.*live kiwisdr receiver.*backfill receiver_metrics"):
        check_live_window(past, [tape_receiver(), KIWI], now=NOW)
    check_live_window(dataclasses.replace(past, scheduled_for=NOW), [KIWI], now=NOW)
    # a kiwisdr receiver recorded by the simulator is not live
    check_live_window(dataclasses.replace(past, source_kind="simulated"), [KIWI], now=NOW)


def test_dispatch_records_each_receiver_by_its_source(tape, tmp_path):
    session = Session(session_key="mixed", center_frequency_hz=7e6, duration_s=0.01,
                      scheduled_for=NOW - timedelta(days=1))
    capture = asyncio.run(capture_function(session)(stored_file_receiver(tmp_path / "tape.npy"), 1))
    assert capture.source_kind == "storedfile" and len(capture.samples) == 120
    with pytest.raises(AcquisitionError, match="no stored recording"):
        asyncio.run(capture_function(session)(tape_receiver(), 1))
    with pytest.raises(LiveWindowClosedError):
        asyncio.run(capture_function(session)(KIWI, 1))


def test_live_receivers_share_one_start_instant_after_the_connect_margin():
    margin = registry.get_source("kiwisdr").connect_margin_s
    assert margin > 1.75  # at least the KiwiSDR's re-tune settle
    due = Session(session_key="due", center_frequency_hz=7e6, duration_s=10, scheduled_for=NOW - timedelta(seconds=30))
    assert session_start(due, [DEFAULT_RECEIVERS[0]], now=NOW) is None  # nothing live: any time
    assert session_start(due, [DEFAULT_RECEIVERS[0], KIWI], now=NOW) == NOW + timedelta(seconds=margin)
    later = dataclasses.replace(due, scheduled_for=NOW + timedelta(minutes=3))  # `--at` ahead: that instant
    assert session_start(later, [KIWI], now=NOW) == later.scheduled_for
    # a kiwisdr receiver recorded by the simulator is not live
    assert session_start(dataclasses.replace(due, source_kind="simulated"), [KIWI], now=NOW) is None


def test_a_live_attempt_is_given_the_wait_and_the_recording_and_never_starts_late():
    session = Session(session_key="live", center_frequency_hz=7e6, duration_s=10)
    start = datetime.now(timezone.utc) + timedelta(seconds=60)
    limit = attempt_time_limit(session, start)
    assert limit(DEFAULT_RECEIVERS[0]) == DEFAULT_RECEIVERS[0].timeout_seconds
    assert limit(KIWI) == pytest.approx(KIWI.timeout_seconds + 60 + 10, abs=1)
    # an attempt (a retry) that begins after the start instant fails without connecting
    passed = datetime.now(timezone.utc) - timedelta(seconds=2)
    with pytest.raises(StartMissedError, match="not streaming at the session's start instant.*attempt 2 began") as info:
        asyncio.run(capture_function(session, CaptureIO(start_at=passed))(KIWI, 2))
    assert not info.value.transient
