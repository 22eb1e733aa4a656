"""`heimdall bench`: measured speed and memory against the seed's targets, each figure with a
baseline of the same work done with the raw libraries in the same run.

Figures (medians of --repeat runs, at least 5, with min/max):
  metrics_short/nominal/long  compute_metrics of one capture (1, 10, 60 s at 12 kS/s)
                              vs one scipy.signal.welch + one FFT   target <= 20 ms (10 s), <= 3x
  session_end_to_end          one 7-receiver simulated session through Dagster in-process
                              vs the same work as plain calls         target <= 2 s, <= 1.5x
  io_manager_write            S3IQIOManager write of 7 captures (~1 MB .npy each)
                              vs raw boto3 put_object of the same bytes  target >= 0.8x raw MB/s
  upsert_rows                 upsert_measurements vs psycopg COPY into the same hypertable
                                                                      target >= 20,000 rows/s, >= 0.8x COPY
  backfill_single_run         receiver_metrics backfill of 100 sessions x 7 receivers as one run
                              vs one run per partition (10 measured, extrapolated)  target >= 10x
  session_peak_rss            peak RSS added by one session (child process) vs IQ bytes  target <= 2x
  import_time                 importing the code location in a fresh process
                              vs importing dagster + dagster_aws.s3 alone   target <= 1.25x
  tdoa_real                   TDoA of the shared DCF77 recordings (test data in heimdall_pipeline_tests/data): error km,
                              pair lag errors us, solve time; vs hcab14/TDoA's 6.6 km  target <= 2 km
                              and solve time (3 x 30 s)                  target <= 1 s
  tdoa_sim                    TDoA of 30 simulated transmitters at 10 dB SNR: median error km,
                              95 % coverage            target median <= 1 km, coverage >= 90 %
  tdoa_sim_biased             200 trials with per-receiver timing offsets within +-30 us: 95 %
                              coverage, median error   target coverage >= 93 %

Also runnable as `python -m heimdall_pipeline.bench [--quick] [--json PATH] [--repeat N]`.
Everything the benchmark writes (sessions, measurement rows, S3 objects with all their versions)
is removed at the end.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import time
import traceback
import warnings


def _scale(args: argparse.Namespace) -> int:
    if importlib.util.find_spec("heimdall_pipeline.bench.scale") is None:
        print("heimdall bench --scale: the partition-scale benchmark (heimdall_pipeline.bench.scale) "
              "is not available in this checkout")
        return 2
    from heimdall_pipeline.bench import scale

    return scale.run(args)


def run(args: argparse.Namespace) -> int:
    if getattr(args, "scale", False):
        return _scale(args)
    warnings.filterwarnings("ignore")
    from heimdall_pipeline import settings

    settings.load_embedded_env()
    from heimdall_pipeline.bench import figures as F
    from heimdall_pipeline.bench import report

    started = time.perf_counter()
    quick = bool(getattr(args, "quick", False))
    # at least 5 repetitions for real figures; --quick (smoke test) may ask for fewer
    repeat_n = max(1 if quick else 5, int(getattr(args, "repeat", 5) or 5))
    sizes = F.Sizes.quick() if quick else F.Sizes.full()
    info = report.machine_info()
    report.print_machine(info)
    print(f"sizes ({'quick' if quick else 'full'}): {sizes}; repetitions: {repeat_n}")

    bench = F.Bench(sizes, repeat_n, quick)
    results: list = []
    errors: dict[str, str] = {}
    steps = [("metrics", F.metrics_figures), ("session", F.session_figure), ("session_cli", F.session_cli_figure),
             ("io", F.io_figure),
             ("upsert", F.upsert_figure), ("backfill", F.backfill_figure), ("rss", F.rss_figure),
             ("import", F.import_time_figure), ("tdoa_real", F.tdoa_real_figure), ("tdoa_sim", F.tdoa_sim_figure)]
    only = set(getattr(args, "only", None) or [])
    try:
        for name, fn in steps:
            if only and name not in only:
                continue
            t0 = time.perf_counter()
            print(f"measuring {name} ...", flush=True)
            try:
                out = fn(bench)
            except Exception as exc:  # noqa: BLE001 - report and go on with the other figures
                errors[name] = f"{type(exc).__name__}: {exc}"
                traceback.print_exc()
                continue
            out = out if isinstance(out, list) else [out]
            results.extend(out)
            for fig in out:
                print(f"  {fig.id}: {fig.value.text()} vs {fig.baseline.text()}; "
                      + "; ".join(t.text() for t in fig.targets), flush=True)
            print(f"  done in {time.perf_counter() - t0:.1f} s", flush=True)
    finally:
        cleaned = bench.cleanup()
    elapsed = time.perf_counter() - started
    report.print_table(results)
    print(f"cleaned up: {cleaned['sessions']} bench sessions, {cleaned['objects']} S3 object versions")
    print(f"total benchmark time: {elapsed:.1f} s")
    doc = report.document(info, results, quick=quick, repeat_n=repeat_n, elapsed_s=elapsed)
    doc["errors"] = errors
    if getattr(args, "json", None):
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=2, default=str)
        print(f"JSON written to {args.json}")
    return 1 if errors else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m heimdall_pipeline.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", help="also write the results as JSON to this path")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    parser.add_argument("--scale", action="store_true", help="partition-scale figures (1k/10k/50k sessions)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--only", action="append", metavar="FIGURE",
                        help="measure only these figures (repeatable): metrics, session, session_cli, io, upsert, backfill, "
                             "rss, import, tdoa_real, tdoa_sim")
    return parser


def main(argv: list[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))
