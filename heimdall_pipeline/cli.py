"""The `heimdall` command: local services, receivers, sessions, the main job, verification."""

from __future__ import annotations

import argparse
import shlex
import sys

from heimdall_pipeline import settings
from heimdall_pipeline.services import manager
from heimdall_pipeline.services.common import ServiceError


def _services(args: argparse.Namespace) -> int:
    if args.action == "up":
        services = manager.up()
        for name, state in manager.status().items():
            print(f"{name}: {state}")
        print(f"credentials (local-only): {settings.services_env_path()}")
        print(f"use them in a shell: eval \"$(heimdall services env)\"  (DAGSTER_HOME={services.dagster_home})")
    elif args.action == "down":
        stopped = manager.down()
        print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
    elif args.action == "status":
        for name, state in manager.status().items():
            print(f"{name}: {state}")
    elif args.action == "env":
        for name, value in manager.exported_env().items():
            print(f"export {name}={shlex.quote(value)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="heimdall", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    services = commands.add_parser("services", help="embedded S3 server, PostgreSQL/TimescaleDB, Dagster home")
    services.add_argument("action", choices=["up", "down", "status", "env"])
    services.set_defaults(handler=_services)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command != "services":
        settings.load_embedded_env()
    try:
        return args.handler(args)
    except (ServiceError, ValueError) as exc:
        print(f"heimdall: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
