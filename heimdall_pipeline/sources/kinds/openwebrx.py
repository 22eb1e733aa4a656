"""The `openwebrx` kind: a live OpenWebRX receiver, recorded as demodulated USB audio over its
websocket (sources/openwebrx.py). No IQ and no timestamps: the capture is real audio at the
output rate, untimed, with the receiver's S-meter readings as its level figure."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import numpy as np

from heimdall_pipeline import settings
from heimdall_pipeline.receivers import InvalidReceiverError, Receiver
from heimdall_pipeline.sources.acquisition import AcquisitionError
from heimdall_pipeline.capture import Capture
from heimdall_pipeline.sessions import Session
from heimdall_pipeline.sources.base import CaptureIO, Source

if TYPE_CHECKING:
    from heimdall_pipeline.sources.openwebrx import AudioRecording, HostGate, ReceiverStatus

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


def audio_capture(recording: "AudioRecording", session: Session, receiver: Receiver) -> Capture:
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
    # connect, handshake, profile and dspcontrol before the session's start instant (sources/base.py)
    connect_margin_s = 3.0
    # SDRs behind OpenWebRX reach VHF/UHF; a receiver's own range comes from its profiles
    # (`heimdall receivers add` reads them from status.json) and the capture checks the profiles.
    default_max_frequency_hz = 6e9
    sample_rates_hz = (12_000.0,)  # the audio output rate asked for

    def gate(self) -> "HostGate":
        """The politeness gate every capture goes through (shared by the processes of this machine)."""
        from heimdall_pipeline.sources.openwebrx import HostGate

        return HostGate(gate_directory())

    async def capture(self, session: Session, receiver: Receiver, io: CaptureIO) -> Capture:
        from heimdall_pipeline.sources.openwebrx import DEFAULT_SETTLE_S, OpenWebRXError, capture_audio

        # The audio carries no timestamps: the session's start instant is kept by discarding the
        # audio that arrives before it (counted at the output rate, the server's real-time pace).
        start_at = io.start_at
        until_start_s = 0.0 if start_at is None else (start_at - datetime.now(timezone.utc)).total_seconds()
        try:
            recording = await capture_audio(receiver.url, frequency_hz=session.center_frequency_hz,
                                            duration_s=session.duration_s, gate=self.gate(),
                                            output_rate=int(session.sample_rate_hz),
                                            settle_s=max(DEFAULT_SETTLE_S, until_start_s))
        except OpenWebRXError as exc:
            raise AcquisitionError(receiver.id, f"{type(exc).__name__}: {exc}", transient=exc.transient,
                                   retry_after_s=exc.retry_after_s) from exc
        return audio_capture(recording, session, receiver)


def receiver_id_from(name: str) -> str:
    """A registry id from a receiver's name ("DL0ABC Munich SDR" -> "dl0abc-munich-sdr")."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:40].rstrip("-_")


def receiver_from_status(url: str, status: "ReceiverStatus", **given: Any) -> Receiver:
    """The registry entry of an OpenWebRX receiver: what the user gave (id, name, location_name,
    latitude, longitude, altitude_m, max_channels ...), the rest from its status.json (name, GPS
    position, height, location, the frequency range its profiles cover). A receiver that states no
    position, where none was given, is refused by name. The caller validates the entry
    (validation.validate_receiver: the validation imports the registry, which imports this kind)."""
    given = {k: v for k, v in given.items() if v is not None}
    name = given.pop("name", None) or status.name
    if not name:
        raise InvalidReceiverError("name", f"the OpenWebRX receiver at {url} gives no name in status.json: give --name")
    latitude, longitude = given.pop("latitude", status.latitude), given.pop("longitude", status.longitude)
    if latitude is None or longitude is None:
        raise InvalidReceiverError(
            "latitude", f"OpenWebRX receiver {name!r} ({url}) gives no position in status.json: give --lat and --lon")
    fields: dict[str, Any] = {
        "id": given.pop("id", None) or receiver_id_from(name), "name": name, "url": url, "kind": "openwebrx",
        "location_name": given.pop("location_name", None) or status.location or "",
        "latitude": float(latitude), "longitude": float(longitude),
        "altitude_m": float(given.pop("altitude_m", None) or status.altitude_m or 0.0),
        # one connection at a time is all a polite client uses (sources/openwebrx.py)
        "max_channels": given.pop("max_channels", None) or 1,
    }
    if status.min_frequency_hz is not None:
        fields["min_frequency_hz"] = max(0.0, status.min_frequency_hz)
        fields["max_frequency_hz"] = status.max_frequency_hz
    return Receiver(**fields, **given)
