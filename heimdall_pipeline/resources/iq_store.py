"""IQStore: raw IQ captures in S3 — `sessions/{session}/websdr_{receiver}.npy`, its SigMF
metadata JSON and a spectrum PNG, with checksums verified by the server on upload and SHA-256
verified on every read."""

from __future__ import annotations

import base64
import hashlib
import io
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from itertools import islice
from typing import Any, TypeVar

from boto3.s3.transfer import TransferConfig
from dagster import ConfigurableResource, MetadataValue
from dagster_aws.s3 import S3Resource
from pydantic import Field, PrivateAttr

from heimdall_pipeline.partitions import split_capture_key
from heimdall_pipeline.sources.capture import Capture, ReceiverCapture
from heimdall_pipeline.storage.buffers import BufferStream
from heimdall_pipeline.storage.iq_format import IntegrityError, capture_from_stored, encode_capture
from heimdall_pipeline.storage.layout import (
    iq_dataset_name, iq_object_key, metadata_object_key, spectrum_object_key,
)
from heimdall_pipeline.storage.object_store import ACCESS_DENIED_CODES, MISSING_BUCKET_CODES, error_code

T = TypeVar("T")
MISSING_CODES = ("NoSuchKey", "404", "NotFound")
_CLIENTS: dict[tuple, Any] = {}  # (S3 settings, bucket) -> boto3 client
_PNG_SLOTS = threading.BoundedSemaphore(1)  # spectrum pictures rendered at once: CPU-bound, so one


class S3AccessDeniedError(PermissionError):
    """The S3 server refused the credentials or the bucket permission (never retried)."""


class MissingBucketError(RuntimeError):
    """The configured bucket does not exist; only setup creates it."""


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


class IQStore(ConfigurableResource):
    s3: S3Resource
    bucket: str = Field(default="heimdall-raw-iq", description="Bucket for raw IQ (versioned; created by setup, never by a run)")
    multipart_threshold_mb: int = Field(default=16, description="Objects above this size use multipart upload")
    presigned_url_expiry_s: int = Field(default=7 * 24 * 3600, description="Lifetime of links shown in the UI")
    parallel_transfers: int = Field(default=8, description="Objects uploaded at once")
    read_ahead: int = Field(default=2, description="Captures downloaded ahead of the one being processed when "
                                                   "reading many partitions (memory: that many captures more)")
    public_endpoint_url: str = Field(
        default="", description="Endpoint browsers reach for links in the UI, when it differs from the "
                                "one the code uses (e.g. http://minio:9000 inside Docker); empty = the same")
    _client: Any = PrivateAttr(default=None)

    def setup_for_execution(self, context) -> None:
        # Fail at resource start, before anything is recorded, if the server, the keys or the
        # bucket are wrong.
        self.client()

    def client(self):
        if self._client is None:
            # One boto3 client per process and configuration: Dagster builds the resource anew for
            # every run, and a client (service model load) costs 0.2-0.4 s of CPU each time. boto3
            # clients are thread-safe. The bucket is checked once per resource, so once per run.
            cache_key = (repr(sorted(self.s3.model_dump().items())), self.bucket)
            client = _CLIENTS.get(cache_key) or _CLIENTS.setdefault(cache_key, self.s3.get_client())
            self._check_bucket(client)
            self._client = client
        return self._client

    def _check_bucket(self, client) -> None:
        """Never creates the bucket: a run that re-created it empty would report every stored
        capture as missing. Only setup creates it (`heimdall services up`, Docker's minio_init)."""
        try:
            client.head_bucket(Bucket=self.bucket)
        except Exception as exc:  # noqa: BLE001 - refusals become one clear error, others pass
            code = error_code(exc)
            if code in ACCESS_DENIED_CODES:
                raise S3AccessDeniedError(
                    f"S3 at {self.s3.endpoint_url} refused access to bucket {self.bucket!r} "
                    f"({code}): check HEIMDALL_S3_ACCESS_KEY_ID / HEIMDALL_S3_SECRET_ACCESS_KEY "
                    f"and the key's permissions on the bucket") from exc
            if code in MISSING_BUCKET_CODES:
                raise MissingBucketError(
                    f"bucket {self.bucket!r} does not exist at {self.s3.endpoint_url}: runs never create it "
                    f"(an empty new bucket would hide every stored capture). Create it with `heimdall services up` "
                    f"(embedded services) or your S3 setup (Docker: minio_init), or fix HEIMDALL_S3_BUCKET") from exc
            raise

    # -- writing ---------------------------------------------------------------------------
    def put(self, key: str, body: bytes | BufferStream, content_type: str, metadata: dict[str, str],
            *, sha256_hex: str | None = None) -> None:
        """One object with a SHA-256 the server verifies before accepting it. body: bytes, or a
        BufferStream (read in place, no joined copy); sha256_hex: its hash if already known."""
        client = self.client()
        size = body.size if isinstance(body, BufferStream) else len(body)
        if size > self.multipart_threshold_mb * 1024 * 1024:
            # Multipart: the SDK sends a SHA-256 per part and the server checks each.
            # s3transfer cuts parts with one read() each: a BufferedReader makes every read full.
            source = io.BufferedReader(body) if isinstance(body, BufferStream) else io.BytesIO(body)
            client.upload_fileobj(source, self.bucket, key,
                                  ExtraArgs={"ChecksumAlgorithm": "SHA256", "ContentType": content_type,
                                             "Metadata": metadata},
                                  Config=TransferConfig(multipart_threshold=self.multipart_threshold_mb * 1024 * 1024,
                                                        multipart_chunksize=self.multipart_threshold_mb * 1024 * 1024))
        else:
            if sha256_hex is not None:
                digest = bytes.fromhex(sha256_hex)
            else:
                digest = body.sha256() if isinstance(body, BufferStream) else hashlib.sha256(body).digest()
            client.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType=content_type,
                              Metadata=metadata, ChecksumSHA256=base64.b64encode(digest).decode())

    def store_capture(self, item: ReceiverCapture) -> dict[str, Any]:
        capture, receiver = item.capture, item.receiver
        npy_key = iq_object_key(capture.session_key, receiver.id)
        encoded = encode_capture(capture, receiver, dataset_name=iq_dataset_name(receiver.id))
        user_metadata = {
            "session": capture.session_key, "receiver": receiver.id,
            "frequency-hz": f"{capture.center_frequency_hz:.3f}", "samples": str(len(capture.samples)),
            "sha256": encoded.sha256,
        }
        # Data first, then metadata: a reader never finds metadata without its data.
        self.put(npy_key, encoded.npy_stream(), "application/octet-stream", user_metadata, sha256_hex=encoded.sha256)
        self.put(metadata_object_key(capture.session_key, receiver.id), encoded.metadata_json,
                 "application/json", user_metadata)
        return {
            "capture_status": "stored",
            "s3_key": f"s3://{self.bucket}/{npy_key}",
            "bytes": encoded.npy_size,
            "sha256": encoded.sha256,
            "samples": len(capture.samples),
            "sample_rate_hz": float(capture.sample_rate_hz),
            "presigned_url": MetadataValue.url(self.presigned_url(npy_key)),
        }

    def store_spectrum(self, capture: Capture) -> dict[str, Any]:
        """The PSD/waterfall picture beside the capture; metadata showing it in the UI."""
        from heimdall_pipeline.plots import spectrum_png  # matplotlib: loaded when first drawn

        samples, rate, unit = capture.samples, capture.sample_rate_hz, capture.power_unit
        if capture.is_audio:  # drawn as the RF band the audio came from, around the session frequency
            from heimdall_pipeline.dsp.audio import usb_baseband

            samples, rate = usb_baseband(samples, rate, tuple(capture.audio["passband_hz"]))
            unit = "audio dBFS"
        with _PNG_SLOTS:  # CPU-bound (GIL): more at once only adds memory (~3 MB each), not speed
            png = spectrum_png(samples, rate, capture.center_frequency_hz,
                               f"{capture.session_key} / {capture.receiver_id}", power_unit=unit)
        key = spectrum_object_key(capture.session_key, capture.receiver_id)
        self.put(key, png, "image/png", {"session": capture.session_key, "receiver": capture.receiver_id})
        url = self.presigned_url(key)
        return {"spectrum": MetadataValue.md(f"![spectrum]({url})\n\n[spectrum PNG]({url})")}

    def presigned_url(self, key: str) -> str:
        """A time-limited GET link; signed for the public endpoint if one is set (signing is local,
        no request is made)."""
        signer = self.s3.model_copy(update={"endpoint_url": self.public_endpoint_url}).get_client() \
            if self.public_endpoint_url else self.client()
        return signer.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=self.presigned_url_expiry_s)

    def get(self, key: str) -> bytes | None:
        try:
            return self.client().get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except Exception as exc:  # noqa: BLE001 - only "missing" is turned into None
            if error_code(exc) in MISSING_CODES:
                return None
            raise

    def exists(self, key: str) -> bool:
        try:
            self.client().head_object(Bucket=self.bucket, Key=key)
        except Exception as exc:  # noqa: BLE001 - only "missing" means False
            if error_code(exc) in MISSING_CODES:
                return False
            raise
        return True

    def has_capture(self, partition_key: str) -> bool:
        """Whether a complete capture is stored (its metadata is written last)."""
        session, receiver = split_capture_key(partition_key)
        return self.exists(metadata_object_key(session, receiver))

    def load_capture(self, partition_key: str) -> Capture | None:
        """The stored capture, None if the partition has none, IntegrityError if it is damaged."""
        session, receiver = split_capture_key(partition_key)
        npy_key, meta_key = iq_object_key(session, receiver), metadata_object_key(session, receiver)
        metadata = self.get(meta_key)
        if metadata is None:
            if self.exists(npy_key):
                raise IntegrityError(f"s3://{self.bucket}/{npy_key}: data without its metadata {meta_key}")
            return None
        data = self.get(npy_key)
        if data is None:
            raise IntegrityError(f"s3://{self.bucket}/{npy_key}: missing, but its metadata {meta_key} exists")
        return capture_from_stored(data, metadata, key_for_errors=f"s3://{self.bucket}/{npy_key}")
