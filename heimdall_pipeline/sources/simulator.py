"""Simulated receiver network: deterministic IQ captures with known ground truth.

Pure numpy; no Dagster, no storage. Everything here follows the Heimdall power convention
(capture.py): complex baseband samples scaled so that ``mean(|x|**2)`` is the power in
milliwatts at the receiver's antenna port, hence ``10*log10(mean|x|**2)`` is dBm.

Model of one capture (transmitter -> one receiver):

* Distance: great-circle ground distance (``haversine_km``) combined with the altitude difference
  into a straight-line slant distance.
* Path loss (``path_loss_db``): log-distance model anchored on free space at the reference distance
  d0 (1 km by default)::

      PL(d) = FSPL(d0, f) + 10 * n * log10(d / d0)      for d >= d0
      PL(d) = FSPL(d, f)                                for d <  d0 (free space near the antenna)
      FSPL(d, f) = 20 log10(d_m) + 20 log10(f_Hz) - 147.55

  plus optional log-normal shadowing ``N(0, sigma_db)`` drawn once per (session, receiver).
* Received signal power: ``P_s[dBm] = EIRP[dBm] - PL - shadowing`` (isotropic receive antenna).
* Thermal noise: kTB at T0 = 290 K over the whole complex baseband bandwidth, which equals the sample
  rate, plus the receiver's noise figure: ``P_n[dBm] = -174 + 10 log10(sample_rate_hz) + NF``.
  The noise is white, circular complex Gaussian.
* Receiver imperfections are derived deterministically from the receiver id (SHA-256, never
  Python's ``hash()``): noise figure 6..12 dB, local-oscillator error -0.5..+0.5 ppm, phase.
* Frequency: a receiver tuned to ``center_frequency_hz`` with an LO error of ``e`` ppm actually mixes
  with ``center * (1 + e*1e-6)``. A transmitter on ``f_tx`` therefore appears in baseband at::

      frequency_offset_hz = (f_tx - center) - center * e * 1e-6

  Sign convention: a positive offset means the signal is at positive baseband frequency, i.e. the
  samples rotate as ``exp(+2j*pi*offset*t)`` (above the tuned centre in the spectrum).

Timing (what TDoA needs as ground truth):

* Propagation delay: the slant distance / c. The transmitted modulation reaches a receiver that
  much later; the noise-like modulation is one waveform per session, shared by every receiver, read
  between its samples by band-limited interpolation (a sub-sample delay).
* Each receiver's sample clock runs at its own rate, ``sample_rate_hz * (1 + e * 1e-6)`` with
  ``e`` = sample_rate_error_ppm (-100..+100 ppm, like a KiwiSDR's 12001.x S/s against its nominal
  12000); sample n is taken at GPS time ``start + n / true_rate``.
* Per-frame GNSS timestamps as a KiwiSDR sends them: one per frame of FRAME_SAMPLES samples, the
  GPS time of its first sample (seconds of the week + ns) with ~100 ns rms jitter; the receiver gets
  a fresh fix every GNSS_FIX_PERIOD_S (fix age 0 during the first second, then 1), and its stale
  tags drift at its own holdover rate (so a time model must not trust them).

Ground-truth SNR definition (shared with dsp/metrics.py): **full-band SNR**, the total signal power
divided by the total noise power in the whole complex baseband bandwidth (= sample rate)::

    snr_db = signal_power_dbm - noise_power_dbm

Determinism: all randomness for one capture comes from ``numpy.random.Generator`` objects seeded
from SHA-256 digests of (session_key, receiver.id, seed_salt); the same inputs give bit-identical
samples on every run with the same numpy build (float32 sin/cos may differ in the last bit between
CPU/SIMD builds; the random draws themselves do not).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from datetime import datetime
from typing import Any

import numpy as np

from heimdall_pipeline.dsp.resample import interpolate_at
from heimdall_pipeline.dsp.timing import NS, SECONDS_PER_WEEK, utc_to_gps_ns
from heimdall_pipeline.propagation import (
    PropagationModel,
    path_loss_db,
    propagation_delay_s,
    slant_distance_km,
    thermal_noise_power_dbm,
)
from heimdall_pipeline.receivers import Receiver
from heimdall_pipeline.capture import Capture, GpsTimestamp

MODULATIONS = ("carrier", "fm_tone", "noise")
SIMULATOR_VERSION = "heimdall-sim-1"

# Receiver characteristic ranges (uniform).
NOISE_FIGURE_RANGE_DB = (6.0, 12.0)
LO_ERROR_RANGE_PPM = (-0.5, 0.5)
SAMPLE_RATE_ERROR_RANGE_PPM = (-100.0, 100.0)
HOLDOVER_DRIFT_RANGE_NS_PER_S = (-2000.0, 2000.0)  # how fast a stale tag drifts from the truth

# GNSS time stamps, as a KiwiSDR sends them
FRAME_SAMPLES = 512
GNSS_JITTER_NS = 100.0
GNSS_FIX_PERIOD_S = 2.0


# --------------------------------------------------------------------------------------------
# Model dataclasses
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Transmitter:
    """A transmitter to be localised.

    modulation:
      * ``"carrier"``: unmodulated CW carrier.
      * ``"fm_tone"``: constant-envelope FM by a sine tone of ``tone_hz`` with peak deviation
        ``deviation_hz`` (modulation index beta = deviation_hz / tone_hz).
      * ``"noise"``: band-limited noise-like signal, flat over ``bandwidth_hz`` centred on the
        carrier frequency (narrow by default: 500 Hz).
    All modulations carry the same total power; ``eirp_dbm`` is that total power.
    """

    frequency_hz: float
    eirp_dbm: float
    latitude: float
    longitude: float
    altitude_m: float = 0.0
    modulation: str = "carrier"
    deviation_hz: float = 500.0
    tone_hz: float = 100.0
    bandwidth_hz: float = 500.0

    def __post_init__(self) -> None:
        if self.modulation not in MODULATIONS:
            raise ValueError(f"transmitter modulation {self.modulation!r} is not one of {', '.join(MODULATIONS)}")
        if not (math.isfinite(self.frequency_hz) and self.frequency_hz > 0):
            raise ValueError(f"transmitter frequency_hz {self.frequency_hz} must be positive and finite")
        if not math.isfinite(self.eirp_dbm):
            raise ValueError(f"transmitter eirp_dbm {self.eirp_dbm} must be finite")
        if not -90.0 <= self.latitude <= 90.0:
            raise ValueError(f"transmitter latitude {self.latitude} is outside -90..90 degrees")
        if not -180.0 <= self.longitude <= 180.0:
            raise ValueError(f"transmitter longitude {self.longitude} is outside -180..180 degrees")
        if self.modulation == "fm_tone" and not (self.tone_hz > 0 and self.deviation_hz >= 0):
            raise ValueError("fm_tone needs tone_hz > 0 and deviation_hz >= 0")
        if self.modulation == "noise" and not self.bandwidth_hz > 0:
            raise ValueError(f"noise modulation needs bandwidth_hz > 0, got {self.bandwidth_hz}")


@dataclasses.dataclass(frozen=True)
class ReceiverCharacteristics:
    """Imperfections of one simulated receiver, fixed for its id (see receiver_characteristics)."""

    noise_figure_db: float
    lo_error_ppm: float
    phase_rad: float
    sample_rate_error_ppm: float = 0.0
    gnss_fix_phase_s: float = 0.0
    holdover_drift_ns_per_s: float = 0.0


# --------------------------------------------------------------------------------------------
# Seeding
# --------------------------------------------------------------------------------------------


def _seed(*parts: str) -> int:
    """A 256-bit integer seed from a SHA-256 of the parts (unambiguous: length-prefixed)."""
    h = hashlib.sha256()
    for part in parts:
        data = str(part).encode("utf-8")
        h.update(len(data).to_bytes(8, "big"))
        h.update(data)
    return int.from_bytes(h.digest(), "big")


def _rng(*parts: str) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(_seed(*parts)))


def receiver_characteristics(receiver_id: str) -> ReceiverCharacteristics:
    """Noise figure (6..12 dB), LO error (-0.5..+0.5 ppm), phase (0..2pi), sample-rate error
    (-100..+100 ppm), GNSS fix phase (0..GNSS_FIX_PERIOD_S) and holdover drift of a receiver id.

    Deterministic: a numpy Generator seeded from SHA-256("receiver-characteristics", id); the
    timing draws come after the older ones, which therefore keep their values.
    """
    rng = _rng("receiver-characteristics", receiver_id)
    nf = float(rng.uniform(*NOISE_FIGURE_RANGE_DB))
    ppm = float(rng.uniform(*LO_ERROR_RANGE_PPM))
    phase = float(rng.uniform(0.0, 2.0 * math.pi))
    rate_ppm = float(rng.uniform(*SAMPLE_RATE_ERROR_RANGE_PPM))
    fix_phase = float(rng.uniform(0.0, GNSS_FIX_PERIOD_S))
    drift = float(rng.uniform(*HOLDOVER_DRIFT_RANGE_NS_PER_S))
    return ReceiverCharacteristics(noise_figure_db=nf, lo_error_ppm=ppm, phase_rad=phase,
                                   sample_rate_error_ppm=rate_ppm, gnss_fix_phase_s=fix_phase,
                                   holdover_drift_ns_per_s=drift)


def signal_power_for_snr(snr_db: float, noise_power_dbm: float) -> float:
    """The signal power (dBm) that gives a full-band SNR of snr_db over noise_power_dbm."""
    return noise_power_dbm + snr_db


# --------------------------------------------------------------------------------------------
# Sample generation
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class TransmittedWaveform:
    """The noise-like modulation as transmitted (complex baseband before the carrier offset,
    unit mean power), sampled at sample_rate_hz from start_s on (seconds after the session start,
    transmitter time). One per session: every receiver reads it, each at its own delayed times."""

    samples: np.ndarray
    start_s: float
    sample_rate_hz: float

    def at(self, times_s: np.ndarray) -> np.ndarray:
        """Band-limited values at arbitrary times (seconds after the session start)."""
        return interpolate_at(self.samples, (np.asarray(times_s, dtype=np.float64) - self.start_s) * self.sample_rate_hz)


def noise_waveform(rng: np.random.Generator, bandwidth_hz: float, sample_rate_hz: float, start_s: float,
                   duration_s: float) -> TransmittedWaveform:
    """Band-limited noise, flat over |f| <= bandwidth/2, unit mean power, covering start_s..+duration_s."""
    import scipy.fft  # loaded by the first simulated capture, not by the code location

    n = int(math.ceil(duration_s * sample_rate_hz)) + 1
    m = scipy.fft.next_fast_len(n)
    freqs = scipy.fft.fftfreq(m, d=1.0 / sample_rate_hz)
    in_band = np.abs(freqs) <= bandwidth_hz / 2.0
    if not in_band.any():
        in_band[0] = True
    k = int(in_band.sum())
    spec = np.zeros(m, dtype=np.complex64)
    spec[in_band] = rng.standard_normal(2 * k, dtype=np.float32).view(np.complex64)
    base = scipy.fft.ifft(spec, overwrite_x=True).astype(np.complex64)
    p = float(np.mean(base.real.astype(np.float64) ** 2 + base.imag.astype(np.float64) ** 2))
    base *= np.float32(1.0 / math.sqrt(p))
    return TransmittedWaveform(samples=base, start_s=float(start_s), sample_rate_hz=float(sample_rate_hz))


def _phase_turns(n: int, freq_hz: float, sample_rate_hz: float, start_turns: float) -> np.ndarray:
    """Carrier phase in turns (cycles), reduced to [0, 1) in float64 to keep float32 accurate."""
    t = np.arange(n, dtype=np.float64)
    t *= freq_hz / sample_rate_hz
    t += start_turns
    np.mod(t, 1.0, out=t)
    return t


def _unit_phasor(turns: np.ndarray) -> np.ndarray:
    """exp(2j*pi*turns) as complex64."""
    ang = (turns * (2.0 * np.pi)).astype(np.float32)
    out = np.empty(ang.shape, dtype=np.complex64)
    out.real = np.cos(ang)
    out.imag = np.sin(ang)
    return out


def simulate_samples(
    rng: np.random.Generator,
    sample_rate_hz: float,
    n: int,
    signal_power_dbm: float | None,
    noise_power_dbm: float | None,
    offset_hz: float,
    modulation: str = "carrier",
    phase: float = 0.0,
    *,
    deviation_hz: float = 500.0,
    tone_hz: float = 100.0,
    bandwidth_hz: float = 500.0,
    true_sample_rate_hz: float | None = None,
    delay_s: float = 0.0,
    waveform: TransmittedWaveform | None = None,
) -> np.ndarray:
    """n complex64 samples (mean|x|^2 in mW): one signal at baseband offset_hz plus white noise.

    signal_power_dbm: total signal power (exact for every modulation: the noise-like signal is
    normalised to it); None or -inf for noise only.
    noise_power_dbm: expected power of the white circular complex Gaussian noise over the whole
    band (= sample rate); None or -inf for a noiseless signal.
    offset_hz: baseband frequency of the carrier; the signal rotates as exp(+2j*pi*offset_hz*t).
    phase: initial carrier phase in radians.
    true_sample_rate_hz: the rate the samples are really taken at (sample n at n / true rate
    seconds); sample_rate_hz by default. The noise bandwidth stays sample_rate_hz.
    delay_s: the modulation arrives this much later (propagation delay): sample n carries the
    modulation transmitted at n / true rate - delay_s.
    waveform: the transmitted noise-like modulation to read (shared by the receivers of a
    session); without it the "noise" modulation draws its own from rng.
    """
    if modulation not in MODULATIONS:
        raise ValueError(f"modulation {modulation!r} is not one of {', '.join(MODULATIONS)}")
    if not sample_rate_hz > 0:
        raise ValueError(f"sample_rate_hz {sample_rate_hz} must be positive")
    n = int(n)
    if n < 0:
        raise ValueError(f"n {n} must be >= 0")

    if noise_power_dbm is not None and np.isfinite(noise_power_dbm):
        # Each of I and Q carries half of the noise power.
        sigma = math.sqrt(10.0 ** (noise_power_dbm / 10.0) / 2.0)
        out = rng.standard_normal(2 * n, dtype=np.float32).view(np.complex64)
        out *= np.float32(sigma)
    else:
        out = np.zeros(n, dtype=np.complex64)

    if signal_power_dbm is None or not np.isfinite(signal_power_dbm) or n == 0:
        return out

    power_mw = 10.0 ** (signal_power_dbm / 10.0)
    amplitude = math.sqrt(power_mw)
    start_turns = (phase / (2.0 * math.pi)) % 1.0
    rate = float(true_sample_rate_hz or sample_rate_hz)
    # The tuning is GNSS-disciplined (as a KiwiSDR's is): the carrier sits at offset_hz on the
    # capture's own sample axis; the modulation's timing follows the true clock and the delay.
    if modulation == "carrier":
        sig = _unit_phasor(_phase_turns(n, offset_hz, sample_rate_hz, start_turns))
        sig *= np.float32(amplitude)
    elif modulation == "fm_tone":
        turns = _phase_turns(n, offset_hz, sample_rate_hz, start_turns)
        beta = deviation_hz / tone_hz
        tone = _phase_turns(n, tone_hz, rate, (-tone_hz * delay_s) % 1.0)
        turns += (beta / (2.0 * math.pi)) * np.sin(2.0 * np.pi * tone)
        sig = _unit_phasor(turns)
        sig *= np.float32(amplitude)
    else:  # band-limited noise-like signal: flat spectrum over |f| <= bandwidth/2, then shifted.
        times = np.arange(n, dtype=np.float64) / rate - delay_s
        if waveform is None:
            waveform = noise_waveform(rng, bandwidth_hz, sample_rate_hz, times[0], times[-1] - times[0])
        base = waveform.at(times)
        p = float(np.mean(base.real.astype(np.float64) ** 2 + base.imag.astype(np.float64) ** 2))
        if p <= 0:
            base = np.ones(n, dtype=np.complex64)
            p = 1.0
        base *= np.float32(amplitude / math.sqrt(p))
        sig = base.astype(np.complex64, copy=False)
        sig *= _unit_phasor(_phase_turns(n, offset_hz, sample_rate_hz, start_turns))
    out += sig
    return out


def gnss_frame_timestamps(
    rng: np.random.Generator,
    start_gps_ns: int,
    n: int,
    true_sample_rate_hz: float,
    chars: ReceiverCharacteristics,
    jitter_ns: float = GNSS_JITTER_NS,
) -> tuple[GpsTimestamp, ...]:
    """One tag per frame of FRAME_SAMPLES samples, as a KiwiSDR sends them (see module docstring).

    Fresh tags (fix age 0) are the true GPS time of the frame's first sample plus jitter; stale
    ones (age >= 1) also carry the receiver's holdover drift since its last fix.
    """
    starts = np.arange(0, n, FRAME_SAMPLES, dtype=np.int64)
    true_s = starts / true_sample_rate_hz  # seconds after start_gps_ns
    since_fix = np.mod(true_s - chars.gnss_fix_phase_s, GNSS_FIX_PERIOD_S)
    ages = np.floor(since_fix).astype(np.int64)
    error_ns = rng.normal(0.0, jitter_ns, size=starts.size) + np.where(ages > 0, chars.holdover_drift_ns_per_s * since_fix, 0.0)
    stamps = []
    week_ns = SECONDS_PER_WEEK * NS
    for index, t, err, age in zip(starts, true_s, error_ns, ages):
        tag = int(start_gps_ns) + int(round(t * NS + err))  # integers: a float cannot hold GPS ns
        sow = tag % week_ns
        stamps.append(GpsTimestamp(sample_index=int(index), gps_seconds=sow // NS, gps_nanoseconds=sow % NS,
                                   has_solution=True, fix_age_s=int(age)))
    return tuple(stamps)


def transmitted_waveform(session_key: str, transmitter: Transmitter, sample_rate_hz: float, duration_s: float,
                         seed_salt: str = "") -> TransmittedWaveform | None:
    """The session's noise-like transmitted waveform (None for the other modulations), covering the
    capture plus margin for any delay on Earth and the receivers' clock errors. Deterministic for
    (session_key, seed_salt): every receiver of the session hears the same waveform."""
    if transmitter.modulation != "noise":
        return None
    margin_s = 0.1 + 2e-4 * duration_s  # > 20,000 km of travel, > 100 ppm of clock error
    return noise_waveform(_rng("waveform", session_key, seed_salt), transmitter.bandwidth_hz, sample_rate_hz,
                          -margin_s, duration_s + 2 * margin_s)


# --------------------------------------------------------------------------------------------
# One capture
# --------------------------------------------------------------------------------------------


def simulate_capture(
    session_key: str,
    receiver: Receiver,
    transmitter: Transmitter,
    center_frequency_hz: float,
    sample_rate_hz: float,
    duration_s: float,
    start_time: datetime,
    propagation: PropagationModel = PropagationModel(),
    seed_salt: str = "",
    waveform: TransmittedWaveform | None = None,
) -> Capture:
    """One receiver's simulated capture of the transmitter during a session.

    Timed like a KiwiSDR capture (module docstring): sample 0 is taken at start_time (GPS time
    start_time + leap seconds), the samples at the receiver's own true rate, with per-frame GNSS
    timestamps. waveform: the session's transmitted_waveform, to share one between many calls
    (made here when None).

    samples: complex64, mean|x|^2 in mW (10*log10 -> dBm), n = round(duration_s * sample_rate_hz).
    Deterministic for (session_key, receiver.id, seed_salt) and the physical inputs.

    ground_truth (JSON-serialisable; powers in dBm, the SNR is the full-band one, see module doc):
      distance_km, path_loss_db (median, without shadowing), shadowing_db (positive = extra loss),
      signal_power_dbm, noise_power_dbm, snr_db, frequency_offset_hz (baseband position of the
      carrier: (f_tx - center) - center*lo_error_ppm*1e-6), lo_error_ppm, noise_figure_db,
      signal_in_band (False when the carrier falls outside +/- sample_rate/2: no signal is then
      added and snr_db / frequency_offset_hz still describe what would have arrived), plus the
      transmitter's position, frequency, EIRP and modulation; and the timing truth:
      propagation_delay_s, sample_rate_error_ppm, true_sample_rate_hz, sample0_gps_ns (integer ns
      since the GPS epoch), gnss_jitter_ns.
    """
    if not (math.isfinite(sample_rate_hz) and sample_rate_hz > 0):
        raise ValueError(f"sample_rate_hz {sample_rate_hz} must be positive and finite")
    if not (math.isfinite(duration_s) and duration_s > 0):
        raise ValueError(f"duration_s {duration_s} must be positive and finite")
    if not (math.isfinite(center_frequency_hz) and center_frequency_hz > 0):
        raise ValueError(f"center_frequency_hz {center_frequency_hz} must be positive and finite")
    n = int(round(duration_s * sample_rate_hz))
    if n < 1:
        raise ValueError(f"duration_s {duration_s} at {sample_rate_hz} S/s gives no samples")

    chars = receiver_characteristics(receiver.id)
    distance = slant_distance_km(
        transmitter.latitude, transmitter.longitude, transmitter.altitude_m,
        receiver.latitude, receiver.longitude, receiver.altitude_m,
    )
    pl = path_loss_db(distance, transmitter.frequency_hz, propagation)
    if propagation.shadowing_sigma_db > 0:
        shadow_rng = _rng("shadowing", session_key, receiver.id, seed_salt)
        shadowing = float(shadow_rng.normal(0.0, propagation.shadowing_sigma_db))
    else:
        shadowing = 0.0
    signal_dbm = transmitter.eirp_dbm - pl - shadowing
    noise_dbm = thermal_noise_power_dbm(sample_rate_hz, chars.noise_figure_db)
    offset = (transmitter.frequency_hz - center_frequency_hz) - center_frequency_hz * chars.lo_error_ppm * 1e-6

    half_width = {"carrier": 0.0, "fm_tone": transmitter.deviation_hz + transmitter.tone_hz,
                  "noise": transmitter.bandwidth_hz / 2.0}[transmitter.modulation]
    in_band = abs(offset) + half_width < sample_rate_hz / 2.0

    delay = propagation_delay_s(distance)
    true_rate = sample_rate_hz * (1.0 + chars.sample_rate_error_ppm * 1e-6)
    if waveform is None and in_band:
        waveform = transmitted_waveform(session_key, transmitter, sample_rate_hz, duration_s, seed_salt)
    start_gps_ns = utc_to_gps_ns(start_time)
    stamps = gnss_frame_timestamps(_rng("gnss", session_key, receiver.id, seed_salt), start_gps_ns, n, true_rate, chars)

    rng = _rng("samples", session_key, receiver.id, seed_salt)
    session_phase = float(rng.uniform(0.0, 2.0 * math.pi))
    samples = simulate_samples(
        rng, sample_rate_hz, n,
        signal_dbm if in_band else None,
        noise_dbm,
        offset,
        transmitter.modulation,
        phase=(chars.phase_rad + session_phase) % (2.0 * math.pi),
        deviation_hz=transmitter.deviation_hz,
        tone_hz=transmitter.tone_hz,
        bandwidth_hz=transmitter.bandwidth_hz,
        true_sample_rate_hz=true_rate,
        delay_s=delay,
        waveform=waveform,
    )

    ground_truth: dict[str, Any] = {
        "distance_km": float(distance),
        "path_loss_db": float(pl),
        "shadowing_db": shadowing,
        "signal_power_dbm": float(signal_dbm),
        "noise_power_dbm": float(noise_dbm),
        "snr_db": float(signal_dbm - noise_dbm),
        "snr_definition": "full-band: signal power / noise power over the whole sample-rate bandwidth",
        "frequency_offset_hz": float(offset),
        "lo_error_ppm": chars.lo_error_ppm,
        "noise_figure_db": chars.noise_figure_db,
        "signal_in_band": bool(in_band),
        "propagation_delay_s": float(delay),
        "sample_rate_error_ppm": chars.sample_rate_error_ppm,
        "true_sample_rate_hz": float(true_rate),
        "sample0_gps_ns": int(start_gps_ns),
        "gnss_jitter_ns": GNSS_JITTER_NS,
        "transmitter": {
            "frequency_hz": float(transmitter.frequency_hz),
            "eirp_dbm": float(transmitter.eirp_dbm),
            "latitude": float(transmitter.latitude),
            "longitude": float(transmitter.longitude),
            "altitude_m": float(transmitter.altitude_m),
            "modulation": transmitter.modulation,
        },
    }
    details = {
        "simulator": SIMULATOR_VERSION,
        "seed_salt": seed_salt,
        "propagation": dataclasses.asdict(propagation),
    }
    return Capture(
        session_key=session_key,
        receiver_id=receiver.id,
        samples=samples,
        sample_rate_hz=float(sample_rate_hz),
        center_frequency_hz=float(center_frequency_hz),
        start_time=start_time,
        source_kind="simulated",
        gps_timestamps=stamps,
        details=details,
        ground_truth=ground_truth,
    )
