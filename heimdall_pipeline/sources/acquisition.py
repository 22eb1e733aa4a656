"""Concurrent acquisition of one session from many receivers.

Pure: no Dagster, no storage. The source (KiwiSDR client, simulator, ...) is injected as
``capture_one(receiver, attempt) -> Awaitable[Capture]``; this module only applies the policy:

- every receiver at once (``asyncio.gather``), so a session takes about as long as its slowest
  receiver, not the sum;
- a per-attempt time limit (``asyncio.wait_for``): ``receiver.timeout_seconds``, or what the
  caller's ``time_limit_s(receiver)`` says as the attempt begins (a live source adds the wait for
  the session's start instant and the recording itself, sources/dispatch.py);
- up to ``receiver.retry_count`` retries (so ``1 + retry_count`` attempts) for *transient* errors
  only (busy receiver, time-out, dropped connection), with exponential backoff and full jitter:
  before retry ``n`` (1-based) it sleeps ``uniform(0, min(max_backoff_s, base * 2**(n-1)))``, or
  longer when the error carries the receiver's own ``retry_after_s`` (an OpenWebRX backoff);
- partial results: a receiver that fails is reported in ``SessionAcquisition.errors`` and never
  loses the captures of the others.

The error hierarchy shared by every source lives here: ``AcquisitionError`` carries the
``receiver_id`` and whether the failure is ``transient`` (worth retrying).
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from heimdall_pipeline.receivers import Receiver
from heimdall_pipeline.capture import Capture

__all__ = [
    "AcquisitionError",
    "AcquisitionTimeoutError",
    "StartMissedError",
    "AcquisitionFailure",
    "SessionAcquisition",
    "CaptureOne",
    "acquire_session",
    "acquire_with_retries",
    "run_blocking",
    "backoff_delay_s",
    "is_transient",
]

DEFAULT_RETRY_BACKOFF_BASE_S = 0.5
DEFAULT_MAX_BACKOFF_S = 10.0


class AcquisitionError(Exception):
    """A receiver could not deliver a capture.

    receiver_id: which receiver failed. transient: True when trying again later may succeed
    (busy, time-out, dropped connection); False when it will not (bad password, frequency out of
    range, protocol garbage).
    """

    transient: bool = False
    retry_after_s: float = 0.0  # the receiver asked not to be tried again before this many seconds

    def __init__(self, receiver_id: str, message: str, *, transient: bool | None = None,
                 retry_after_s: float | None = None):
        self.receiver_id = receiver_id
        if transient is not None:
            self.transient = transient
        if retry_after_s is not None:
            self.retry_after_s = float(retry_after_s)
        super().__init__(f"receiver '{receiver_id}': {message}")


class AcquisitionTimeoutError(AcquisitionError):
    """No capture within the receiver's time limit (transient)."""

    transient = True


class StartMissedError(AcquisitionError):
    """A live receiver was not streaming at the session's start instant, so it cannot record the
    moment the other receivers record (not transient: trying again is later still)."""

    transient = False


CaptureOne = Callable[[Receiver, int], Awaitable[Capture]]
TimeLimit = Callable[[Receiver], float]  # an attempt's time limit, asked as the attempt begins
Sleep = Callable[[float], Awaitable[Any]]


@dataclasses.dataclass(frozen=True)
class AcquisitionFailure:
    """Why one receiver has no capture in a session (JSON-friendly via ``to_dict``)."""

    receiver_id: str
    error_type: str
    message: str
    attempts: int
    transient: bool
    exception: BaseException | None = dataclasses.field(default=None, compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "receiver_id": self.receiver_id,
            "error_type": self.error_type,
            "message": self.message,
            "attempts": self.attempts,
            "transient": self.transient,
        }


@dataclasses.dataclass(frozen=True)
class SessionAcquisition:
    """Outcome of acquiring one session: captures and failures keyed by receiver id."""

    captures: dict[str, Capture]
    errors: dict[str, AcquisitionFailure]
    attempts: dict[str, int]
    elapsed_s: float

    @property
    def succeeded(self) -> list[str]:
        return sorted(self.captures)

    @property
    def failed(self) -> list[str]:
        return sorted(self.errors)

    @property
    def complete(self) -> bool:
        return not self.errors


def is_transient(error: BaseException) -> bool:
    """Whether an error from a capture attempt is worth retrying."""
    if isinstance(error, AcquisitionError):
        return bool(error.transient)
    if isinstance(error, (asyncio.TimeoutError, TimeoutError, ConnectionError)):
        return True
    return False


def backoff_delay_s(retry: int, *, base_s: float, max_s: float, rng: random.Random | None = None) -> float:
    """Full-jitter exponential backoff before retry number ``retry`` (1-based)."""
    if retry < 1:
        return 0.0
    cap = min(float(max_s), float(base_s) * (2.0 ** (retry - 1)))
    cap = max(cap, 0.0)
    return (rng or random).uniform(0.0, cap)


class _AttemptsExhausted(Exception):
    def __init__(self, error: BaseException, attempts: int):
        self.error = error
        self.attempts = attempts


async def _run_with_policy(
    receiver: Receiver,
    capture_one: CaptureOne,
    *,
    retry_backoff_base_s: float,
    max_backoff_s: float,
    rng: random.Random | None,
    sleep: Sleep,
    time_limit_s: TimeLimit | None,
) -> tuple[Capture, int]:
    max_attempts = 1 + max(0, int(receiver.retry_count))
    attempt = 0
    while True:
        attempt += 1
        timeout_s = float(time_limit_s(receiver) if time_limit_s else receiver.timeout_seconds)
        try:
            capture = await asyncio.wait_for(capture_one(receiver, attempt), timeout=timeout_s)
            return capture, attempt
        except asyncio.CancelledError:
            raise
        except (asyncio.TimeoutError, TimeoutError) as exc:
            error: BaseException = exc
            if not isinstance(exc, AcquisitionError):
                error = AcquisitionTimeoutError(
                    receiver.id, f"no capture within {timeout_s:g} s (attempt {attempt} of {max_attempts})"
                )
                error.__cause__ = exc
        except Exception as exc:  # noqa: BLE001 - every failure is reported, none is lost
            error = exc
        if attempt >= max_attempts or not is_transient(error):
            raise _AttemptsExhausted(error, attempt)
        delay = backoff_delay_s(attempt, base_s=retry_backoff_base_s, max_s=max_backoff_s, rng=rng)
        await sleep(max(delay, float(getattr(error, "retry_after_s", 0.0))))


async def acquire_with_retries(
    receiver: Receiver,
    capture_one: CaptureOne,
    *,
    retry_backoff_base_s: float = DEFAULT_RETRY_BACKOFF_BASE_S,
    max_backoff_s: float = DEFAULT_MAX_BACKOFF_S,
    rng: random.Random | None = None,
    sleep: Sleep = asyncio.sleep,
    time_limit_s: TimeLimit | None = None,
) -> Capture:
    """One receiver with the timeout/retry policy; raises the last error when it gives up."""
    try:
        capture, _ = await _run_with_policy(
            receiver, capture_one, retry_backoff_base_s=retry_backoff_base_s,
            max_backoff_s=max_backoff_s, rng=rng, sleep=sleep, time_limit_s=time_limit_s,
        )
    except _AttemptsExhausted as gave_up:
        raise gave_up.error from None
    return capture


async def acquire_session(
    receivers: Sequence[Receiver],
    capture_one: CaptureOne,
    *,
    retry_backoff_base_s: float = DEFAULT_RETRY_BACKOFF_BASE_S,
    max_backoff_s: float = DEFAULT_MAX_BACKOFF_S,
    rng: random.Random | None = None,
    sleep: Sleep = asyncio.sleep,
    time_limit_s: TimeLimit | None = None,
) -> SessionAcquisition:
    """Captures from every receiver concurrently; failures are collected, never propagated.

    capture_one(receiver, attempt) is called with attempt = 1, 2, ... Only ``asyncio``
    cancellation of the caller propagates.
    """
    ids = [r.id for r in receivers]
    if len(set(ids)) != len(ids):
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        raise ValueError(f"duplicate receiver ids in one session: {', '.join(duplicates)}")
    started = time.monotonic()

    async def one(receiver: Receiver) -> tuple[str, Capture | None, AcquisitionFailure | None, int]:
        try:
            capture, attempts = await _run_with_policy(
                receiver, capture_one, retry_backoff_base_s=retry_backoff_base_s,
                max_backoff_s=max_backoff_s, rng=rng, sleep=sleep, time_limit_s=time_limit_s,
            )
            return receiver.id, capture, None, attempts
        except _AttemptsExhausted as gave_up:
            err = gave_up.error
            failure = AcquisitionFailure(
                receiver_id=receiver.id,
                error_type=type(err).__name__,
                message=str(err) or type(err).__name__,
                attempts=gave_up.attempts,
                transient=is_transient(err),
                exception=err,
            )
            return receiver.id, None, failure, gave_up.attempts

    results = await asyncio.gather(*(one(r) for r in receivers))
    captures: dict[str, Capture] = {}
    errors: dict[str, AcquisitionFailure] = {}
    attempts: dict[str, int] = {}
    for rid, capture, failure, n in results:
        attempts[rid] = n
        if capture is not None:
            captures[rid] = capture
        if failure is not None:
            errors[rid] = failure
    return SessionAcquisition(captures=captures, errors=errors, attempts=attempts,
                              elapsed_s=time.monotonic() - started)


def run_blocking(make_coroutine: Callable[[], Awaitable[Any]], name: str = "acquisition") -> Any:
    """Runs a coroutine to completion from synchronous code. Safe where the calling thread
    already runs an event loop (a notebook, a test harness): the work then runs on a private
    loop in a helper thread instead of failing with "asyncio.run() cannot be called"."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make_coroutine())
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(make_coroutine())
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=target, name=name, daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]
