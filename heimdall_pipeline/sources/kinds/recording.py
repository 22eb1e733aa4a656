"""The `recording` kind: a session made of uploaded kiwirecorder IQ files (heimdall_pipeline/recordings/).

Not live: the capture reads the receiver's file of the session (`Session.recordings`) from the
bucket, through the upload reader the edge gives it (`CaptureIO.read_upload`), and returns it as the file says — dBFS samples, GNSS timestamps, and the rate and UTC start
measured by its time model (dsp/timing.py). Any registered receiver may have a recording.
"""

from __future__ import annotations

import asyncio

from heimdall_pipeline.capture import Capture
from heimdall_pipeline.receivers import Receiver
from heimdall_pipeline.sessions import InvalidSessionRequestError, Session
from heimdall_pipeline.sources.acquisition import AcquisitionError
from heimdall_pipeline.sources.base import CaptureIO, Source
from heimdall_pipeline.storage.kiwi_wav import KiwiWavError, decode_kiwi_wav, recording_capture


class RecordingSource(Source):
    kind = "recording"
    url_schemes = ("recording",)
    live = False
    default_max_frequency_hz = 6e9
    records_requested_sessions = False

    def validate_session(self, session: Session, receiver: Receiver) -> None:
        files = (session.recordings or {}).get("files") or {}
        if receiver.id not in files:
            raise InvalidSessionRequestError(
                "receiver_ids", f"receiver {receiver.id!r} has no recording in session {session.session_key}")
        # a recording of any receiver kind: only the frequency range and rates are checked
        low, high = self.frequency_range_hz(receiver)
        if not low <= session.center_frequency_hz <= high:
            raise InvalidSessionRequestError(
                "center_frequency_hz", f"{session.center_frequency_hz:g} Hz is outside receiver {receiver.id!r} range")

    async def capture(self, session: Session, receiver: Receiver, io: CaptureIO) -> Capture:
        recordings = session.recordings or {}
        file_name = (recordings.get("files") or {}).get(receiver.id)
        if not file_name:
            raise AcquisitionError(receiver.id, f"session {session.session_key} has no recording of this receiver")
        if io.read_upload is None:
            raise AcquisitionError(receiver.id, "no upload reader was given to read the recording with")
        data = await asyncio.to_thread(io.read_upload, recordings["batch"], file_name)
        if data is None:
            raise AcquisitionError(receiver.id, f"recording {file_name} of batch {recordings['batch']} is not in "
                                                "incoming/ or imported/ of the bucket")
        try:
            recording = decode_kiwi_wav(data, file_name, allow_untimed=bool(recordings.get("untimed")))
        except KiwiWavError as exc:
            raise AcquisitionError(receiver.id, f"{type(exc).__name__}: {exc}") from exc
        return recording_capture(recording, session.session_key, receiver.id)
