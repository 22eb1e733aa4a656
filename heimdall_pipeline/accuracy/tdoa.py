"""How well TDoA does against a known truth: figures for tests and for `heimdall bench`.

* ``real_recordings_figure``: a directory of kiwirecorder IQ files with a receivers.json (receiver
  positions and the transmitter's true position), e.g. the shared DCF77 set -> ``tdoa_real``.
* ``simulated_figure``: random transmitters inside the receivers' convex hull, timed simulated
  captures at a given worst-receiver SNR -> ``tdoa_sim``.

Each figure: the position error (km), every pair's lag error (microseconds), whether the 95 %
region holds the truth, and the solve time (reported, never asserted).
"""

from __future__ import annotations

import dataclasses
import json
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from heimdall_pipeline.accuracy.rss import hull_sampler
from heimdall_pipeline.propagation import path_loss_db, slant_distance_km, thermal_noise_power_dbm
from heimdall_pipeline.receivers import DEFAULT_RECEIVERS, Receiver
from heimdall_pipeline.sources.simulator import (
    Transmitter,
    receiver_characteristics,
    simulate_capture,
    transmitted_waveform,
)
from heimdall_pipeline.storage.kiwi_wav import read_kiwi_wav, recording_capture
from heimdall_pipeline.tdoa.align import TimedCapture, timed_capture
from heimdall_pipeline.tdoa.allowance import REAL_RECEIVER_CLASS, SIMULATED_CLASS
from heimdall_pipeline.tdoa.localize import TdoaResult, localize_tdoa

SIM_CENTER_HZ = 7_100_000.0
SIM_SAMPLE_RATE_HZ = 12_000.0


def _lag_errors_us(result: TdoaResult) -> dict[str, float]:
    return {f"{p['receiver_a']}-{p['receiver_b']}": p["lag_error_s"] * 1e6 for p in result.pairs if "lag_error_s" in p}


def _timed(result_fn, *args, **kwargs) -> tuple[TdoaResult, float]:
    started = time.perf_counter()
    result = result_fn(*args, **kwargs)
    return result, time.perf_counter() - started


def recording_positions(directory: str | Path) -> tuple[dict[str, Receiver], tuple[float, float] | None]:
    """The receivers.json of a recording directory ({"receivers": {name: {latitude, longitude}},
    "transmitter": {latitude, longitude}}) as Receivers by name, and the transmitter's true
    position when it gives one."""
    info = json.loads((Path(directory) / "receivers.json").read_text())
    receivers = {
        name: Receiver(id=name.lower(), name=name, url=f"http://{place.get('host', 'localhost')}:{place.get('port', 8073)}",
                       kind="kiwisdr", location_name=name, latitude=float(place["latitude"]),
                       longitude=float(place["longitude"]))
        for name, place in info["receivers"].items()
    }
    tx = info.get("transmitter")
    return receivers, (None if tx is None else (float(tx["latitude"]), float(tx["longitude"])))


def recording_set(directory: str | Path) -> tuple[list[TimedCapture], tuple[float, float] | None]:
    """The kiwirecorder IQ files of a directory as TimedCaptures positioned from its receivers.json,
    and the transmitter's true position when the file gives one."""
    directory = Path(directory)
    receivers, truth = recording_positions(directory)
    captures = []
    for path in sorted(directory.glob("*_iq.wav")):
        recording = read_kiwi_wav(path)
        receiver = receivers.get(recording.name.receiver)
        if receiver is None:
            raise ValueError(f"{path.name}: receiver {recording.name.receiver!r} is not in {directory / 'receivers.json'}")
        captures.append(timed_capture(receiver, recording_capture(recording, "reference", receiver.id)))
    return captures, truth


def real_recordings_figure(directory: str | Path, **localize_kwargs: Any) -> dict[str, Any]:
    """The ``tdoa_real`` figure of a reference recording set (real receivers: the KiwiSDR timing
    class applies unless localize_kwargs say otherwise)."""
    captures, truth = recording_set(directory)
    localize_kwargs.setdefault("timing_class", REAL_RECEIVER_CLASS)
    result, seconds = _timed(localize_tdoa, captures, truth=truth, **localize_kwargs)
    return {
        "figure": "tdoa_real",
        "localized": result.localized,
        "reason": result.reason,
        "error_km": result.error_km,
        "inside_region_95": None if result.truth is None else result.truth.get("inside_region"),
        "region_95_km": None if result.region is None else (result.region.semi_major_km, result.region.semi_minor_km),
        "cross_check": result.cross_check,
        "lag_errors_us": _lag_errors_us(result),
        "solve_time_s": seconds,
        "result": result.to_json(),
    }


def with_timing_offset(capture: TimedCapture, offset_s: float) -> TimedCapture:
    """The capture as a receiver whose GNSS time runs offset_s ahead would have stamped it."""
    model = capture.time_model
    shifted = tuple(k + int(round(offset_s * 1e9)) for k in model.knot_gps_ns)
    return dataclasses.replace(capture, time_model=dataclasses.replace(model, knot_gps_ns=shifted))


def simulated_trial(rng: np.random.Generator, session_key: str, receivers: Sequence[Receiver], *, snr_db: float,
                    duration_s: float, sampler, bandwidth_hz: float, window_s: float,
                    bias_bound_s: float = 0.0) -> tuple[TdoaResult, float]:
    """One random transmitter (noise-like modulation) inside the receivers' hull, its EIRP set so
    the weakest receiver sees snr_db (full band), timed captures, TDoA with the truth. With
    bias_bound_s, each receiver's time is off by a constant drawn uniformly within +-bias_bound_s
    and TDoA assumes real receivers (the KiwiSDR class), else simulated ones."""
    lat, lon = sampler(rng)
    offset = float(rng.uniform(-2000.0, 2000.0))
    probe = Transmitter(frequency_hz=SIM_CENTER_HZ + offset, eirp_dbm=0.0, latitude=lat, longitude=lon,
                        modulation="noise", bandwidth_hz=bandwidth_hz)
    needed = []
    for r in receivers:
        distance = slant_distance_km(lat, lon, 0.0, r.latitude, r.longitude, r.altitude_m)
        noise = thermal_noise_power_dbm(SIM_SAMPLE_RATE_HZ, receiver_characteristics(r.id).noise_figure_db)
        needed.append(noise + snr_db + path_loss_db(distance, probe.frequency_hz))
    tx = Transmitter(frequency_hz=probe.frequency_hz, eirp_dbm=float(max(needed)), latitude=lat, longitude=lon,
                     modulation="noise", bandwidth_hz=bandwidth_hz)
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    waveform = transmitted_waveform(session_key, tx, SIM_SAMPLE_RATE_HZ, duration_s)
    captures = [timed_capture(r, simulate_capture(session_key, r, tx, SIM_CENTER_HZ, SIM_SAMPLE_RATE_HZ, duration_s,
                                                  start, waveform=waveform)) for r in receivers]
    if bias_bound_s:
        captures = [with_timing_offset(c, float(rng.uniform(-bias_bound_s, bias_bound_s))) for c in captures]
    return _timed(localize_tdoa, captures, window_s=window_s, truth=(lat, lon),
                  timing_class=REAL_RECEIVER_CLASS if bias_bound_s else SIMULATED_CLASS)


def simulated_figure(trials: int = 20, seed: int = 0, *, snr_db: float = 10.0, duration_s: float = 8.0,
                     bandwidth_hz: float = 500.0, window_s: float = 0.5, bias_bound_s: float = 0.0,
                     receivers: Sequence[Receiver] = DEFAULT_RECEIVERS) -> dict[str, Any]:
    """The ``tdoa_sim`` figure: median / 90th-percentile error, the share of trials whose 95 %
    region holds the truth, lag error rms and the median solve time over ``trials`` trials;
    with bias_bound_s, receivers' timing offsets up to that (see simulated_trial) and how often
    the cross-check found the lags inconsistent."""
    rng = np.random.default_rng(seed)
    sampler = hull_sampler(receivers)
    errors, inside, semi_major, lag_errors, times, refused, flagged = [], [], [], [], [], [], []
    for k in range(trials):
        result, seconds = simulated_trial(rng, f"tdoa-sim-{seed}-{k}", receivers, snr_db=snr_db, duration_s=duration_s,
                                          sampler=sampler, bandwidth_hz=bandwidth_hz, window_s=window_s,
                                          bias_bound_s=bias_bound_s)
        times.append(seconds)
        if not result.localized:
            refused.append(result.reason)
            continue
        errors.append(result.error_km)
        inside.append(bool(result.truth["inside_region"]))
        semi_major.append(result.region.semi_major_km)
        flagged.append(result.cross_check["status"] == "inconsistent")
        lag_errors.extend(_lag_errors_us(result).values())
    return {
        "figure": "tdoa_sim",
        "trials": trials,
        "snr_db": snr_db,
        "bias_bound_us": bias_bound_s * 1e6,
        "inconsistent_fraction": float(np.mean(flagged)) if flagged else None,
        "duration_s": duration_s,
        "localized": len(errors),
        "refused": refused,
        "median_error_km": float(np.median(errors)) if errors else None,
        "p90_error_km": float(np.percentile(errors, 90)) if errors else None,
        "inside_region_95_fraction": float(np.mean(inside)) if inside else None,
        "lag_error_rms_us": float(np.sqrt(np.mean(np.square(lag_errors)))) if lag_errors else None,
        "median_solve_time_s": float(np.median(times)),
        "errors_km": errors,
        "region_semi_major_km": semi_major,
    }
