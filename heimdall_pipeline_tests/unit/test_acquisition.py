"""Concurrent acquisition policy: partial results, per-receiver timeouts, transient-only retries."""

from __future__ import annotations

import asyncio
import random
import time
from datetime import datetime, timezone

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from heimdall_pipeline.receivers import Receiver
from heimdall_pipeline.sources.acquisition import (
    AcquisitionError,
    AcquisitionTimeoutError,
    acquire_session,
    backoff_delay_s,
    run_blocking,
)
from heimdall_pipeline.capture import Capture
from heimdall_pipeline.sources.kiwisdr import ReceiverAuthError, ReceiverBusyError, capture_iq
from heimdall_pipeline_tests.kiwisdr_server import FakeKiwiSDR

FAST = dict(retry_backoff_base_s=0.001, max_backoff_s=0.005)


def rx(rid: str, *, timeout: float = 2.0, retries: int = 0) -> Receiver:
    return Receiver(id=rid, name=rid.upper(), url=f"sim://{rid}", kind="simulated", location_name="x",
                    latitude=0.0, longitude=0.0, timeout_seconds=timeout, retry_count=retries)


def fake_capture(receiver: Receiver) -> Capture:
    return Capture(session_key="s", receiver_id=receiver.id, samples=np.zeros(8, np.complex64),
                   sample_rate_hz=1000.0, center_frequency_hz=1e6, start_time=datetime.now(timezone.utc),
                   source_kind="simulated")


class Script:
    """capture_one that plays, per receiver, a list of outcomes (one per attempt).

    An outcome is a float (succeed after that many seconds), "hang" (never returns) or an exception.
    """

    def __init__(self, plan: dict[str, list]):
        self.plan = plan
        self.calls: dict[str, list[int]] = {rid: [] for rid in plan}

    async def __call__(self, receiver: Receiver, attempt: int) -> Capture:
        self.calls[receiver.id].append(attempt)
        outcomes = self.plan[receiver.id]
        outcome = outcomes[min(attempt, len(outcomes)) - 1]
        if outcome == "hang":
            await asyncio.sleep(3600)
        if isinstance(outcome, BaseException):
            raise outcome
        await asyncio.sleep(outcome)
        return fake_capture(receiver)


def test_one_failure_or_timeout_does_not_lose_the_others():
    script = Script({
        "a": [0.01],
        "b": [ReceiverAuthError("b", "bad password")],
        "c": ["hang"],
        "d": [ValueError("bug in a source")],
        "e": [0.02],
    })
    receivers = [rx("a"), rx("b"), rx("c", timeout=0.2), rx("d"), rx("e")]
    result = asyncio.run(acquire_session(receivers, script, **FAST))
    assert result.succeeded == ["a", "e"]
    assert result.failed == ["b", "c", "d"]
    assert not result.complete
    b, c, d = result.errors["b"], result.errors["c"], result.errors["d"]
    assert (b.error_type, b.transient, b.attempts) == ("ReceiverAuthError", False, 1)
    assert "bad password" in b.message and b.receiver_id == "b"
    assert (c.error_type, c.transient, c.attempts) == ("AcquisitionTimeoutError", True, 1)
    assert "0.2 s" in c.message
    assert (d.error_type, d.transient) == ("ValueError", False)
    assert b.to_dict() == {"receiver_id": "b", "error_type": "ReceiverAuthError", "message": b.message,
                           "attempts": 1, "transient": False}


def test_retries_transient_errors_only():
    busy = ReceiverBusyError("x", "all channels in use")
    script = Script({
        "flaky": [busy, busy, 0.0],
        "auth": [ReceiverAuthError("auth", "refused"), 0.0],
        "always_busy": [busy],
        "hangs_once": ["hang", 0.0],
    })
    receivers = [rx("flaky", retries=3), rx("auth", retries=3), rx("always_busy", retries=2),
                 rx("hangs_once", timeout=0.1, retries=1)]
    result = asyncio.run(acquire_session(receivers, script, **FAST))
    assert script.calls["flaky"] == [1, 2, 3] and "flaky" in result.captures
    assert result.attempts["flaky"] == 3
    assert script.calls["auth"] == [1] and result.errors["auth"].attempts == 1
    assert script.calls["always_busy"] == [1, 2, 3]
    failure = result.errors["always_busy"]
    assert failure.attempts == 3 and failure.transient and failure.error_type == "ReceiverBusyError"
    assert script.calls["hangs_once"] == [1, 2] and "hangs_once" in result.captures


def test_backoff_is_exponential_with_full_jitter_and_bounded():
    delays: list[float] = []

    async def record_sleep(s: float) -> None:
        delays.append(s)

    script = Script({"r": [ReceiverBusyError("r", "busy")]})
    result = asyncio.run(acquire_session([rx("r", retries=6)], script, retry_backoff_base_s=1.0, max_backoff_s=4.0,
                                         rng=random.Random(7), sleep=record_sleep))
    assert result.errors["r"].attempts == 7
    assert len(delays) == 6
    caps = [min(4.0, 1.0 * 2 ** (n - 1)) for n in range(1, 7)]
    assert all(0.0 <= d <= cap for d, cap in zip(delays, caps)), (delays, caps)


@given(retry=st.integers(1, 30), base=st.floats(0, 10), cap=st.floats(0, 60), seed=st.integers(0, 2**32))
def test_backoff_delay_bounds(retry, base, cap, seed):
    d = backoff_delay_s(retry, base_s=base, max_s=cap, rng=random.Random(seed))
    assert 0.0 <= d <= min(cap, base * 2 ** (retry - 1)) + 1e-12


def test_receivers_run_concurrently():
    script = Script({f"r{i}": [0.05] for i in range(6)})
    spans: dict[str, tuple[float, float]] = {}

    async def timed(receiver: Receiver, attempt: int) -> Capture:
        started = time.monotonic()
        capture = await script(receiver, attempt)
        spans[receiver.id] = (started, time.monotonic())
        return capture

    result = asyncio.run(acquire_session([rx(f"r{i}") for i in range(6)], timed, **FAST))
    assert len(result.captures) == 6
    # Concurrent: every receiver had started before the first one finished (one after the other,
    # the first would have ended before the second began).
    last_start = max(start for start, _ in spans.values())
    first_end = min(end for _, end in spans.values())
    assert last_start < first_end, spans


def test_duplicate_receiver_ids_refused():
    with pytest.raises(ValueError, match="duplicate"):
        asyncio.run(acquire_session([rx("a"), rx("a")], Script({"a": [0.0]})))


def test_one_receiver_success_after_retry():
    busy = ReceiverBusyError("r", "busy")
    script = Script({"r": [busy, 0.0]})
    result = asyncio.run(acquire_session([rx("r", retries=1)], script, **FAST))
    assert result.captures["r"].receiver_id == "r" and script.calls["r"] == [1, 2] and result.attempts["r"] == 2


def test_one_receiver_reports_last_error():
    script = Script({"r": [ReceiverBusyError("r", "busy")]})
    result = asyncio.run(acquire_session([rx("r", retries=2)], script, **FAST))
    assert isinstance(result.errors["r"].exception, ReceiverBusyError) and result.errors["r"].attempts == 3
    assert script.calls["r"] == [1, 2, 3]
    script = Script({"t": ["hang"]})
    result = asyncio.run(acquire_session([rx("t", timeout=0.05, retries=1)], script, **FAST))
    error = result.errors["t"].exception
    assert isinstance(error, AcquisitionTimeoutError) and error.transient and error.receiver_id == "t"
    assert script.calls["t"] == [1, 2]


def test_the_callers_time_limit_is_asked_as_each_attempt_begins():
    limits = iter([0.05, 5.0])  # the first attempt hangs past its limit, the second has room
    asked: list[str] = []

    def time_limit_s(receiver: Receiver) -> float:
        asked.append(receiver.id)
        return next(limits)

    script = Script({"t": ["hang", 0.1]})
    result = asyncio.run(acquire_session([rx("t", timeout=0.01, retries=1)], script, time_limit_s=time_limit_s,
                                         **FAST))
    assert result.captures["t"].receiver_id == "t" and asked == ["t", "t"] and script.calls["t"] == [1, 2]


def test_run_blocking_inside_running_loop():
    async def main():
        return run_blocking(lambda: acquire_session([rx("r")], Script({"r": [0.0]}), **FAST))

    assert asyncio.run(main()).captures["r"].receiver_id == "r"


def test_session_against_fake_kiwisdrs():
    """End to end: real client, four fake KiwiSDRs in different states, one session."""
    with (FakeKiwiSDR() as ok, FakeKiwiSDR(mode="busy") as busy, FakeKiwiSDR(mode="bad_password") as badp,
          FakeKiwiSDR(mode="slow") as slow):
        receivers = [ok.receiver("ok"), busy.receiver("busy", retry_count=1),
                     badp.receiver("badp", retry_count=2), slow.receiver("slow", timeout_seconds=0.4, retry_count=0)]

        async def capture_one(receiver: Receiver, attempt: int) -> Capture:
            return await capture_iq(receiver, session_key="sess", center_frequency_hz=7.1e6, duration_s=0.2)

        result = asyncio.run(acquire_session(receivers, capture_one, **FAST))
        assert busy.connections == 2 and badp.connections == 1 and slow.connections == 1
    assert result.succeeded == ["ok"]
    ok_capture = result.captures["ok"]  # starts past the server's re-tune
    np.testing.assert_array_equal(ok_capture.samples, ok.expected_tone(
        round(0.2 * 12001.135), start=ok_capture.details["retune"]["skipped_samples"]))
    assert result.errors["busy"].error_type == "ReceiverBusyError" and result.errors["busy"].attempts == 2
    assert result.errors["badp"].error_type == "ReceiverAuthError" and result.errors["badp"].attempts == 1
    assert result.errors["slow"].transient and result.errors["slow"].error_type == "AcquisitionTimeoutError"
    assert all(isinstance(f.exception, (AcquisitionError, TimeoutError)) for f in result.errors.values())
