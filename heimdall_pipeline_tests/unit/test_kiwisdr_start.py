"""The KiwiSDR client records from one start instant: it connects and tunes first, then stores
samples from `start_at`, cut by the frames' GNSS tags (doubles whose GNSS time follows the wall
clock, streaming in real time), and fails a receiver that is not streaming by then."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from heimdall_pipeline.dsp.timing import NS, fit_time_model, utc_to_gps_ns
from heimdall_pipeline.sources.acquisition import StartMissedError
from heimdall_pipeline.sources.kiwisdr import capture_iq
from heimdall_pipeline.storage.kiwi_wav import read_kiwi_wav
from heimdall_pipeline_tests.data import DCF77_DIR
from heimdall_pipeline_tests.kiwisdr_server import (
    SECOND_MARK_S, FakeKiwiNetwork, FakeKiwiSDR, common_replay_window, replay_start_at,
)

RATE = 12001.135


def utc_ns(value: datetime) -> int:
    return round(value.timestamp() * 1e6) * 1000


def first_sample_ns(capture) -> int:
    """The first sample's UTC ns as the client recorded it (nanoseconds, from details)."""
    text = capture.details["start"]["first_sample_utc"]
    whole = datetime.fromisoformat(text[:19] + "+00:00")
    return round(whole.timestamp()) * NS + int(text[20:29])


async def capture_all(receivers, start_at, duration_s, **kwargs):
    return await asyncio.gather(*(capture_iq(r, session_key="s", center_frequency_hz=7.1e6, duration_s=duration_s,
                                             start_at=start_at, **kwargs) for r in receivers))


def test_receivers_store_samples_from_the_start_instant_by_gnss_time():
    """Two live doubles (GNSS headers by the wall clock, the tone at a quarter amplitude in the
    first 100 ms of every GNSS second): both captures begin at the start instant to the sample,
    and the second marks sit where the recorded first-sample time says whole seconds are."""
    with FakeKiwiNetwork() as network:
        for rid in ("a", "b"):
            network.add(rid, second_marks=True, amplitude=8000)
        start_at = datetime.now(timezone.utc) + timedelta(seconds=2.6)  # past the 1.75 s re-tune settle
        captures = asyncio.run(capture_all(network.receivers, start_at, 1.5))
    for capture in captures:
        start = capture.details["start"]
        assert start["time_source"] == "gnss" and start["decided_by"] == "gnss"
        assert 0 <= start["after_requested_s"] <= 1 / RATE
        assert abs(utc_ns(capture.start_time) - utc_ns(start_at)) <= 1e9 / RATE + 1_000
        assert start["waited_frames"] > 0  # the stream ran before the start instant
        assert abs(start["client_clock_minus_gnss_s"]) < 0.1
        # the marks, from the samples alone, against the recorded first-sample time
        t_ns = first_sample_ns(capture) + np.round(np.arange(len(capture.samples)) * NS / RATE).astype(np.int64)
        gps_ns = t_ns + 18 * NS  # the double marks GNSS seconds: GPS - UTC = 18 s
        expected_low = gps_ns % NS < SECOND_MARK_S * NS
        measured_low = np.abs(capture.samples) < 0.5 * np.abs(capture.samples).max()
        assert expected_low.any() and not expected_low.all()
        assert np.count_nonzero(expected_low != measured_low) <= 4  # a sample either side of each edge
        # the GNSS tags go with the stored samples: the first one is the first sample's
        first_tag = capture.gps_timestamps[0]
        assert first_tag.sample_index == 0
        assert abs((first_tag.gps_seconds * NS + first_tag.gps_nanoseconds) % NS - gps_ns[0] % NS) <= 2
    spread_ns = abs(utc_ns(captures[0].start_time) - utc_ns(captures[1].start_time))
    assert spread_ns <= 1e9 / RATE + 1_000


def test_a_receiver_not_streaming_by_the_start_instant_fails_with_that_reason():
    with FakeKiwiSDR() as kiwi:
        start_at = datetime.now(timezone.utc) + timedelta(seconds=0.5)  # inside the server's re-tune
        with pytest.raises(StartMissedError, match="was not streaming at the session's start instant") as info:
            asyncio.run(capture_all([kiwi.receiver()], start_at, 0.5))
    assert info.value.transient is False


def test_without_gnss_time_the_client_clock_places_the_start():
    with FakeKiwiSDR(gps_solution_age=255) as kiwi:
        start_at = datetime.now(timezone.utc) + timedelta(seconds=2.2)
        (capture,) = asyncio.run(capture_all([kiwi.receiver()], start_at, 0.3))
    start = capture.details["start"]
    assert start["time_source"] == "client_clock" and start["client_clock_minus_gnss_s"] is None
    assert not any(t.has_solution for t in capture.gps_timestamps)
    assert abs(utc_ns(capture.start_time) - utc_ns(start_at)) <= 1e9 / RATE + 1_000


def test_a_live_replay_plays_the_recording_where_now_falls_in_it():
    """A double replaying a real recording live: the capture's samples are the recording's from
    the moment its GNSS time (the wall clock moved back by whole loop windows) says."""
    path = DCF77_DIR / "20200813T065220Z_77500_JO51xl_iq.wav"
    window = common_replay_window(sorted(DCF77_DIR.glob("*_iq.wav")))
    assert (window[1] - window[0]) % NS == 0 and window[1] - window[0] >= 25 * NS
    with FakeKiwiSDR(replay=path, replay_window_gps_ns=window) as kiwi:
        start_at = replay_start_at(window, datetime.now(timezone.utc) + timedelta(seconds=2.6), 1.0)
        (capture,) = asyncio.run(capture_all([kiwi.receiver()], start_at, 1.0))
    recording = read_kiwi_wav(path)
    model = fit_time_model(recording.timestamps, recording.header_rate_hz, recording.name.start_utc)
    assert capture.sample_rate_hz == pytest.approx(model.sample_rate_hz, abs=1e-5)
    assert capture.details["start"]["time_source"] == "gnss"
    length = window[1] - window[0]
    start_gps = utc_to_gps_ns(start_at)
    recorded_gps = window[0] + (start_gps - window[0]) % length
    index = model.sample_index_at(window[0], (recorded_gps - window[0]) / NS)
    matches = [j for j in range(int(index) - 3, int(index) + 4)
               if np.array_equal(recording.samples[j:j + len(capture.samples)], capture.samples)]
    assert matches and abs(matches[0] - index) <= 1.0, (matches, index)
