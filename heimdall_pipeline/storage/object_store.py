"""boto3 plumbing shared by the IO manager, the services and the CLI. No Dagster.

Transient errors (connection refused, timeouts, 5xx, throttling) are retried by botocore's
standard retry mode with a bounded number of attempts; 4xx answers such as 403 are not retried.
"""

from __future__ import annotations

import boto3
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError
from botocore.handlers import add_expect_header


def s3_client(endpoint_url: str | None, access_key_id: str | None, secret_access_key: str | None,
              region: str | None = "us-east-1", *, max_attempts: int = 4, connect_timeout_s: float = 5.0,
              read_timeout_s: float = 60.0, profile_name: str | None = None, unsigned: bool = False,
              sign_payload: bool = True, **client_args):
    """A path-style S3 client for MinIO/SeaweedFS (and AWS) endpoints: the one place a boto3 S3
    client is configured. client_args go to boto3 as they are (use_ssl, verify, aws_session_token).

    sign_payload=False leaves request bodies out of the signature (UNSIGNED-PAYLOAD): over http
    botocore otherwise hashes every body with SHA-256 for it, and the server hashes it again. Only
    for a client whose every upload carries a checksum header (signed) that the server verifies
    (resources/iq_store.IQStore)."""
    config = Config(
        s3={"addressing_style": "path", "payload_signing_enabled": sign_payload},
        signature_version=UNSIGNED if unsigned else "s3v4",
        retries={"mode": "standard", "total_max_attempts": max_attempts},
        connect_timeout=connect_timeout_s,
        read_timeout=read_timeout_s,
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    # boto3's default session shares its loaded service models between clients; a named profile
    # needs its own session.
    session = boto3.session.Session(profile_name=profile_name) if profile_name else boto3
    client = session.client("s3", endpoint_url=endpoint_url, aws_access_key_id=access_key_id,
                            aws_secret_access_key=secret_access_key, region_name=region, config=config,
                            **client_args)
    # botocore sends a streamed body only after the server's "100 Continue": one more round trip
    # per upload (every capture's .npy), to spare a body the server might refuse. Ours are at most
    # a multipart part, and a refusal is still answered after the body.
    client.meta.events.unregister("before-call.s3", add_expect_header)
    return client


MISSING_BUCKET_CODES = ("404", "NoSuchBucket", "NotFound")
ACCESS_DENIED_CODES = ("403", "AccessDenied", "Forbidden", "InvalidAccessKeyId", "SignatureDoesNotMatch")


def error_code(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""


def ensure_bucket(client, bucket: str, *, versioning: bool = True) -> bool:
    """Creates the bucket if missing and turns versioning on; returns True if it was created.

    Versioning means an overwrite of an object never destroys the only copy of earlier data.
    """
    created = False
    try:
        client.head_bucket(Bucket=bucket)
    except ClientError as exc:
        if error_code(exc) not in MISSING_BUCKET_CODES:
            raise
        try:
            client.create_bucket(Bucket=bucket)
            created = True
        except ClientError as create_exc:
            if error_code(create_exc) not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise
    if versioning:
        status = client.get_bucket_versioning(Bucket=bucket).get("Status")
        if status != "Enabled":
            client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    return created
