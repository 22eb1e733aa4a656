"""A private PostgreSQL 15 cluster with TimescaleDB, run as the `postgres` OS user."""

from __future__ import annotations

import hashlib
import os
import pwd
import subprocess
from dataclasses import dataclass
from pathlib import Path

from heimdall_pipeline.services.common import ServiceError, log_tail, read_pid, require_free_ports, run, stop_pid

PG_BIN = Path(os.environ.get("HEIMDALL_PG_BIN", "/usr/lib/postgresql/15/bin"))
OS_USER = "postgres"  # initdb refuses to run as root
SOCKET_PERMISSIONS = "unix_socket_permissions = 0700"  # the server's own user only (TCP is what we use)


def _as_postgres(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", OS_USER, "--", *cmd]
    return run(cmd, **kwargs)


def _reachable_by_postgres(path: Path) -> bool:
    if os.geteuid() != 0:
        return True
    return subprocess.run(["runuser", "-u", OS_USER, "--", "test", "-w", str(path)],
                          capture_output=True).returncode == 0


def let_server_through(folder: Path) -> None:
    """The runtime folder is private (0700); when the server runs as another OS user (we are
    root), only that user's group may pass through it to the cluster: mode 0710, group postgres
    (no listing, no reading; the cluster folder itself is the server's, 0700)."""
    if os.geteuid() == 0:
        os.chown(folder, -1, pwd.getpwnam(OS_USER).pw_gid)
        os.chmod(folder, 0o710)


def cluster_dir_for(home: Path) -> Path:
    """The cluster lives in the runtime folder, unless the postgres user cannot reach it
    (a checkout under /root, say): then in /var/lib/heimdall, keyed by the runtime folder."""
    home.mkdir(parents=True, exist_ok=True)
    candidate = home / "postgres"
    probe = home / "pg-access-probe"
    probe.mkdir(exist_ok=True)
    if os.geteuid() == 0:
        os.chown(probe, pwd.getpwnam(OS_USER).pw_uid, -1)
    reachable = _reachable_by_postgres(probe)
    probe.rmdir()
    if reachable:
        return candidate
    digest = hashlib.sha256(str(home).encode()).hexdigest()[:12]
    return Path("/var/lib/heimdall") / f"pg-{digest}"


@dataclass(frozen=True)
class PostgresCluster:
    data_dir: Path
    socket_dir: Path
    log_file: Path
    port: int
    admin_password: str
    app_user: str
    app_password: str
    databases: tuple[str, ...] = ("heimdall", "dagster")

    @property
    def pid_file(self) -> Path:
        return self.data_dir / "postmaster.pid"

    def pid(self) -> int | None:
        return read_pid(self.pid_file)

    def url(self, database: str, *, admin: bool = False, driver: str = "postgresql+psycopg") -> str:
        user, password = ("postgres", self.admin_password) if admin else (self.app_user, self.app_password)
        return f"{driver}://{user}:{password}@127.0.0.1:{self.port}/{database}"

    def _ensure_dirs(self) -> None:
        for path in (self.data_dir.parent, self.socket_dir, self.log_file.parent):
            path.mkdir(parents=True, exist_ok=True)
        for path in (self.socket_dir, self.log_file.parent):  # the server's sockets and log: its own
            os.chmod(path, 0o700)
            if os.geteuid() == 0:
                os.chown(path, pwd.getpwnam(OS_USER).pw_uid, -1)

    def initdb(self) -> bool:
        if (self.data_dir / "PG_VERSION").exists():
            return False
        self._ensure_dirs()
        self.data_dir.mkdir(mode=0o700, exist_ok=True)
        if os.geteuid() == 0:
            os.chown(self.data_dir, pwd.getpwnam(OS_USER).pw_uid, -1)
        pwfile = self.data_dir.parent / f".pw-{os.getpid()}"
        pwfile.write_text(self.admin_password + "\n")
        os.chmod(pwfile, 0o644)
        try:
            _as_postgres([str(PG_BIN / "initdb"), "-D", str(self.data_dir), "-U", "postgres",
                          f"--pwfile={pwfile}", "--auth-local=scram-sha-256", "--auth-host=scram-sha-256",
                          "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"])
        finally:
            pwfile.unlink(missing_ok=True)
        conf = self.data_dir / "postgresql.auto.conf"
        with open(conf, "a") as handle:
            handle.write(
                "\n# Heimdall embedded cluster: loopback only, own port and socket\n"
                "listen_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{self.socket_dir}'\n"
                f"{SOCKET_PERMISSIONS}\n"
                "shared_preload_libraries = 'timescaledb'\n"
                "timescaledb.telemetry_level = off\n"
                "max_connections = 200\n"
                "shared_buffers = 256MB\n"
                "synchronous_commit = off\n"
            )
        return True

    def _private_socket(self) -> None:
        """Clusters created before the setting existed get it on their next start."""
        conf = self.data_dir / "postgresql.auto.conf"
        if SOCKET_PERMISSIONS not in conf.read_text():
            with open(conf, "a") as handle:
                handle.write(f"{SOCKET_PERMISSIONS}\n")

    def start(self, timeout_s: float = 60.0) -> bool:
        """Creates the cluster if needed and starts it unless already running."""
        created = self.initdb()
        started = False
        if self.pid() is None:
            self._private_socket()
            require_free_ports("PostgreSQL", {"PostgreSQL": self.port}, "HEIMDALL_PG_PORT")
            self._ensure_dirs()
            try:
                _as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(self.data_dir), "-l", str(self.log_file),
                              "-o", f"-p {self.port}", "-w", "-t", str(int(timeout_s)), "start"])
            except ServiceError as exc:  # pg_ctl only says "see the log": the reason is there
                raise ServiceError(f"{exc}\nlast lines of {self.log_file}:\n{log_tail(self.log_file, 8)}") from exc
            started = True
        self._provision(created)
        self.check()
        return started

    def _provision(self, created: bool) -> None:
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.url("postgres", admin=True, driver="postgresql"), autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (self.app_user,)).fetchone()
            verb = "ALTER" if exists else "CREATE"
            conn.execute(sql.SQL(verb + " ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(self.app_user), sql.Literal(self.app_password)))
            for database in self.databases:
                if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone():
                    conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(
                        sql.Identifier(database), sql.Identifier(self.app_user)))
        # Created by the admin so the database has it before the first migration runs (the app
        # role, owner of the database, could create this trusted extension too).
        with psycopg.connect(self.url("heimdall", admin=True, driver="postgresql"), autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")

    def create_database(self, name: str, owner: str, *, timescaledb: bool = False) -> None:
        """A private database (benchmarks, UI tests); the admin creates the extension in it."""
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.url("postgres", admin=True, driver="postgresql"), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name), sql.Identifier(owner)))
        if timescaledb:
            with psycopg.connect(self.url(name, admin=True, driver="postgresql"), autocommit=True) as conn:
                conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")

    def drop_database(self, name: str) -> None:
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.url("postgres", admin=True, driver="postgresql"), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    def check(self) -> str:
        """A real SELECT as the application role; returns the server and TimescaleDB versions."""
        import psycopg

        try:
            with psycopg.connect(self.url("heimdall", driver="postgresql"), connect_timeout=5) as conn:
                version = conn.execute("SHOW server_version").fetchone()[0]
                ts = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'").fetchone()
        except psycopg.OperationalError as exc:
            raise ServiceError(f"PostgreSQL on 127.0.0.1:{self.port} refused a query: {exc}") from exc
        return f"PostgreSQL {version}, TimescaleDB {ts[0] if ts else 'absent'}"

    def stop(self) -> bool:
        pid = self.pid()
        if pid is None:
            return False
        try:
            _as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "-w", "stop"])
        except ServiceError:
            stop_pid(pid, "PostgreSQL")
        return True
