"""The `heimdall` command: local services, receivers, sessions, the main job, verification."""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys

from heimdall_pipeline import settings
from heimdall_pipeline.outages import outage_message
from heimdall_pipeline.services.common import PRIVATE_UMASK, ServiceError, run_until_signalled
from heimdall_pipeline.text import clip_lines, shown


def _services(args: argparse.Namespace) -> int:
    from heimdall_pipeline.services import manager

    if args.action == "worker":
        return _session_worker()
    if args.action == "up":
        services = manager.up()
        for name, state in manager.status().report.items():
            print(f"{name}: {state}")
        print(f"credentials (local-only): {settings.services_env_path()}")
        print(f"use them in a shell: eval \"$(heimdall services env)\"  (DAGSTER_HOME={services.dagster_home})")
    elif args.action == "down":
        stopped = manager.down()
        print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
    elif args.action == "status":
        current = manager.status()
        for name, state in current.report.items():
            print(f"{name}: {state}")
        if not current.healthy:
            print(f"not running or unhealthy: {', '.join(current.down)} (start with: heimdall services up)", file=sys.stderr)
            return 1
    elif args.action == "env":
        for name, value in manager.exported_env().items():
            print(f"export {name}={shlex.quote(value)}")
    return 0


def _resources() -> dict:
    from heimdall_pipeline.resources import build_resources

    return build_resources(os.environ)


def _checked(engine):
    """The database, checked first: a server that is down is reported at once (the Dagster
    instance, opened after it, would retry its own connection for seconds first)."""
    with engine.connect():
        pass
    return engine


def _engine():
    return _checked(_resources()["database"].engine())


def _db(args: argparse.Namespace) -> int:
    from heimdall_pipeline.db.engine import make_engine
    from heimdall_pipeline.db.migrations import migrate
    from heimdall_pipeline.db.receivers_repo import seed_default_receivers
    from heimdall_pipeline.resources import build_resources

    # the one command that takes the database as it is (every other one checks it is at head)
    engine = make_engine(build_resources(os.environ)["database"].url)
    print(migrate(engine).summary())
    print(f"default receivers added: {seed_default_receivers(engine)}")
    return _upgrade_dagster_instance(engine)


def _upgrade_dagster_instance(engine) -> int:
    """Sessions stored before capture partitions, brought into them on the Dagster instance."""
    from dagster import DagsterInstance

    from heimdall_pipeline.lifecycle import upgrade_partitions
    from heimdall_pipeline.resources import build_resources

    if not os.environ.get("DAGSTER_HOME"):
        print("Dagster instance: DAGSTER_HOME is not set, partitions not checked")
        return 0
    with DagsterInstance.get() as instance:
        result = upgrade_partitions(instance, engine, build_resources(os.environ)["iq_store"])
    if result is None:
        print("Dagster instance: partitions up to date")
        return 0
    print(f"Dagster instance: {len(result.restored)} session(s) moved to capture partitions, "
          f"{sum(result.moved.values())} materializations moved, {sum(result.reported.values())} re-reported "
          "from S3/TimescaleDB")
    for pkey, problem in result.problems.items():
        print(f"NOT moved {pkey}: {problem}")
    return 1 if result.problems else 0


def _printable(text: str) -> str:
    """Control characters shown escaped (rows stored before names were checked may hold them)."""
    from heimdall_pipeline.receivers import has_control_characters

    return "".join(f"\\x{ord(ch):02x}" if has_control_characters(ch) else ch for ch in text)


def _receivers(args: argparse.Namespace) -> int:
    from heimdall_pipeline.db import receivers_repo as repo
    from heimdall_pipeline.receivers import Receiver

    if args.action == "add" and args.kind == "openwebrx":
        return _add_openwebrx(args)
    if args.action != "list" and not args.id:
        raise ValueError(f"receivers {args.action}: give the receiver id (heimdall receivers {args.action} ID ...)")
    if args.action == "add":
        missing = [flag for flag, value in (("--url", args.url), ("--kind", args.kind), ("--lat", args.lat),
                                            ("--lon", args.lon)) if value is None]
        if missing:
            raise ValueError(f"receivers add {args.id}: missing {', '.join(missing)}")
    engine = _engine()
    repo.seed_default_receivers(engine)
    if args.action == "list":
        print(f"{'id':<10} {'kind':<10} {'active':<6} {'ch':>2}  {'lat':>7} {'lon':>8}  name / url")
        for r in repo.list_receivers(engine):
            print(_printable(f"{r.id:<10} {r.kind:<10} {str(r.is_active):<6} {r.max_channels:>2}  {r.latitude:>7.3f} "
                             f"{r.longitude:>8.3f}  {r.name} ({r.location_name}) {r.url}"))
        return 0
    if args.action == "add":
        receiver = repo.add_receiver(engine, Receiver(
            id=args.id, name=args.name or args.id.upper(), url=args.url, kind=args.kind,
            location_name=args.location or "", latitude=args.lat, longitude=args.lon,
            altitude_m=args.alt or 0.0, max_channels=4 if args.channels is None else args.channels))
        print(f"added receiver {receiver.id}")
        return 0
    if args.action in ("disable", "enable"):
        repo.set_receiver_active(engine, args.id, args.action == "enable")
        print(f"receiver {args.id} {args.action}d")
        return 0
    changes = {name: value for name, value in (
        ("name", args.name), ("url", args.url), ("kind", args.kind), ("location_name", args.location),
        ("latitude", args.lat), ("longitude", args.lon), ("altitude_m", args.alt), ("max_channels", args.channels),
    ) if value is not None}
    receiver = repo.update_receiver(engine, args.id, **changes)
    print(f"updated receiver {receiver.id}: {', '.join(changes) or 'nothing changed'}")
    return 0


def _add_openwebrx(args: argparse.Namespace) -> int:
    """`receivers add --kind openwebrx --url URL [ID]`: name, position and frequency range from the
    receiver's status.json where not given."""
    import asyncio

    from heimdall_pipeline.db import receivers_repo as repo
    from heimdall_pipeline.sources.kinds.openwebrx import receiver_from_status
    from heimdall_pipeline.sources.openwebrx import OpenWebRXError, fetch_status
    from heimdall_pipeline.sources.registry import get_source
    from heimdall_pipeline.validation import validate_receiver

    if args.url is None:
        raise ValueError("receivers add --kind openwebrx: missing --url (the receiver's page, e.g. http://host:8073/)")
    try:
        status = asyncio.run(fetch_status(args.url))
    except OpenWebRXError as exc:
        raise ValueError(f"receivers add: cannot read the status of {args.url}: {exc}") from exc
    receiver = validate_receiver(receiver_from_status(args.url, status, id=args.id, name=args.name,
                                                      location_name=args.location, latitude=args.lat,
                                                      longitude=args.lon, altitude_m=args.alt,
                                                      max_channels=args.channels))
    engine = _engine()
    repo.seed_default_receivers(engine)
    receiver = repo.add_receiver(engine, receiver)
    low, high = get_source(receiver.kind).frequency_range_hz(receiver)
    print(_printable(f"added receiver {receiver.id}: {receiver.name} ({receiver.location_name}) at "
                     f"{receiver.latitude:.4f}, {receiver.longitude:.4f}, {low / 1e6:g}-{high / 1e6:g} MHz"))
    return 0


def _session_fields(args: argparse.Namespace) -> dict:
    fields = {"center_frequency_hz": args.freq, "duration_s": args.duration, "sample_rate_hz": args.sample_rate,
              "receiver_ids": () if args.receivers is None else args.receivers, "source_kind": args.source}
    if args.key:
        fields["session_key"] = args.key
    if getattr(args, "at", None):
        fields["scheduled_for"] = args.at
    return fields


def _session(args: argparse.Namespace) -> int:
    from heimdall_pipeline.db.receivers_repo import seed_default_receivers
    from heimdall_pipeline.session_requests import request_session

    engine = _engine()
    seed_default_receivers(engine)
    session = request_session(engine, requested_by=f"cli:{os.environ.get('USER', 'unknown')}", **_session_fields(args))
    print(f"session {session.session_key} requested: {session.center_frequency_hz:.0f} Hz, {session.duration_s:g} s, "
          f"{session.sample_rate_hz:g} S/s, receivers {', '.join(session.receiver_ids)}")
    print("the session_request_sensor launches it (dagster dev / dagster-daemon running), "
          f"or run it now: heimdall session run {session.session_key}")
    return 0


def _session_run(args: argparse.Namespace) -> int:
    from dagster import DagsterInstance

    from heimdall_pipeline.db.captures_repo import capture_timing, outcomes_for_session
    from heimdall_pipeline.db.measurements_repo import measurements_for_session
    from heimdall_pipeline.runner import run_session
    from heimdall_pipeline.storage.layout import iq_object_key, metadata_object_key

    from heimdall_pipeline.db.sessions_repo import InvalidTransitionError, UnknownSessionError

    engine = _engine()
    try:
        with DagsterInstance.get() as instance:
            result = run_session(instance, engine, args.key)
    except (InvalidTransitionError, UnknownSessionError) as exc:  # e.g. already launched: nothing was run
        print(f"heimdall session run: refused: {clip_lines(exc)}", file=sys.stderr)
        return 2
    rows = measurements_for_session(engine, args.key)
    bucket = settings.setting("HEIMDALL_S3_BUCKET")
    # The session's status is the outcome (a run can succeed with no receiver measured).
    print(f"\nsession {args.key}: {result.status}" + (f" ({result.status_reason})" if result.status_reason else ""))
    print(f"  Dagster runs: session_job {', '.join(result.session_run_ids)}, session_analysis_job "
          f"{result.analysis_run_id}" + ("" if result.success else " (not all succeeded)"))
    print(f"  S3 ({settings.setting('HEIMDALL_S3_ENDPOINT_URL')}, bucket {bucket}):")
    for row in rows:
        print(f"    {iq_object_key(args.key, row.receiver_id)}  +  {metadata_object_key(args.key, row.receiver_id)}")
    timing = capture_timing(outcomes_for_session(engine, args.key).values())
    if timing["first_sample_spread_ms"] is not None:
        print(f"  first-sample spread {timing['first_sample_spread_ms']:.3f} ms over {timing['captures_timed']} "
              f"captures; all of them cover {100 * timing['common_fraction']:.2f} % of the shortest")
    print(f"  TimescaleDB table measurements: {len(rows)} rows")
    print(f"    {'receiver':<8} {'SNR dB':>7} {'signal':>14} {'noise':>14} {'offset Hz':>10}")
    for row in rows:
        snr = f"{row.snr_db:7.1f}" if row.snr_db is not None else "   none"
        offset = f"{row.frequency_offset_hz:10.1f}" if row.frequency_offset_hz is not None else "         -"
        print(f"    {row.receiver_id:<8} {snr} {row.power_text('signal'):>14} {row.power_text('noise'):>14} {offset}")
    if result.status != "succeeded" and result.outage:  # a service was lost under the runs
        print(f"heimdall: {result.outage}", file=sys.stderr)
        return 2
    return 0 if result.status == "succeeded" else 1


def _session_import(args: argparse.Namespace) -> int:
    """Checks the files here, uploads them as a batch and imports it the way the sensor does."""
    from pathlib import Path

    from heimdall_pipeline.db.receivers_repo import list_receivers
    from heimdall_pipeline.db.sessions_repo import get_session
    from heimdall_pipeline.recordings import bucket, importer
    from heimdall_pipeline.recordings.plan import RecordingImportError, plan_import, read_import_files
    from heimdall_pipeline.sessions import new_session_key

    resources = _resources()
    engine, store = _checked(resources["database"].engine()), resources["iq_store"]
    batch = args.key or new_session_key(prefix="imp")
    try:
        # every file is checked before anything is uploaded or stored
        files, positions = read_import_files([Path(p) for p in args.files],
                                             Path(args.receivers) if args.receivers else None, batch)
        plan_import(batch, files, list_receivers(engine), positions=positions, receiver_name=args.receiver,
                    untimed=args.untimed)
        bucket.upload_batch(store, batch, files, positions, untimed=args.untimed)
        session = importer.import_batch(engine, store, batch, receiver_name=args.receiver,
                                        requested_by=f"cli:{os.environ.get('USER', 'unknown')}")
    except RecordingImportError as exc:
        print(f"heimdall: {clip_lines(exc)}", file=sys.stderr)
        return 2
    print(f"session {session.session_key}: {len(session.receiver_ids)} recording(s) of "
          f"{session.center_frequency_hz:g} Hz from {session.scheduled_for.isoformat()}, batch incoming/{batch}/")
    code = _session_run(argparse.Namespace(key=session.session_key))
    if code == 2:  # refused, or a service went down: said in one line already
        return code
    if bucket.finish_batch(store, get_session(engine, session.session_key)):
        print(f"  uploads verified against the stored captures (SHA-256) and moved to imported/{batch}/")
    else:
        print(f"  uploads stay in incoming/{batch}/: not every capture is stored and verified yet")
    return code


def _session_export(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from heimdall_pipeline.db.receivers_repo import list_receivers
    from heimdall_pipeline.db.sessions_repo import get_session
    from heimdall_pipeline.recordings.export import export_capture
    from heimdall_pipeline.storage.captures import load_capture

    resources = _resources()
    engine, store = resources["database"].engine(), resources["iq_store"]
    session = get_session(engine, args.key)
    if session is None:
        print(f"heimdall: unknown session {shown(args.key)}", file=sys.stderr)
        return 2
    directory = Path(args.kiwi_wav)
    directory.mkdir(parents=True, exist_ok=True)
    registry = {r.id: r for r in list_receivers(engine)}
    scales = {}
    for receiver_id in session.receiver_ids:
        capture = load_capture(store, session.session_key, receiver_id)
        if capture is None:
            print(f"  {receiver_id}: no stored capture")
            continue
        exported = export_capture(directory, capture, registry[receiver_id])
        scales[exported.path.name] = {"receiver_id": receiver_id, "scale": exported.scale,
                                      "power_unit": capture.power_unit}
        note = "" if exported.scale == 1.0 else f" (samples x {exported.scale:.6g} to fit int16 full scale)"
        print(f"  {exported.path}{note}")
    sidecar = directory / f"{session.session_key}_export.json"
    sidecar.write_text(json.dumps({"session_key": session.session_key, "files": scales}, indent=2) + "\n")
    print(f"session {session.session_key}: {len(scales)} file(s) written; scale factors in {sidecar}")
    return 0


def _session_lifecycle(args: argparse.Namespace) -> int:
    """`heimdall session archive` / `restore` (heimdall_pipeline/lifecycle.py)."""
    from dagster import DagsterInstance

    from heimdall_pipeline.lifecycle import archive_sessions, restore_sessions

    resources = _resources()
    engine = _checked(resources["database"].engine())
    with DagsterInstance.get() as instance:
        if args.session_command == "archive":
            days = args.older_than_days
            result = archive_sessions(instance, engine, days, dry_run=args.dry_run)
            verb = "would archive" if result.dry_run else "archived"
            print(f"{verb} {len(result.archived)} session(s) older than {days:g} days"
                  + (f": {', '.join(result.archived)}" if result.archived else ""))
            if result.skipped_in_progress:
                print(f"skipped (run in progress): {', '.join(result.skipped_in_progress)}")
            print("data kept: S3 objects, TimescaleDB rows and Dagster's event log are untouched")
            return 0
        result = restore_sessions(instance, engine, args.keys, resources["iq_store"])
        for key in result.restored:
            print(f"restored {key}: {result.from_event_log[key]} materializations still in the event log, "
                  f"{result.reported[key]} re-reported from S3/TimescaleDB")
        for pkey, problem in result.problems.items():
            print(f"NOT restored {pkey}: {problem}")
        return 1 if result.problems else 0


def _main_job(args: argparse.Namespace) -> int:
    """The README's main command: services up, schema, one whole session through Dagster."""
    from heimdall_pipeline.services import manager
    from heimdall_pipeline.session_requests import request_session

    services = manager.up()
    os.environ.update(services.env)
    _db(args)
    session = request_session(_engine(), requested_by="heimdall main", **_session_fields(args))
    print(f"session {session.session_key} requested on {len(session.receiver_ids)} receivers")
    code = _session_run(argparse.Namespace(key=session.session_key))
    print("\nOpen the UI on the same instance:  heimdall dev   (then http://127.0.0.1:3000)")
    if args.ui:
        return _dev(args)
    return code


def _dev(args: argparse.Namespace) -> int:
    """dagster dev (webserver + daemon) on the embedded instance. Its temporary files (the code
    servers' unix sockets) go to a private folder of the runtime folder, removed when it stops."""
    import shutil
    import tempfile

    from heimdall_pipeline.services import manager

    services = manager.up()
    scratch = services.home / "tmp"
    scratch.mkdir(mode=0o700, exist_ok=True)
    temp = tempfile.mkdtemp(prefix="dev-", dir=scratch)
    env = {**os.environ, **services.env, "TMPDIR": temp}
    cmd = [os.path.join(os.path.dirname(sys.executable), "dagster"), "dev", "-w",
           str(settings.REPO_ROOT / "workspace.yaml"), "-h", "127.0.0.1", "-p", str(getattr(args, "port", 3000))]
    print("starting: " + " ".join(cmd), flush=True)
    try:
        return run_until_signalled(cmd, env, "dagster dev")
    finally:
        shutil.rmtree(temp, ignore_errors=True)


def _warm_session_worker() -> None:
    """What a fresh `heimdall session run` loads or pays for on first use, done once in the
    worker: every module of the package, the heavy libraries they import where they are used,
    the jobs' definitions, boto3's S3 model, matplotlib's fonts. Nothing that opens a connection or a thread."""
    import importlib
    import io
    import pkgutil

    import heimdall_pipeline

    # every module of the package but the bench and the Alembic revisions (not the command's)
    for module in pkgutil.walk_packages(heimdall_pipeline.__path__, "heimdall_pipeline."):
        if not module.name.startswith(("heimdall_pipeline.bench", "heimdall_pipeline.db.alembic")):
            importlib.import_module(module.name)
    for name in ("scipy.signal", "scipy.fft", "scipy.stats", "scipy.optimize", "scipy.spatial", "scipy.ndimage",
                 "matplotlib.figure", "matplotlib.backends.backend_agg", "matplotlib.image", "sigmf", "jsonschema",
                 "aiohttp", "psycopg", "sqlalchemy.dialects.postgresql.psycopg", "dagster_postgres"):
        importlib.import_module(name)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from heimdall_pipeline.definitions import defs

    for job in ("session_job", "session_analysis_job"):
        defs.resolve_job_def(job)
    from heimdall_pipeline.storage.object_store import s3_client

    # boto3's default session loads the S3 model once; every client the children make shares it
    s3_client("http://127.0.0.1:9", "warm-up", "warm-up")
    figure = Figure(figsize=(2, 1))
    figure.add_subplot().plot([0, 1], [0, 1], label="warm")
    figure.legend()
    FigureCanvasAgg(figure).print_png(io.BytesIO())


def _session_worker() -> int:
    from heimdall_pipeline.services.worker_process import SessionWorkerProcess
    from heimdall_pipeline.session_worker import serve

    serve(SessionWorkerProcess.of_home(settings.heimdall_home()).socket_path, main, _warm_session_worker)
    return 0


def _delegate(module: str, args: argparse.Namespace) -> int:
    """Commands whose code lives in its own module expose `run(args) -> int`."""
    import importlib

    return importlib.import_module(module).run(args)


def _source_kinds() -> list[str]:
    from heimdall_pipeline.sources.registry import source_kinds

    return list(source_kinds())


def _add_session_arguments(parser: argparse.ArgumentParser, *, required: bool) -> None:
    parser.add_argument("--freq", type=float, required=required, default=None if required else 7.1e6,
                        help="centre frequency in Hz (e.g. 7.1e6, 145.5e6)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds (default 10)")
    parser.add_argument("--sample-rate", type=float, default=12000.0, help="samples/s (default 12000)")
    parser.add_argument("--receivers", help="comma-separated receiver ids (default: all active)")
    parser.add_argument("--source", default="auto", choices=["auto", *_source_kinds()],
                        help="auto: each receiver by its kind (default)")
    parser.add_argument("--key", help="session key (default: generated)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="heimdall", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    services = commands.add_parser("services", help="embedded S3 server, PostgreSQL/TimescaleDB, Dagster home")
    services.add_argument("action", choices=["up", "down", "status", "env", "worker"],
                          help="worker: run the session worker in the foreground (`up` starts it)")
    services.set_defaults(handler=_services)

    db = commands.add_parser("db", help="database schema: migrate = upgrade to the head Alembic revision")
    db.add_argument("action", choices=["migrate"])
    db.set_defaults(handler=_db)

    receivers = commands.add_parser("receivers", help="the receiver registry")
    receivers.add_argument("action", choices=["list", "add", "edit", "disable", "enable"])
    receivers.add_argument("id", nargs="?")
    receivers.add_argument("--kind", choices=_source_kinds())
    for flag, kind in (("--name", str), ("--url", str), ("--location", str),
                       ("--lat", float), ("--lon", float), ("--alt", float), ("--channels", int)):
        receivers.add_argument(flag, type=kind)
    receivers.set_defaults(handler=_receivers)

    session = commands.add_parser("session", help="acquisition sessions")
    session_commands = session.add_subparsers(dest="session_command", required=True)
    request = session_commands.add_parser("request", help="request a session (the sensor launches it)")
    _add_session_arguments(request, required=True)
    request.add_argument("--at", help="ISO-8601 UTC start time (default: now)")
    request.set_defaults(handler=_session)
    run = session_commands.add_parser("run", help="run a requested session now (in a fork of the session worker "
                                                  "when it runs, else in this process)")
    run.add_argument("key")
    run.set_defaults(handler=_session_run)
    imports = session_commands.add_parser(
        "import", help="import kiwirecorder IQ files (one frequency, overlapping in time) as one session")
    imports.add_argument("files", nargs="+", help="YYYYMMDDTHHMMSSZ_<frequency Hz>_<receiver>_iq.wav files")
    imports.add_argument("--receivers", help="positions file (receivers.json) for receivers not yet registered")
    imports.add_argument("--receiver", help="station name of a single file named without one (kiwirecorder's default)")
    imports.add_argument("--key", help="session key = upload batch name (default: generated)")
    imports.add_argument("--untimed", action="store_true",
                         help="accept files without GNSS time (last_gps_solution 255): stored and measured, marked "
                              "untimed, refused by TDoA")
    imports.set_defaults(handler=_session_import)
    export = session_commands.add_parser("export", help="write a session's captures as kiwirecorder IQ files")
    export.add_argument("key")
    export.add_argument("--kiwi-wav", required=True, metavar="DIR", help="directory for the .wav files")
    export.set_defaults(handler=_session_export)

    main_job = commands.add_parser("main", help="services up, then one whole session through Dagster")
    _add_session_arguments(main_job, required=False)
    main_job.add_argument("--ui", action="store_true", help="keep the Dagster UI running afterwards")
    main_job.set_defaults(handler=_main_job)

    archive = session_commands.add_parser("archive", help="archive sessions older than a window (data kept)")
    archive.add_argument("--older-than-days", type=float, required=True)
    archive.add_argument("--dry-run", action="store_true")
    archive.set_defaults(handler=_session_lifecycle)
    restore = session_commands.add_parser("restore", help="bring archived sessions' partitions back")
    restore.add_argument("keys", nargs="+")
    restore.set_defaults(handler=_session_lifecycle)

    verify = commands.add_parser("verify", help="check stored objects against measurement rows (exit 0 "
                                                "consistent, 1 mismatches, 2 could not check)")
    verify.add_argument("sessions", nargs="*", help="session keys (default: all)")
    verify.add_argument("--since", help="only sessions scheduled at/after this ISO time")
    verify.add_argument("--until", help="only sessions scheduled before this ISO time")
    verify.add_argument("--repair", action="store_true",
                        help="remove spectrum PNGs without capture and unfinished uploads of finished sessions")
    verify.set_defaults(handler=lambda a: _delegate("heimdall_pipeline.verify", a))

    bench = commands.add_parser("bench", help="benchmarks with same-run baselines")
    bench.add_argument("--json", help="also write the results as JSON to this path")
    bench.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    bench.add_argument("--scale", action="store_true", help="partition-scale figures (1k/10k/50k sessions)")
    bench.add_argument("--repeat", type=int, default=5)
    bench.add_argument("--only", action="append", metavar="FIGURE",
                       help="measure only these figures (repeatable): metrics, session, io, upsert, backfill, rss, import")
    bench.set_defaults(handler=lambda a: _delegate("heimdall_pipeline.bench", a))

    dev = commands.add_parser("dev", help="Dagster UI and daemon on the embedded instance")
    dev.add_argument("--port", type=int, default=3000)
    dev.set_defaults(handler=_dev)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command != "services":
        settings.load_embedded_env()
    # Libraries' warnings (dagster-postgres retrying a lost server) are not the command's output:
    # an outage is said once, in the command's own line.
    logging.getLogger().setLevel(logging.ERROR)
    # What the command and its Dagster processes write is owner only (exported files are the user's).
    previous_umask = os.umask(PRIVATE_UMASK)
    if args.handler is _session_export:
        os.umask(previous_umask)
    try:
        return args.handler(args)
    except (ServiceError, ValueError, KeyError, RuntimeError) as exc:
        print(f"heimdall: {outage(exc) or clip_lines(exc)}", file=sys.stderr)
        return 2
    except Exception as exc:  # a service down or dying mid-command: one line, never a traceback
        message = outage(exc)
        if message is None:
            raise
        print(f"heimdall: {message}", file=sys.stderr)
        return 2
    finally:
        os.umask(previous_umask)


def outage(exc: BaseException) -> str | None:
    """The one-line outage message of an error (service and reason), from the configured endpoints."""
    return outage_message(exc, s3_endpoint=os.environ.get("HEIMDALL_S3_ENDPOINT_URL"),
                          bucket=os.environ.get("HEIMDALL_S3_BUCKET"))


def console_main() -> None:
    """The `heimdall` command: main() (for `heimdall session run`, in a child of the session worker
    when it can stand in for this process: session_worker.py), then an exit that skips the interpreter's teardown. Each
    command has closed what it opened by then (connections, pools, files, child processes); what
    is left is freeing the modules of Dagster, scipy and matplotlib object by object, 0.7-1 s of
    a `heimdall session run` (bench session_cli). An exception still ends the usual way, and so
    does a process under a profiler or tracer (cProfile, coverage), which writes its data at exit."""
    from heimdall_pipeline.services.worker_process import SessionWorkerProcess
    from heimdall_pipeline.session_worker import forward

    code = forward(sys.argv[1:], SessionWorkerProcess.of_home(settings.heimdall_home()).socket_path)
    if code is None:
        code = main()
    if sys.getprofile() is not None or sys.gettrace() is not None:
        sys.exit(code)
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing more can be said
            pass
    os._exit(code)


if __name__ == "__main__":
    console_main()
