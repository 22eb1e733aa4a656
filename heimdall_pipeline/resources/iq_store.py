"""IQStore: the bucket of raw IQ as a Dagster resource — its settings, one boto3 client per process
(the bucket checked, never created), and object I/O with checksums the server verifies on upload.

How a capture is laid out in objects and verified on read is storage/captures.py; pictures are
drawn by the asset that shows them (assets/acquisition.py), UI metadata built by the IO manager."""

from __future__ import annotations

import base64
import hashlib
import io
import threading
from typing import Any

from boto3.s3.transfer import TransferConfig
from dagster import ConfigurableResource
from dagster_aws.s3 import S3Resource
from pydantic import Field, PrivateAttr

from heimdall_pipeline.resources.s3 import HeimdallS3Resource
from heimdall_pipeline.storage.buffers import BufferStream
from heimdall_pipeline.storage.object_store import ACCESS_DENIED_CODES, MISSING_BUCKET_CODES, error_code

MISSING_CODES = ("NoSuchKey", "404", "NotFound")
_CLIENTS: dict[tuple, Any] = {}  # S3 settings -> boto3 client
_CLIENTS_LOCK = threading.Lock()


def _client_for(s3: S3Resource):
    """One boto3 client per process and S3 settings: Dagster builds the resource anew for every
    run, and a client (service model load) costs 0.2-0.4 s of CPU. boto3 clients are thread-safe.
    Every IQStore upload carries a SHA-256 the server verifies (IQStore.put), so the body is not
    hashed a second time for the request's signature; a plain dagster_aws S3Resource, supplied by
    a deployment, keeps boto3's signing."""
    key = (type(s3).__name__, repr(sorted(s3.model_dump().items())))
    with _CLIENTS_LOCK:  # upload threads that start together make one client, not one each
        if key not in _CLIENTS:
            _CLIENTS[key] = (s3.get_client(sign_payload=False) if isinstance(s3, HeimdallS3Resource)
                             else s3.get_client())
        return _CLIENTS[key]


class S3AccessDeniedError(PermissionError):
    """The S3 server refused the credentials or the bucket permission (never retried)."""


class MissingBucketError(RuntimeError):
    """The configured bucket does not exist; only setup creates it."""


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
        if self._client is None:  # the bucket is checked once per resource, so once per run
            client = _client_for(self.s3)
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

    def presigned_url(self, key: str) -> str:
        """A time-limited GET link; signed for the public endpoint if one is set (signing is local,
        no request is made)."""
        signer = _client_for(self.s3.model_copy(update={"endpoint_url": self.public_endpoint_url})) \
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
