"""The raw_iq IO manager: a whole range of partitions per call, so single-run backfills work.

Dagster's UPath-based managers refuse an output that covers several partitions; this one takes
the asset's value as a dict keyed by capture key ("<session>.<receiver>"). Values: a
ReceiverCapture to store, an AcquisitionFailure for a requested receiver without a capture, or
None for a key whose receiver the session did not request (no row: session_captures holds the
requested receivers only).

Each partition's outcome goes into session_captures (db/captures_repo.py) in this order: the
captures' objects, then their metadata objects, then all the step's rows in one transaction; a
capture that could not be recorded or stored gets a 'failed' row. The partition's UI metadata is
built from the same outcome.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

from dagster import ConfigurableIOManager, InputContext, MetadataValue, OutputContext

from heimdall_pipeline.capture import Capture, ReceiverCapture
from heimdall_pipeline.partitions import PER_PARTITION_METADATA_LIMIT, split_capture_key
from heimdall_pipeline.resources.database import HeimdallDatabase
from heimdall_pipeline.resources.iq_store import IQStore
from heimdall_pipeline.storage.captures import StoredCapture, load_capture, read_ahead, store_capture
from heimdall_pipeline.storage.layout import iq_object_key


class StoredCaptures(Mapping):
    """Captures of many partitions, read lazily in key order: while one is processed, the next
    ``read_ahead`` are downloading, so a backfill over thousands of partitions holds only
    read_ahead captures besides those the caller keeps."""

    def __init__(self, load: Callable[[str], Capture | None], keys: list[str], read_ahead: int):
        self._load, self._keys, self._read_ahead = load, keys, read_ahead

    def __getitem__(self, key: str) -> Capture | None:
        if key not in self._keys:
            raise KeyError(key)
        return self._load(key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def items(self) -> Iterator[tuple[str, Capture | None]]:  # type: ignore[override]
        return read_ahead(self._load, self._keys, self._read_ahead)


def stored_metadata(stored: StoredCapture, link: str) -> dict[str, Any]:
    """What the UI shows of a stored capture, with a time-limited link to its object."""
    return {
        "capture_status": "stored",
        "s3_key": stored.url,
        "bytes": stored.bytes,
        "sha256": stored.sha256,
        "samples": stored.samples,
        "sample_rate_hz": stored.sample_rate_hz,
        "presigned_url": MetadataValue.url(link),
    }


def outcome_metadata(outcome) -> dict[str, Any]:
    """What the UI shows of a partition without a stored capture."""
    return {"capture_status": "failed", "error": outcome.reason, "attempts": outcome.attempts}


class S3IQIOManager(ConfigurableIOManager):
    store: IQStore
    database: HeimdallDatabase

    def handle_output(self, context: OutputContext, obj: dict[str, Any]) -> None:
        if not isinstance(obj, dict):
            raise TypeError(f"raw_iq must be a dict of partition key to capture, got {type(obj).__name__}")
        from heimdall_pipeline.db.captures_repo import (  # the database layer loads with the first run
            CaptureOutcome, failed_outcome, record_outcomes,
        )

        engine = self.database.engine()
        run_id = context.run_id

        def store(item: tuple[str, ReceiverCapture]) -> tuple[StoredCapture | None, BaseException | None]:
            try:
                return store_capture(self.store, item[1]), None
            except Exception as exc:  # noqa: BLE001 - recorded as this receiver's outcome, raised below
                return None, exc

        captures = [(key, value) for key, value in obj.items() if isinstance(value, ReceiverCapture)]
        show_partitions = len(obj) <= PER_PARTITION_METADATA_LIMIT
        with ThreadPoolExecutor(max_workers=self.store.parallel_transfers) as pool:
            uploads = pool.map(store, captures)
            # the UI's links, signed (locally) while the uploads run
            links = {key: self.store.presigned_url(iq_object_key(value.capture.session_key, value.receiver.id))
                     for key, value in captures} if show_partitions else {}
            results = dict(zip((key for key, _ in captures), uploads))
        # Every outcome of the step in one transaction, after the objects (one round trip, not one
        # per capture: docs/benchmark.md, io_manager_write).
        outcomes: dict[str, CaptureOutcome] = {}
        for key, value in obj.items():
            session_key, receiver_id = split_capture_key(key)
            if isinstance(value, ReceiverCapture):
                stored, error = results[key]
                capture = value.capture
                outcomes[key] = (failed_outcome(session_key, receiver_id, error, attempts=value.attempts, run_id=run_id)
                                 if error is not None else CaptureOutcome(
                    session_key, receiver_id, "stored", attempts=value.attempts, bytes=stored.bytes,
                    sha256=stored.sha256, start_time=capture.start_time,
                    end_time=capture.start_time + timedelta(seconds=capture.duration_s), run_id=run_id))
            elif value is not None:
                outcomes[key] = failed_outcome(session_key, receiver_id, value.message, error_type=value.error_type,
                                               attempts=value.attempts, run_id=run_id)
        record_outcomes(engine, outcomes.values())
        stored = {key: result for key, (result, _) in results.items() if result is not None}
        if show_partitions:
            for key, value in obj.items():
                if key in stored:
                    metadata = {**stored_metadata(stored[key], links[key]), **value.ui_metadata}
                elif key in outcomes:
                    metadata = outcome_metadata(outcomes[key])
                else:
                    metadata = {"capture_status": "not requested"}
                context.step_context.add_asset_metadata({"receiver": split_capture_key(key)[1], **metadata},
                                                        asset_key=context.asset_key, partition_key=key)
        context.add_output_metadata({
            "stored": len(stored),
            "failed": sum(1 for o in outcomes.values() if o.status == "failed"),
            "bucket": self.store.bucket,
            "bytes_total": sum(s.bytes for s in stored.values()),
        })
        errors = [error for _, error in results.values() if error is not None]
        if errors:  # the step fails; each receiver's outcome is recorded above
            raise errors[0]

    def load_input(self, context: InputContext) -> StoredCaptures:
        return StoredCaptures(lambda key: load_capture(self.store, *split_capture_key(key)),
                              [str(key) for key in context.asset_partition_keys], self.store.read_ahead)
