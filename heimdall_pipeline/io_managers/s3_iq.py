"""The raw_iq IO manager: a whole range of partitions per call, so single-run backfills work.

Dagster's UPath-based managers refuse an output that covers several partitions; this one takes
the asset's value as a dict keyed by partition key ("receiver|session"). Values: a
ReceiverCapture to store, or None / an AcquisitionFailure for a partition without a capture
(nothing is written for it; its status goes into the partition's metadata).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from dagster import ConfigurableIOManager, InputContext, OutputContext

from heimdall_pipeline.partitions import PER_PARTITION_METADATA_LIMIT
from heimdall_pipeline.resources.iq_store import IQStore, read_ahead
from heimdall_pipeline.sources.capture import Capture, ReceiverCapture


class StoredCaptures(Mapping):
    """Captures of many partitions, read lazily in key order: while one is processed, the next
    ``read_ahead`` are downloading, so a backfill over thousands of partitions holds only
    read_ahead captures besides those the caller keeps."""

    def __init__(self, store: IQStore, keys: list[str]):
        self._store, self._keys = store, keys

    def __getitem__(self, key: str) -> Capture | None:
        if key not in self._keys:
            raise KeyError(key)
        return self._store.load_capture(key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def items(self) -> Iterator[tuple[str, Capture | None]]:  # type: ignore[override]
        return read_ahead(self._store.load_capture, self._keys, self._store.read_ahead)


class S3IQIOManager(ConfigurableIOManager):
    store: IQStore

    def handle_output(self, context: OutputContext, obj: dict[str, Any]) -> None:
        if not isinstance(obj, dict):
            raise TypeError(f"raw_iq must be a dict of partition key to capture, got {type(obj).__name__}")
        captures = {key: value for key, value in obj.items() if isinstance(value, ReceiverCapture)}
        with ThreadPoolExecutor(max_workers=self.store.parallel_transfers) as pool:
            stored = dict(zip(captures, pool.map(self.store.store_capture, captures.values())))
        if len(obj) <= PER_PARTITION_METADATA_LIMIT:
            for key, value in obj.items():
                metadata = {**stored[key], **value.ui_metadata} if key in stored else (
                    {"capture_status": "failed", "error": f"{value.error_type}: {value.message}"}
                    if value is not None else {"capture_status": "not_requested"})
                context.step_context.add_asset_metadata(metadata, asset_key=context.asset_key, partition_key=key)
        context.add_output_metadata({
            "stored": len(captures),
            "failed": sum(1 for v in obj.values() if v is not None and not isinstance(v, ReceiverCapture)),
            "bucket": self.store.bucket,
            "bytes_total": sum(m["bytes"] for m in stored.values()),
        })

    def load_input(self, context: InputContext) -> StoredCaptures:
        return StoredCaptures(self.store, [str(key) for key in context.asset_partition_keys])
