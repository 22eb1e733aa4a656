"""A throwaway source kind for the tests (registered by the `stored_file_kind` fixture only): it
replays a stored .npy IQ file named by the receiver's file:// URL, the shape of the planned
`recording` kind (kiwirecorder WAV files): not live, so it records a session at any time."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pytest

from heimdall_pipeline.receivers import Receiver
from heimdall_pipeline.sources import registry
from heimdall_pipeline.sources.acquisition import AcquisitionError
from heimdall_pipeline.sources.base import Source
from heimdall_pipeline.sources.capture import Capture


class StoredFileSource(Source):
    kind = "storedfile"
    url_schemes = ("file",)
    live = False
    default_max_frequency_hz = 30e6

    async def capture(self, session, receiver, *, password="", start_at=None):
        path = Path(urlparse(receiver.url).path)
        if not path.is_file():
            raise AcquisitionError(receiver.id, f"no stored recording at {path}")
        samples = np.load(path)[: session.expected_sample_count]
        return Capture(session.session_key, receiver.id, samples, session.sample_rate_hz,
                       session.center_frequency_hz, session.scheduled_for, self.kind, details={"file": path.name})


def stored_file_receiver(path: Path, rid: str = "tape1", **fields) -> Receiver:
    values = dict(id=rid, name="tape deck", url=f"file://{path}", kind=StoredFileSource.kind,
                  location_name="shelf", latitude=47.0, longitude=8.0)
    return Receiver(**{**values, **fields})


@pytest.fixture()
def stored_file_kind(monkeypatch) -> StoredFileSource:
    source = StoredFileSource()
    monkeypatch.setitem(registry.SOURCES, source.kind, source)
    return source
