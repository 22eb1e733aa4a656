"""The one list of source kinds. Dispatch, session and receiver validation, the live-window
check, the CLI's choices and the database all read it from here.

Adding a kind: one module in sources/kinds/ with a `Source` subclass, and one `register` line below.
"""

from __future__ import annotations

from heimdall_pipeline.receivers import Receiver
from heimdall_pipeline.sessions import Session
from heimdall_pipeline.sources.base import Source
from heimdall_pipeline.sources.kinds.kiwisdr import KiwiSDRSource
from heimdall_pipeline.sources.kinds.openwebrx import OpenWebRXSource
from heimdall_pipeline.sources.kinds.recording import RecordingSource
from heimdall_pipeline.sources.kinds.simulated import SimulatedSource

SOURCES: dict[str, Source] = {}


class UnknownSourceKindError(ValueError):
    def __init__(self, kind: object):
        self.kind = kind
        super().__init__(f"{kind!r} is not a source kind (kinds: {', '.join(source_kinds())})")


def register(source: Source) -> Source:
    """Adds a kind; refuses a second source under the same name."""
    if not isinstance(source, Source):
        raise TypeError(f"{source!r} is not a sources.base.Source")
    if source.kind in SOURCES:
        raise ValueError(f"source kind {source.kind!r} is already registered")
    SOURCES[source.kind] = source
    return source


def source_kinds() -> tuple[str, ...]:
    return tuple(sorted(SOURCES))


def get_source(kind: str) -> Source:
    try:
        return SOURCES[kind]
    except (KeyError, TypeError):
        raise UnknownSourceKindError(kind) from None


def source_for(session: Session, receiver: Receiver) -> Source:
    """The source that records `receiver` for `session`: its own kind's under "auto", else the
    session's kind."""
    return get_source(session.source_kind_for(receiver))


register(KiwiSDRSource())
register(SimulatedSource())
register(RecordingSource())
register(OpenWebRXSource())
