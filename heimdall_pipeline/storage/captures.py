"""A capture as objects in the bucket: `sessions/{session}/websdr_{receiver}.npy` and its SigMF
metadata JSON, the data written first and the metadata last (so metadata always has its data),
SHA-256 verified on every read.

No Dagster, no partition keys: `store` is resources/iq_store.IQStore or anything with its object
I/O (put(key, body, content_type, metadata, sha256_hex=), get(key) -> bytes | None, exists(key))
and `bucket`.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from itertools import islice
from typing import TypeVar

from heimdall_pipeline.capture import Capture, ReceiverCapture
from heimdall_pipeline.storage.iq_format import CaptureIntegrityError, capture_from_stored, encode_capture
from heimdall_pipeline.storage.layout import iq_dataset_name, iq_object_key, metadata_object_key

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class StoredCapture:
    """What was written for one capture."""

    bucket: str
    key: str  # the .npy object
    bytes: int
    sha256: str
    samples: int
    sample_rate_hz: float

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


def store_capture(store, item: ReceiverCapture) -> StoredCapture:
    """The capture's .npy object (its SHA-256 checked by the server), then its metadata object."""
    capture, receiver = item.capture, item.receiver
    npy_key = iq_object_key(capture.session_key, receiver.id)
    encoded = encode_capture(capture, receiver, dataset_name=iq_dataset_name(receiver.id))
    user_metadata = {
        "session": capture.session_key, "receiver": receiver.id,
        "frequency-hz": f"{capture.center_frequency_hz:.3f}", "samples": str(len(capture.samples)),
        "sha256": encoded.sha256,
    }
    # Data first, then metadata: a reader never finds metadata without its data.
    store.put(npy_key, encoded.npy_stream(), "application/octet-stream", user_metadata, sha256_hex=encoded.sha256)
    store.put(metadata_object_key(capture.session_key, receiver.id), encoded.metadata_json,
              "application/json", user_metadata)
    return StoredCapture(bucket=store.bucket, key=npy_key, bytes=encoded.npy_size, sha256=encoded.sha256,
                         samples=len(capture.samples), sample_rate_hz=float(capture.sample_rate_hz))


def has_capture(store, session_key: str, receiver_id: str) -> bool:
    """Whether a complete capture is stored (its metadata is written last)."""
    return store.exists(metadata_object_key(session_key, receiver_id))


def load_capture(store, session_key: str, receiver_id: str) -> Capture | None:
    """The stored capture, None if there is none, CaptureIntegrityError if it is damaged."""
    npy_key, meta_key = iq_object_key(session_key, receiver_id), metadata_object_key(session_key, receiver_id)
    metadata = store.get(meta_key)
    if metadata is None:
        if store.exists(npy_key):
            raise CaptureIntegrityError(f"s3://{store.bucket}/{npy_key}: data without its metadata {meta_key}")
        return None
    data = store.get(npy_key)
    if data is None:
        raise CaptureIntegrityError(f"s3://{store.bucket}/{npy_key}: missing, but its metadata {meta_key} exists")
    return capture_from_stored(data, metadata, key_for_errors=f"s3://{store.bucket}/{npy_key}")


def read_ahead(load: Callable[[str], T], keys: Iterable[str], depth: int) -> Iterator[tuple[str, T]]:
    """(key, load(key)) in key order; while the caller processes one, the next `depth` loads run
    in threads, so at most `depth` results wait in memory besides what the caller keeps."""
    depth = max(1, int(depth))
    keys = iter(keys)
    with ThreadPoolExecutor(max_workers=depth) as pool:
        pending = deque((key, pool.submit(load, key)) for key in islice(keys, depth))
        while pending:
            key, download = pending.popleft()
            result = download.result()
            del download  # a finished future keeps its result alive
            next_key = next(keys, None)
            if next_key is not None:
                pending.append((next_key, pool.submit(load, next_key)))
            yield key, result
            del result  # not kept while the generator waits for the caller
