"""Simulated receiver network: deterministic IQ captures with known ground truth.

Pure numpy; no Dagster, no storage. Everything here follows the Heimdall power convention
(sources/capture.py): complex baseband samples scaled so that ``mean(|x|**2)`` is the power in
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
import scipy.fft

from heimdall_pipeline.propagation import PropagationModel, path_loss_db, slant_distance_km, thermal_noise_power_dbm
from heimdall_pipeline.receivers import Receiver
from heimdall_pipeline.sources.capture import Capture

MODULATIONS = ("carrier", "fm_tone", "noise")
SIMULATOR_VERSION = "heimdall-sim-1"

# Receiver characteristic ranges (uniform).
NOISE_FIGURE_RANGE_DB = (6.0, 12.0)
LO_ERROR_RANGE_PPM = (-0.5, 0.5)


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
    """Noise figure (6..12 dB), LO error (-0.5..+0.5 ppm) and phase (0..2pi) of a receiver id.

    Deterministic: a numpy Generator seeded from SHA-256("receiver-characteristics", id).
    """
    rng = _rng("receiver-characteristics", receiver_id)
    nf = float(rng.uniform(*NOISE_FIGURE_RANGE_DB))
    ppm = float(rng.uniform(*LO_ERROR_RANGE_PPM))
    phase = float(rng.uniform(0.0, 2.0 * math.pi))
    return ReceiverCharacteristics(noise_figure_db=nf, lo_error_ppm=ppm, phase_rad=phase)


def signal_power_for_snr(snr_db: float, noise_power_dbm: float) -> float:
    """The signal power (dBm) that gives a full-band SNR of snr_db over noise_power_dbm."""
    return noise_power_dbm + snr_db


# --------------------------------------------------------------------------------------------
# Sample generation
# --------------------------------------------------------------------------------------------


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
) -> np.ndarray:
    """n complex64 samples (mean|x|^2 in mW): one signal at baseband offset_hz plus white noise.

    signal_power_dbm: total signal power (exact for every modulation: the noise-like signal is
    normalised to it); None or -inf for noise only.
    noise_power_dbm: expected power of the white circular complex Gaussian noise over the whole
    band (= sample rate); None or -inf for a noiseless signal.
    offset_hz: baseband frequency of the carrier; the signal rotates as exp(+2j*pi*offset_hz*t).
    phase: initial carrier phase in radians.
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
    if modulation == "carrier":
        sig = _unit_phasor(_phase_turns(n, offset_hz, sample_rate_hz, start_turns))
        sig *= np.float32(amplitude)
    elif modulation == "fm_tone":
        turns = _phase_turns(n, offset_hz, sample_rate_hz, start_turns)
        beta = deviation_hz / tone_hz
        tone = _phase_turns(n, tone_hz, sample_rate_hz, 0.0)
        turns += (beta / (2.0 * math.pi)) * np.sin(2.0 * np.pi * tone)
        sig = _unit_phasor(turns)
        sig *= np.float32(amplitude)
    else:  # band-limited noise-like signal: flat spectrum over |f| <= bandwidth/2, then shifted.
        m = scipy.fft.next_fast_len(n)
        freqs = scipy.fft.fftfreq(m, d=1.0 / sample_rate_hz)
        in_band = np.abs(freqs) <= bandwidth_hz / 2.0
        if not in_band.any():
            in_band[0] = True
        k = int(in_band.sum())
        spec = np.zeros(m, dtype=np.complex64)
        spec[in_band] = rng.standard_normal(2 * k, dtype=np.float32).view(np.complex64)
        base = scipy.fft.ifft(spec, overwrite_x=True)[:n]
        p = float(np.mean(base.real.astype(np.float64) ** 2 + base.imag.astype(np.float64) ** 2))
        if p <= 0:
            base = np.ones(n, dtype=np.complex64)
            p = 1.0
        base *= np.float32(amplitude / math.sqrt(p))
        sig = base.astype(np.complex64, copy=False)
        sig *= _unit_phasor(_phase_turns(n, offset_hz, sample_rate_hz, start_turns))
    out += sig
    return out


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
) -> Capture:
    """One receiver's simulated capture of the transmitter during a session.

    samples: complex64, mean|x|^2 in mW (10*log10 -> dBm), n = round(duration_s * sample_rate_hz).
    Deterministic for (session_key, receiver.id, seed_salt) and the physical inputs.

    ground_truth (JSON-serialisable; powers in dBm, the SNR is the full-band one, see module doc):
      distance_km, path_loss_db (median, without shadowing), shadowing_db (positive = extra loss),
      signal_power_dbm, noise_power_dbm, snr_db, frequency_offset_hz (baseband position of the
      carrier: (f_tx - center) - center*lo_error_ppm*1e-6), lo_error_ppm, noise_figure_db,
      signal_in_band (False when the carrier falls outside +/- sample_rate/2: no signal is then
      added and snr_db / frequency_offset_hz still describe what would have arrived), plus the
      transmitter's position, frequency, EIRP and modulation.
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
        details=details,
        ground_truth=ground_truth,
    )
