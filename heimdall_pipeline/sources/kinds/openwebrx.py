"""The `openwebrx` kind: a live OpenWebRX receiver, recorded as demodulated USB audio over its
websocket (sources/openwebrx.py). No IQ and no timestamps: the capture is real audio at the
output rate, untimed, with the receiver's S-meter readings as its level figure."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from heimdall_pipeline import settings
from heimdall_pipeline.receivers import Receiver
from heimdall_pipeline.sources.acquisition import AcquisitionError
from heimdall_pipeline.sources.base import Source
from heimdall_pipeline.sources.capture import Capture

if TYPE_CHECKING:
    from heimdall_pipeline.sessions import Session
    from heimdall_pipeline.sources.openwebrx import AudioRecording, HostGate

SMETER_UNIT = "dB relative to the SDR's full scale (channel power after the bandpass, uncalibrated)"


def gate_directory():
    """Where every process on this machine keeps the per-host connection times (politeness gate)."""
    return settings.heimdall_home() / "openwebrx_gate"


def smeter_summary(recording: "AudioRecording") -> dict | None:
    values = np.asarray([v for _, v in recording.smeter if v > 0], dtype=np.float64)
    if values.size == 0:
        return None
    db = 10.0 * np.log10(values)
    return {"unit": SMETER_UNIT, "readings": [[int(i), float(v)] for i, v in recording.smeter],
            "count": int(values.size), "mean_db": float(10.0 * np.log10(values.mean())),
            "min_db": float(db.min()), "max_db": float(db.max())}


def audio_capture(recording: "AudioRecording", session: "Session", receiver: Receiver) -> Capture:
    return Capture(
        session_key=session.session_key, receiver_id=receiver.id, samples=recording.samples,
        sample_rate_hz=recording.sample_rate_hz, center_frequency_hz=recording.requested_frequency_hz,
        start_time=session.scheduled_for, source_kind="openwebrx", power_unit="dBFS",
        audio={"mode": recording.mode, "dial_frequency_hz": recording.dial_frequency_hz,
               "passband_hz": list(recording.passband_hz), "agc": True,
               "level": "audio dBFS after the receiver's AGC: relative only",
               "smeter": smeter_summary(recording)},
        details={**recording.details, "server_version": recording.server_version,
                 "profile_id": recording.profile_id, "profile_center_hz": recording.profile_center_hz,
                 "profile_sample_rate_hz": recording.profile_sample_rate_hz,
                 "audio_compression": recording.audio_compression, "profile_changes": recording.profile_changes,
                 "start_time_source": "session schedule (OpenWebRX audio carries no timestamps)"})


class OpenWebRXSource(Source):
    kind = "openwebrx"
    url_schemes = ("http", "https")
    url_needs_host = True
    live = True
    # SDRs behind OpenWebRX reach VHF/UHF; a receiver's own range comes from its profiles
    # (`heimdall receivers add` reads them from status.json) and the capture checks the profiles.
    default_max_frequency_hz = 6e9
    sample_rates_hz = (12_000.0,)  # the audio output rate asked for

    def gate(self) -> "HostGate":
        """The politeness gate every capture goes through (shared by the processes of this machine)."""
        from heimdall_pipeline.sources.openwebrx import HostGate

        return HostGate(gate_directory())

    async def capture(self, session: "Session", receiver: Receiver, *, password: str = "") -> Capture:
        from heimdall_pipeline.sources.openwebrx import OpenWebRXError, capture_audio

        try:
            recording = await capture_audio(receiver.url, frequency_hz=session.center_frequency_hz,
                                            duration_s=session.duration_s, gate=self.gate(),
                                            output_rate=int(session.sample_rate_hz))
        except OpenWebRXError as exc:
            raise AcquisitionError(receiver.id, f"{type(exc).__name__}: {exc}", transient=exc.transient,
                                   retry_after_s=exc.retry_after_s) from exc
        return audio_capture(recording, session, receiver)
