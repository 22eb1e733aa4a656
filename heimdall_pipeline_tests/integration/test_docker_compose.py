"""docker/ is checked without a Docker engine: the compose file against what the code reads,
the instance config through Dagster's own schema, and (when installed) `docker-compose config`."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from heimdall_pipeline import settings

DOCKER = settings.REPO_ROOT / "docker"
HEIMDALL_IMAGE_SERVICES = ("migrate", "user_code", "webserver", "daemon")
ONE_SHOT_SERVICES = ("minio_init", "migrate")  # jobs: they exit, they have no health
EXPECTED_SERVICES = {"minio", "timescaledb", *ONE_SHOT_SERVICES, *HEIMDALL_IMAGE_SERVICES}


class _RecordingEnvironment(dict):
    """An environment that notes every variable asked for and answers each with a placeholder."""

    def __init__(self):
        super().__init__()
        self.asked: set[str] = set()

    def get(self, name, default=None):
        self.asked.add(name)
        return f"placeholder-for-{name}"


def env_vars_read_by_code() -> set[str]:
    """Every variable the resources are built from (the code's contract), asked of build_resources,
    the one function the code location, the CLI and the tests build them with."""
    from heimdall_pipeline.resources import build_resources

    environment = _RecordingEnvironment()
    build_resources(environment)
    return environment.asked


def env_vars_read_by_instance(path: Path) -> set[str]:
    """Every {env: NAME} of a dagster.yaml."""
    return set(re.findall(r"\{\s*env:\s*([A-Z0-9_]+)\s*\}", path.read_text()))


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((DOCKER / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def env_example() -> dict[str, str]:
    return settings.read_env_file(DOCKER / ".env.example")


def service_env(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {name: str(value) for name, value in env.items()}


def test_services_present_with_healthchecks_and_pinned_images(compose):
    services = compose["services"]
    assert set(services) >= EXPECTED_SERVICES
    for name, service in services.items():
        image = service.get("image", "")
        assert image, f"{name}: no image"
        assert not image.endswith(":latest") and ":" in image, f"{name}: image {image!r} is not pinned to a tag"
        if name in ONE_SHOT_SERVICES:
            assert service["restart"] == "no", f"{name}: a one-shot job must not restart"
        else:
            assert "test" in service.get("healthcheck", {}), f"{name}: no healthcheck"
    for name in HEIMDALL_IMAGE_SERVICES:
        assert services[name]["build"]["dockerfile"] == "docker/Dockerfile"
    assert services["timescaledb"]["image"].startswith("timescale/timescaledb:") and "-pg15" in services["timescaledb"]["image"]
    assert "oss" not in services["timescaledb"]["image"], "the OSS image lacks retention/compression/aggregates"
    assert "timescaledb.license=timescale" in services["timescaledb"]["command"]
    assert services["minio_init"]["image"].startswith("minio/mc:RELEASE.")


def test_ports_and_commands(compose):
    services = compose["services"]
    assert any(str(p).endswith(":3000") for p in services["webserver"]["ports"])
    assert any(str(p).endswith(":9000") for p in services["minio"]["ports"])
    # Published ports listen on loopback only.
    for name, service in services.items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name}: port {port} published on all interfaces"
    code_server = services["user_code"]["command"]
    assert code_server[:3] == ["dagster", "code-server", "start"]
    assert code_server[code_server.index("-m") + 1] == "heimdall_pipeline.definitions"
    assert code_server[code_server.index("-p") + 1] == "4000"
    assert services["daemon"]["command"][:2] == ["dagster-daemon", "run"]
    workspace = yaml.safe_load((DOCKER / "workspace.yaml").read_text())
    grpc = workspace["load_from"][0]["grpc_server"]
    assert (grpc["host"], grpc["port"]) == ("user_code", 4000)
    assert set(compose["volumes"]) >= {"minio-data", "timescaledb-data"}


def test_environment_matches_what_the_code_reads(compose):
    code_vars = env_vars_read_by_code()
    # The contract of docs/CONTRACTS.md: if the code stops reading one of these, this test must change.
    assert code_vars >= {"HEIMDALL_S3_ENDPOINT_URL", "HEIMDALL_S3_ACCESS_KEY_ID", "HEIMDALL_S3_SECRET_ACCESS_KEY",
                         "HEIMDALL_S3_BUCKET", "HEIMDALL_S3_REGION", "HEIMDALL_DATABASE_URL"}
    instance_vars = env_vars_read_by_instance(DOCKER / "dagster.yaml")
    assert instance_vars == {"DAGSTER_PG_HOST", "DAGSTER_PG_PORT", "DAGSTER_PG_USER", "DAGSTER_PG_PASSWORD",
                             "DAGSTER_PG_DB"}
    services = compose["services"]
    # The code server loads the definitions and executes the runs: it needs everything.
    user_code = service_env(services["user_code"])
    missing = (code_vars | instance_vars) - set(user_code)
    assert not missing, f"user_code lacks {sorted(missing)}"
    for name in ("webserver", "daemon"):
        assert instance_vars <= set(service_env(services[name])), f"{name} lacks the instance variables"
    assert user_code["HEIMDALL_DATABASE_URL"].startswith("postgresql+psycopg://")
    assert "@timescaledb:5432/" in user_code["HEIMDALL_DATABASE_URL"]
    assert user_code["HEIMDALL_S3_ENDPOINT_URL"] == "http://minio:9000"
    assert user_code["DAGSTER_PG_HOST"] == "timescaledb"


def test_no_secret_in_the_compose_file(compose, env_example):
    """Secrets are ${VAR:?} references to docker/.env; .env.example holds placeholders only."""
    secret_names = [name for name in env_example if re.search(r"PASSWORD|SECRET", name)]
    assert secret_names
    text = (DOCKER / "docker-compose.yml").read_text()
    for name in secret_names:
        if not env_example[name]:
            continue  # optional secret (KiwiSDR password)
        assert env_example[name].startswith("change-me"), f".env.example {name} is not a placeholder"
        assert env_example[name] not in text
        assert f"${{{name}:?" in text, f"{name} is not required with ${{{name}:?...}}"
    for name, service in compose["services"].items():
        for key, value in service_env(service).items():
            if re.search(r"PASSWORD|SECRET", key) and value:
                assert value.startswith("${"), f"{name}.{key} is a literal, not a variable"


def test_migration_runs_once_before_the_services_that_use_the_database(compose):
    """Runs never migrate: the one-shot `migrate` service brings the schema to head, and what runs
    code against the database starts only after it exited successfully."""
    services = compose["services"]
    migrate = services["migrate"]
    assert migrate["command"] == ["heimdall", "db", "migrate"]
    assert migrate["depends_on"]["timescaledb"]["condition"] == "service_healthy"
    assert set(env_vars_read_by_code()) <= set(service_env(migrate)), "migrate builds the same resources"
    assert service_env(migrate)["HEIMDALL_DATABASE_URL"] == service_env(services["user_code"])["HEIMDALL_DATABASE_URL"]
    for name in ("user_code", "webserver", "daemon"):
        assert services[name]["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}, name
    from heimdall_pipeline.cli import build_parser

    args = build_parser().parse_args(migrate["command"][1:])  # the command exists as written
    assert (args.command, args.action) == ("db", "migrate")


def test_bucket_init_script_creates_versioned_bucket():
    script = (DOCKER / "minio" / "init-bucket.sh").read_text()
    assert 'mc mb --ignore-existing "heimdall/$HEIMDALL_S3_BUCKET"' in script
    assert 'mc version enable "heimdall/$HEIMDALL_S3_BUCKET"' in script
    init_db = (DOCKER / "postgres" / "init-databases.sh").read_text()
    assert "CREATE EXTENSION IF NOT EXISTS timescaledb" in init_db


def repeated_keys(path: Path) -> None:
    """YAML loaders keep the last of two equal keys without a word (a section pasted into a
    commented example once left an empty `run_launcher:` above the real one): refused here."""

    class Loader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            keys = [self.construct_object(key, deep=deep) for key, _ in node.value]
            repeated = sorted({key for key in keys if keys.count(key) > 1})
            if repeated:
                raise ValueError(f"{path}: key {', '.join(map(str, repeated))} appears more than once")
            return super().construct_mapping(node, deep=deep)

    yaml.load(path.read_text(), Loader=Loader)


def validate_instance_yaml(directory: Path) -> dict:
    """Dagster's own loading of a dagster.yaml (top-level schema), then each pluggable class's
    config against that class's schema (the top level accepts any dict for those)."""
    from dagster._config import process_config
    from dagster._core.instance.config import dagster_instance_config
    from dagster._serdes import class_from_code_pointer

    repeated_keys(directory / "dagster.yaml")
    config, _ = dagster_instance_config(str(directory))
    for section, pluggable in (("run_coordinator", config["run_coordinator"]), ("run_launcher", config["run_launcher"]),
                               ("storage", config["storage"]["custom"]), ("compute_logs", config["compute_logs"])):
        klass = class_from_code_pointer(pluggable["module"], pluggable["class"])
        result = process_config(klass.config_type(), pluggable.get("config") or {})
        if not result.success:
            raise ValueError(f"{section}: " + "; ".join(error.message for error in result.errors))
    return config


# One run per session at a time, whatever the session; receivers are never named (their channels
# are leases in the database: db/leases_repo.py).
SESSION_LIMIT = {"key": "heimdall/session", "value": {"applyLimitPerUniqueValue": True}, "limit": 1}


def test_the_four_configs_limit_sessions_without_naming_receivers():
    files = {"dagster.yaml": ("run_coordinator", "config", "tag_concurrency_limits"),
             "docker/dagster.yaml": ("run_coordinator", "config", "tag_concurrency_limits"),
             "deploy/dagster.production.yaml": ("run_coordinator", "config", "tag_concurrency_limits"),
             "deploy/helm/values.yaml": ("dagster", "dagsterDaemon", "runCoordinator", "config", "queuedRunCoordinator",
                                         "tagConcurrencyLimits")}
    for name, path in files.items():
        text = (settings.REPO_ROOT / name).read_text()
        node = yaml.safe_load(text)
        for part in path:
            node = node[part]
        assert SESSION_LIMIT in node, name
        assert "heimdall/receiver" not in text, f"{name} still names receivers"


def test_docker_dagster_yaml_passes_dagster_schema(monkeypatch, tmp_path):

    for name in env_vars_read_by_instance(DOCKER / "dagster.yaml"):
        monkeypatch.setenv(name, "5432" if name.endswith("PORT") else "x")
    shutil.copyfile(DOCKER / "dagster.yaml", tmp_path / "dagster.yaml")
    config = validate_instance_yaml(tmp_path)
    assert config["storage"]["custom"]["class"] == "PooledPostgresStorage"
    assert "postgres_db" in config["storage"]["custom"]["config"]
    assert config["run_coordinator"]["class"] == "QueuedRunCoordinator"
    assert config["run_launcher"]["class"] == "DefaultRunLauncher"
    assert config["compute_logs"]["class"] == "ThreadMirroredComputeLogManager"
    assert config["run_monitoring"]["enabled"] and config["run_retries"]["enabled"]
    limits = config["run_coordinator"]["config"]["tag_concurrency_limits"]
    local = yaml.safe_load((settings.REPO_ROOT / "dagster.yaml").read_text())
    assert limits == local["run_coordinator"]["config"]["tag_concurrency_limits"], "limits differ from the local dagster.yaml"
    assert limits == [SESSION_LIMIT]

    # The same validation refuses a broken file (so this test can fail).
    (tmp_path / "dagster.yaml").write_text((DOCKER / "dagster.yaml").read_text() + "run_launcher:\n")
    with pytest.raises(ValueError, match="key run_launcher appears more than once"):
        validate_instance_yaml(tmp_path)
    raw = yaml.safe_load((DOCKER / "dagster.yaml").read_text())
    raw["run_coordinator"]["config"]["max_concurrent_runs"] = "many"
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(ValueError, match="max_concurrent_runs"):
        validate_instance_yaml(tmp_path)
    raw = yaml.safe_load((DOCKER / "dagster.yaml").read_text())
    postgres_db = raw["storage"]["custom"]["config"]["postgres_db"]
    postgres_db["hostnam"] = postgres_db.pop("hostname")
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(ValueError, match="hostnam"):
        validate_instance_yaml(tmp_path)


@pytest.fixture()
def docker_compose() -> str:
    """Debian's docker-compose (validates the file without a Docker engine); bootstrap installs it."""
    found = shutil.which("docker-compose")
    if found is None:
        pytest.fail("docker-compose is not installed: `bash scripts/bootstrap.sh` installs Debian's package")
    return found


def test_docker_compose_config_validates(tmp_path, docker_compose):
    env_file = tmp_path / ".env"
    shutil.copyfile(DOCKER / ".env.example", env_file)
    command = [docker_compose, "-f", str(DOCKER / "docker-compose.yml"), "--env-file", str(env_file)]
    result = subprocess.run([*command, "config", "-q"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    # A missing secret is refused by name, before anything starts.
    env_file.write_text("\n".join(line for line in env_file.read_text().splitlines()
                                  if not line.startswith("HEIMDALL_DB_PASSWORD=")))
    result = subprocess.run([*command, "config", "-q"], capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "HEIMDALL_DB_PASSWORD" in result.stderr
