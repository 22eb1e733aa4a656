"""A batch under ``incoming/`` into the database: its `recording` session and the receivers its
positions file adds, in one transaction."""

from __future__ import annotations

import sqlalchemy as sa

from heimdall_pipeline.db.receivers_repo import list_receivers
from heimdall_pipeline.db.sessions_repo import get_session, insert_import
from heimdall_pipeline.recordings.bucket import UNTIMED_MARKER, batch_objects
from heimdall_pipeline.recordings.plan import POSITIONS_FILE, plan_import
from heimdall_pipeline.sessions import Session
from heimdall_pipeline.storage.layout import INCOMING_ROOT


def import_batch(engine: sa.Engine, store, batch: str, *, receiver_name: str | None = None,
                 requested_by: str = "import") -> Session:
    """Creates the session of a batch under incoming/ (idempotent: an existing session of the
    batch is returned). Raises RecordingImportError (nothing stored) when a file is bad."""
    existing = get_session(engine, batch)
    if existing is not None and (existing.recordings or {}).get("batch") == batch:
        return existing
    files: dict[str, bytes] = {}
    positions, untimed = None, False
    for entry in batch_objects(store, INCOMING_ROOT, batch):
        name = entry["Key"].rsplit("/", 1)[-1]
        if name.lower().endswith(".wav"):
            files[name] = store.get(entry["Key"])
        elif name == POSITIONS_FILE:
            positions = store.get(entry["Key"])
        elif name == UNTIMED_MARKER:
            untimed = True
    plan = plan_import(batch, files, list_receivers(engine), positions=positions, receiver_name=receiver_name,
                       requested_by=requested_by, untimed=untimed)
    return insert_import(engine, plan.session, plan.new_receivers)
