"""The embedded services are real servers: S3 with metadata and verified checksums,
PostgreSQL with TimescaleDB, and a Dagster code location that loads."""

import base64
import hashlib
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psycopg
import pytest
from botocore.exceptions import ClientError

from heimdall_pipeline.services import manager
from heimdall_pipeline.services.common import ServiceError, port_is_free, require_free_ports
from heimdall_pipeline.services.seaweedfs import HEALTH_BUCKET
from heimdall_pipeline_tests.dev_server import descendants, free_port, start_heimdall_dev, tail, wait_gone


def test_s3_put_get_with_user_metadata_and_verified_checksum(s3_client):
    bucket, key = os.environ["HEIMDALL_S3_BUCKET"], f"tests/{uuid.uuid4().hex}"
    body = os.urandom(4096)
    digest = base64.b64encode(hashlib.sha256(body).digest()).decode()
    s3_client.put_object(Bucket=bucket, Key=key, Body=body, ChecksumSHA256=digest, Metadata={"session": "t1"})
    got = s3_client.get_object(Bucket=bucket, Key=key)
    assert got["Body"].read() == body
    assert got["Metadata"] == {"session": "t1"}
    wrong = base64.b64encode(hashlib.sha256(b"other").digest()).decode()
    with pytest.raises(ClientError):
        s3_client.put_object(Bucket=bucket, Key=key + "-bad", Body=body, ChecksumSHA256=wrong)
    assert s3_client.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"


def test_iq_store_uploads_leave_the_body_to_the_verified_checksum(resources):
    """IQStore's client does not hash bodies into the signature (UNSIGNED-PAYLOAD, a signed
    x-amz-checksum-sha256 instead); the server still refuses a body that does not match it."""
    store = resources["iq_store"]
    client = store.client()
    sent: list[dict] = []
    record = lambda request, **_: sent.append(dict(request.headers))  # noqa: E731
    client.meta.events.register("before-send.s3.PutObject", record)
    key, body = f"tests/{uuid.uuid4().hex}", os.urandom(70_000)
    try:
        store.put(key, body, "application/octet-stream", {"session": "t1"})
        assert store.get(key) == body
        with pytest.raises(ClientError) as refused:
            store.put(key + "-bad", body, "application/octet-stream", {}, sha256_hex=hashlib.sha256(b"other").hexdigest())
    finally:
        client.meta.events.unregister("before-send.s3.PutObject", record)
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert store.get(key + "-bad") is None
    headers = {name.lower(): (value.decode() if isinstance(value, bytes) else value) for name, value in sent[0].items()}
    assert headers["x-amz-content-sha256"] == "UNSIGNED-PAYLOAD"
    assert headers["x-amz-checksum-sha256"] == base64.b64encode(hashlib.sha256(body).digest()).decode()
    assert "x-amz-checksum-sha256" in headers["authorization"]  # the checksum itself is signed


def test_streamed_uploads_send_the_body_without_waiting_for_100_continue(resources):
    """A capture's .npy goes up as a stream over its header and samples; botocore would hold
    the body back until the server answers "100 Continue" (one more round trip per capture)."""
    from heimdall_pipeline.storage.buffers import BufferStream

    store = resources["iq_store"]
    client = store.client()
    sent: list[dict] = []
    record = lambda request, **_: sent.append({k.lower(): v for k, v in request.headers.items()})  # noqa: E731
    client.meta.events.register("before-send.s3.PutObject", record)
    header, samples = b"\x93NUMPY header", os.urandom(300_000)
    key = f"tests/{uuid.uuid4().hex}"
    try:
        store.put(key, BufferStream(header, samples), "application/octet-stream", {},
                  sha256_hex=hashlib.sha256(header + samples).hexdigest())
        with pytest.raises(ClientError) as refused:  # a wrong checksum is still refused, body sent
            store.put(key + "-bad", BufferStream(header, samples), "application/octet-stream", {},
                      sha256_hex=hashlib.sha256(b"other").hexdigest())
    finally:
        client.meta.events.unregister("before-send.s3.PutObject", record)
    assert [h.get("expect") for h in sent] == [None, None]
    assert store.get(key) == header + samples
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert store.get(key + "-bad") is None


def test_links_for_a_public_endpoint_are_signed_by_one_client(resources, monkeypatch):
    """Links in the UI name the endpoint browsers reach (Docker: the host's port), and signing
    them costs no boto3 client per link (a client is 0.2-0.4 s of CPU)."""
    import urllib.request

    from heimdall_pipeline.resources import s3 as s3_module
    from heimdall_pipeline.storage.object_store import s3_client

    store = resources["iq_store"]
    key, body = f"tests/{uuid.uuid4().hex}", os.urandom(1000)
    store.put(key, body, "application/octet-stream", {})
    endpoint = store.s3.endpoint_url.rstrip("/")
    public = store.model_copy(update={"public_endpoint_url": endpoint.replace("127.0.0.1", "localhost")})
    made = []
    monkeypatch.setattr(s3_module, "s3_client", lambda *a, **k: made.append(a) or s3_client(*a, **k))
    links = [public.presigned_url(key) for _ in range(20)]
    assert len(made) <= 1
    assert all(link.startswith(endpoint.replace("127.0.0.1", "localhost") + "/") and "Signature=" in link for link in links)
    with urllib.request.urlopen(links[0], timeout=10) as answer:  # the host that was signed for
        assert answer.read() == body
    with urllib.request.urlopen(store.presigned_url(key), timeout=10) as answer:
        assert answer.read() == body


def test_s3_refuses_a_wrong_secret(embedded_services):
    from heimdall_pipeline.storage.object_store import s3_client

    client = s3_client(os.environ["HEIMDALL_S3_ENDPOINT_URL"], os.environ["HEIMDALL_S3_ACCESS_KEY_ID"], "wrong-secret")
    with pytest.raises(ClientError) as error:
        client.put_object(Bucket=os.environ["HEIMDALL_S3_BUCKET"], Key="tests/denied", Body=b"x")
    assert error.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_timescaledb_extension_hypertable_and_time_bucket(embedded_services):
    services = embedded_services
    database = f"heimdall_t_{uuid.uuid4().hex[:8]}"
    admin = services.postgres.url("postgres", admin=True, driver="postgresql")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{database}"')
    try:
        with psycopg.connect(services.postgres.url(database, admin=True, driver="postgresql"), autocommit=True) as conn:
            conn.execute("CREATE EXTENSION timescaledb")
            conn.execute("CREATE TABLE m (time timestamptz NOT NULL, receiver text, snr double precision)")
            conn.execute("SELECT create_hypertable('m', 'time')")
            conn.execute("INSERT INTO m SELECT now() - g * interval '1 minute', 'r' || (g % 3), g FROM generate_series(0, 299) g")
            buckets = conn.execute("SELECT time_bucket('1 hour', time) AS b, count(*) FROM m GROUP BY b").fetchall()
            hypertables = conn.execute("SELECT hypertable_name FROM timescaledb_information.hypertables").fetchall()
        assert sum(count for _, count in buckets) == 300 and 5 <= len(buckets) <= 6
        assert hypertables == [("m",)]
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE "{database}" WITH (FORCE)')


def test_services_up_is_idempotent_and_status_reports_real_checks(embedded_services):
    pids = (embedded_services.s3.pid(), embedded_services.postgres.pid(), embedded_services.session_worker.pid())
    again = manager.up()
    assert (again.s3.pid(), again.postgres.pid(), again.session_worker.pid()) == pids
    current = manager.status()
    assert current.healthy and current.down == ()
    assert "put/get OK" in current.report["SeaweedFS"] and "SELECT OK" in current.report["PostgreSQL"]
    assert current.report["session worker"].startswith(f"running (pid {pids[2]}), accepting")


def test_a_port_in_use_is_named_in_the_error(embedded_services):
    port = int(os.environ["HEIMDALL_S3_PORT"])
    assert not port_is_free(port)
    with pytest.raises(ServiceError, match=f"S3 port {port}"):
        require_free_ports("SeaweedFS", {"S3": port}, "HEIMDALL_S3_PORT")


def test_definitions_load_and_validate(embedded_services):
    from dagster import Definitions

    from heimdall_pipeline.definitions import defs

    Definitions.validate_loadable(defs)
    assert {"raw_iq", "receiver_metrics", "session_summary"} <= {k.to_user_string() for k in defs.resolve_all_asset_keys()}
    result = subprocess.run([os.path.join(os.path.dirname(sys.executable), "dagster"), "definitions", "validate",
                             "-w", "workspace.yaml"], capture_output=True, text=True, cwd=os.path.dirname(
                                 os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture()
def new_runtime_folder(monkeypatch):
    """An empty runtime folder with its own free ports (nothing started yet); stopped and removed
    at the end."""
    from heimdall_pipeline_tests.faults.conftest import _free_port_set

    s3_port, base, pg_port = _free_port_set()
    home = Path(tempfile.mkdtemp(prefix="heimdall-services-"))
    for name, value in {"HEIMDALL_HOME": str(home), "HEIMDALL_S3_PORT": str(s3_port),
                        "HEIMDALL_SEAWEEDFS_PORT_BASE": str(base), "HEIMDALL_PG_PORT": str(pg_port)}.items():
        monkeypatch.setenv(name, value)
    yield s3_port, base, pg_port
    manager.down()
    shutil.rmtree(home, ignore_errors=True)


def test_a_port_clash_leaves_nothing_running_and_status_exits_non_zero(new_runtime_folder, capsys):
    from heimdall_pipeline import cli

    s3_port, _, pg_port = new_runtime_folder
    with socket.socket() as squatter:  # another program holds the S3 port
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # past a stopped server's TIME_WAIT
        squatter.bind(("127.0.0.1", s3_port))
        squatter.listen()
        with pytest.raises(ServiceError, match=f"S3 port {s3_port}"):
            manager.up()
    services = manager.embedded_services()
    assert services.postgres.pid() is None and services.s3.pid() is None
    assert port_is_free(pg_port)
    capsys.readouterr()
    assert cli.main(["services", "status"]) == 1
    captured = capsys.readouterr()
    assert "PostgreSQL: stopped" in captured.out and "SeaweedFS, PostgreSQL" in captured.err


def test_a_runtime_folder_too_deep_for_a_unix_socket_says_why_it_has_no_session_worker(new_runtime_folder,
                                                                                       monkeypatch):
    from heimdall_pipeline.services.worker_process import MAX_SOCKET_PATH

    deep = Path(os.environ["HEIMDALL_HOME"]) / ("d" * (MAX_SOCKET_PATH + 1))
    monkeypatch.setenv("HEIMDALL_HOME", str(deep))
    worker = manager.embedded_services(create=True).session_worker
    assert not worker.start(dict(os.environ)) and worker.pid() is None
    assert not worker.run_dir.exists()  # nothing started, nothing made
    said = manager.status().report["session worker"]
    assert said.startswith("not started: its socket") and "a shorter HEIMDALL_HOME" in said, said
    assert "runs in its own process" in said


def test_a_refused_postgresql_start_says_why_from_the_server_log(new_runtime_folder):
    postgres = manager.embedded_services(create=True).postgres
    postgres.start()
    postgres.stop()
    with open(postgres.data_dir / "postgresql.auto.conf", "a") as conf:  # a hand edit gone wrong
        conf.write("shared_buffers = 'plenty'\n")
    with pytest.raises(ServiceError, match='invalid value for parameter "shared_buffers"'):
        postgres.start()
    assert postgres.pid() is None


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_heimdall_dev_stops_its_children_and_cleans_its_temporary_files(embedded_services, tmp_path, signum):
    """Its children stop with it, and the code servers' sockets live in a private temporary folder of
    the runtime folder (not the system's), removed when it stops."""
    scratch = embedded_services.home / "tmp"
    before = set(scratch.glob("dev-*"))
    log = tmp_path / "dev.log"
    dev = start_heimdall_dev(free_port(), log)
    try:
        deadline = time.monotonic() + 120
        sockets: list[Path] = []
        while time.monotonic() < deadline and not sockets:  # dagster dev has started a code server
            assert dev.poll() is None, tail(log)
            sockets = [p for folder in set(scratch.glob("dev-*")) - before for p in folder.rglob("*") if p.is_socket()]
            time.sleep(0.5)
        assert sockets, f"no code server socket under {scratch}: {tail(log)}"
        assert all(stat.S_IMODE(folder.stat().st_mode) == 0o700 for folder in set(scratch.glob("dev-*")) - before)
        children = descendants(dev.pid)
        assert children, "dagster dev did not start"
        dev.send_signal(signum)
        assert dev.wait(timeout=60) == 128 + signum
        assert wait_gone(children, 10) == set(), "children left running"
        assert set(scratch.glob("dev-*")) - before == set(), "temporary folder left behind"
        assert "starting:" in log.read_text()
    finally:
        if dev.poll() is None:
            os.killpg(dev.pid, signal.SIGKILL)
        for pid in descendants(dev.pid):
            os.kill(pid, signal.SIGKILL)


def test_bootstrap_keeps_one_environment_per_checkout(tmp_path):
    """Two clones bootstrapped with one cache each get their own environment: installing the second
    never re-points the first one's (editable) install; a second run only checks."""
    from heimdall_pipeline.settings import REPO_ROOT

    ignore = shutil.ignore_patterns(".heimdall", ".git", "__pycache__", "*.egg-info", ".pytest_cache")
    env = {k: v for k, v in os.environ.items() if k != "HEIMDALL_VENV"}
    env["HEIMDALL_CACHE"] = str(tmp_path / "cache")
    env["HEIMDALL_COMPILE_BYTECODE"] = "0"  # which environment is used is the point here, not its bytecode

    def bootstrap(checkout: Path) -> tuple[Path, str]:
        done = subprocess.run(["bash", str(checkout / "scripts" / "bootstrap.sh")], env=env, capture_output=True,
                              text=True, timeout=600)
        assert done.returncode == 0, done.stderr
        return Path(done.stdout.strip()), done.stderr

    def installed_from(venv: Path) -> Path:
        code = "import heimdall_pipeline, pathlib; print(pathlib.Path(heimdall_pipeline.__file__).parent.parent)"
        return Path(subprocess.run([str(venv / "bin" / "python"), "-c", code], capture_output=True, text=True,
                                   check=True, cwd=tmp_path).stdout.strip())

    first, second = tmp_path / "first" / "heimdall", tmp_path / "second" / "heimdall"
    for checkout in (first, second):
        shutil.copytree(REPO_ROOT, checkout, ignore=ignore)
    try:
        first_venv, _ = bootstrap(first)
        second_venv, _ = bootstrap(second)
        assert first_venv != second_venv
        assert tmp_path / "cache" in first_venv.parents and first not in first_venv.parents  # outside the repo
        assert installed_from(first_venv) == first and installed_from(second_venv) == second
        again, log = bootstrap(first)
        assert again == first_venv and "installing" not in log and "creating" not in log
    finally:
        shutil.rmtree(tmp_path, ignore_errors=True)  # two environments: not kept among pytest's temp folders


def _listening_ports(pid: int) -> set[int]:
    """TCP ports a process listens on, from its socket inodes in /proc (not from our own list)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[len("socket:["):-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in open(table).read().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def _anonymous(port: int, method: str, path: str, body: bytes | None = None, headers=None):
    """The HTTP status of an unauthenticated request, or the connection error's name."""
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        return connection.getresponse().status
    except (OSError, http.client.HTTPException) as exc:  # gRPC ports drop plain HTTP
        return type(exc).__name__
    finally:
        connection.close()


def _anonymous_grpc(port: int) -> str | None:
    """The status of a plaintext gRPC call (any answer means the port serves anyone), or None when
    no gRPC conversation could be had without the runtime folder's client certificate."""
    import grpc

    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        try:
            grpc.channel_ready_future(channel).result(timeout=3)
            channel.unary_unary("/master_pb.Seaweed/Ping")(b"", timeout=3)
            return "OK"
        except grpc.FutureTimeoutError:
            return None
        except grpc.RpcError as exc:
            return None if exc.code() == grpc.StatusCode.UNAVAILABLE else exc.code().name


def test_only_the_s3_gateway_with_keys_accepts_writes_on_any_port(embedded_services, s3_client):
    s3 = embedded_services.s3
    ports = _listening_ports(s3.pid())
    assert s3.s3_port in ports and ports <= set(s3.all_ports().values()), ports  # no port we do not know of
    bucket, key = os.environ["HEIMDALL_S3_BUCKET"], f"tests/anon-{uuid.uuid4().hex}"
    s3_client.put_object(Bucket=bucket, Key=key, Body=b"kept")
    form = b'--b\r\nContent-Disposition: form-data; name="file"; filename="x"\r\n\r\nx\r\n--b--\r\n'
    attempts = [
        ("PUT", f"/{bucket}/{key}", b"x", None), ("PUT", f"/buckets/{bucket}/{key}", b"x", None),
        ("POST", f"/buckets/{bucket}/tests/", form, {"Content-Type": "multipart/form-data; boundary=b"}),
        ("POST", "/submit", form, {"Content-Type": "multipart/form-data; boundary=b"}),
        ("POST", "/1,0123456789", form, {"Content-Type": "multipart/form-data; boundary=b"}),
        ("DELETE", f"/{bucket}/{key}", None, None), ("DELETE", f"/buckets/{bucket}/{key}", None, None),
        ("DELETE", "/1,0123456789", None, None),
        ("GET", "/dir/assign", None, None), ("GET", "/vol/grow?count=1", None, None),
        ("GET", f"/col/delete?collection={HEALTH_BUCKET}", None, None),  # only the probe bucket: never data
        ("GET", f"/{bucket}?list-type=2", None, None), ("GET", f"/{bucket}?versions", None, None),
        ("GET", f"/buckets/{bucket}/?pretty=y", None, None), ("GET", f"/buckets/{bucket}/{key}", None, None),
        ("GET", "/1,0123456789", None, None), ("GET", "/dir/lookup?volumeId=1", None, None),
    ]
    accepted = {}
    for port in sorted(ports):
        for method, path, body, headers in attempts:
            status = _anonymous(port, method, path, body, headers)
            if isinstance(status, int) and status < 400:
                accepted[f"{method} 127.0.0.1:{port}{path}"] = status
    assert accepted == {}, f"anonymous requests accepted: {accepted}"
    answered = {port: code for port in sorted(ports) if (code := _anonymous_grpc(port)) is not None}
    assert answered == {}, f"gRPC answered without a client certificate: {answered}"
    assert s3_client.get_object(Bucket=bucket, Key=key)["Body"].read() == b"kept"  # the keys still work
    assert [v["Key"] for v in s3_client.list_object_versions(Bucket=bucket, Prefix=key)["Versions"]] == [key]
