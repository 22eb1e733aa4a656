"""Benchmark bookkeeping: repeated timings, figures with their same-run baseline and targets,
machine facts, the printed table and the JSON document. No Dagster, no services."""

from __future__ import annotations

import dataclasses
import gc
import importlib.metadata
import json
import math
import os
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any


@dataclasses.dataclass
class Stat:
    """Repeated measurements of one quantity: median, min, max of `samples` (in `unit`)."""

    unit: str
    samples: list[float]

    @property
    def median(self) -> float:
        return float(statistics.median(self.samples))

    def as_dict(self) -> dict[str, Any]:
        return {"unit": self.unit, "median": self.median, "min": float(min(self.samples)),
                "max": float(max(self.samples)), "n": len(self.samples), "samples": [float(s) for s in self.samples]}

    def text(self) -> str:
        return f"{_fmt(self.median)} {self.unit} [{_fmt(min(self.samples))}..{_fmt(max(self.samples))}]"


@dataclasses.dataclass
class Target:
    """`value <op> limit`: op is "<=" or ">=". `value` is what the target is judged on."""

    name: str
    op: str
    limit: float
    value: float
    unit: str = ""

    @property
    def met(self) -> bool:
        return self.value <= self.limit if self.op == "<=" else self.value >= self.limit

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "op": self.op, "limit": float(self.limit), "value": float(self.value),
                "unit": self.unit, "met": self.met}

    def text(self) -> str:
        return f"{self.name} {_fmt(self.value)}{self.unit} {self.op} {_fmt(self.limit)}{self.unit}: " \
               f"{'met' if self.met else 'MISSED'}"


@dataclasses.dataclass
class Figure:
    id: str
    title: str
    size: str
    value: Stat
    baseline: Stat
    baseline_label: str
    ratio: float  # value / baseline for times, baseline / value... see ratio_meaning
    ratio_meaning: str
    targets: list[Target]
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)
    notes: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "title": self.title, "size": self.size, "value": self.value.as_dict(),
                "baseline": {"label": self.baseline_label, **self.baseline.as_dict()},
                "ratio": float(self.ratio), "ratio_meaning": self.ratio_meaning,
                "targets": [t.as_dict() for t in self.targets], "all_targets_met": all(t.met for t in self.targets),
                "extra": self.extra, "notes": self.notes}


def _fmt(x: float) -> str:
    if x is None or not math.isfinite(x):
        return str(x)
    ax = abs(x)
    if ax >= 1000:
        return f"{x:,.0f}"
    if ax >= 100:
        return f"{x:.0f}"
    if ax >= 10:
        return f"{x:.1f}"
    if ax >= 1:
        return f"{x:.2f}"
    return f"{x:.3g}"


def repeat(fn: Callable[[], Any], n: int, *, setup: Callable[[], Any] | None = None) -> list[float]:
    """Wall seconds of `fn()` n times; `setup()` (untimed) runs before each; GC off while timing."""
    out = []
    for _ in range(n):
        if setup is not None:
            setup()
        gc.collect()
        gc.disable()
        try:
            t0 = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t0)
        finally:
            gc.enable()
    return out


def machine_info() -> dict[str, Any]:
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem_kb = 0
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    mem_kb = int(line.split()[1])
    except OSError:
        pass
    versions = {}
    for name in ("dagster", "numpy", "scipy", "matplotlib", "pillow", "boto3", "psycopg", "sqlalchemy"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    versions["python"] = platform.python_version()
    try:
        load = os.getloadavg()
    except OSError:
        load = (float("nan"),) * 3
    return {"cpu_model": cpu, "cores": os.cpu_count(), "memory_mb": round(mem_kb / 1024),
            "platform": platform.platform(), "versions": versions,
            "load_average_at_start": [round(x, 2) for x in load]}


def print_machine(info: dict[str, Any]) -> None:
    print(f"machine: {info['cpu_model']}, {info['cores']} cores, {info['memory_mb']} MB RAM, {info['platform']}")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in info["versions"].items()))
    print(f"load average at start: {info['load_average_at_start']} (other work on the machine inflates times)")


def print_table(figures: list[Figure]) -> None:
    print()
    header = f"{'figure':<22} {'size':<34} {'measured (median [min..max])':<34} {'baseline (same run)':<34} {'ratio':>7}  targets"
    print(header)
    print("-" * len(header))
    for fig in figures:
        targets = "; ".join(t.text() for t in fig.targets)
        print(f"{fig.id:<22} {fig.size:<34} {fig.value.text():<34} {fig.baseline.text():<34} {_fmt(fig.ratio):>7}  {targets}")
    print()
    for fig in figures:
        print(f"* {fig.id}: {fig.title}. Baseline: {fig.baseline_label}. Ratio = {fig.ratio_meaning}.")
        if fig.notes:
            print(f"    {fig.notes}")
        for key, value in fig.extra.items():
            print(f"    {key}: {json.dumps(value, default=str) if not isinstance(value, str) else value}")


def document(info: dict[str, Any], figures: list[Figure], *, quick: bool, repeat_n: int, elapsed_s: float) -> dict:
    return {"machine": info, "quick": quick, "repeat": repeat_n, "elapsed_s": elapsed_s,
            "figures": {fig.id: fig.as_dict() for fig in figures}}


def repeat_interleaved(n: int, *calls: tuple[Callable[[], Any], Callable[[], Any] | None]) -> list[list[float]]:
    """`repeat` of several (fn, setup) pairs, one run of each in turn, n rounds: every figure and
    its baseline see the same machine load. Returns each pair's n wall times."""
    out: list[list[float]] = [[] for _ in calls]
    for _ in range(n):
        for times, (fn, setup) in zip(out, calls):
            times += repeat(fn, 1, setup=setup)
    return out
