"""The S3 resource: dagster_aws's `S3Resource` whose clients come from `storage.object_store.s3_client`,
so runs, the CLI, `heimdall verify` and the services configure boto3 one way (path-style addressing,
standard retries, checksums only where S3 requires them) and a command can ask for a short
connect timeout."""

from __future__ import annotations

from typing import Any

from dagster_aws.s3 import S3Resource
from pydantic import Field

from heimdall_pipeline.storage.object_store import s3_client


class HeimdallS3Resource(S3Resource):
    connect_timeout_s: float = Field(default=60.0, description="Seconds to wait for a connection to S3")
    read_timeout_s: float = Field(default=60.0, description="Seconds to wait for an answer from S3")

    def get_client(self, *, sign_payload: bool = True) -> Any:
        """sign_payload=False: see storage.object_store.s3_client (IQStore's uploads)."""
        optional = {"use_ssl": self.use_ssl, "verify": self.verify, "aws_session_token": self.aws_session_token}
        return s3_client(self.endpoint_url, self.aws_access_key_id, self.aws_secret_access_key, self.region_name,
                         max_attempts=self.max_attempts, connect_timeout_s=self.connect_timeout_s,
                         read_timeout_s=self.read_timeout_s, profile_name=self.profile_name,
                         unsigned=self.use_unsigned_session, sign_payload=sign_payload,
                         **{name: value for name, value in optional.items() if value is not None})
