"""Receiver channel leases (table `receiver_leases`): at most `max_channels` running sessions hold
a receiver at once, whatever the registry holds.

A session run records several receivers, so the run queue cannot express "one channel of each of
these receivers" without naming every receiver in its configuration; the run takes one lease per
receiver here instead, before it connects, and gives them back when it has recorded. A lease
expires (a worker that died frees its channels at `expires_at`).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone

import sqlalchemy as sa

from heimdall_pipeline.db.models import receiver_leases, websdrs


@dataclasses.dataclass(frozen=True)
class LeaseResult:
    held: tuple[str, ...]           # receivers this run now holds a channel of
    busy: dict[str, str]            # receiver -> why not (its channels and who holds them)


def try_acquire(engine: sa.Engine, receiver_ids: Sequence[str], *, run_id: str, session_key: str,
                expires_at: datetime) -> LeaseResult:
    """One channel of each receiver that has one free, in one transaction (the receivers' registry
    rows are locked in id order, so concurrent runs serialise without deadlock). A receiver this
    run already holds stays held (a retried step)."""
    ids = sorted(set(receiver_ids))
    held, busy = [], {}
    with engine.begin() as conn:
        channels = dict(conn.execute(sa.select(websdrs.c.id, websdrs.c.max_channels)
                                     .where(websdrs.c.id.in_(ids)).order_by(websdrs.c.id).with_for_update()).all())
        conn.execute(receiver_leases.delete().where(receiver_leases.c.receiver_id.in_(ids),
                                                    receiver_leases.c.expires_at < sa.func.now()))
        holders: dict[str, list[tuple[str, str]]] = {}
        for row in conn.execute(sa.select(receiver_leases.c.receiver_id, receiver_leases.c.run_id,
                                          receiver_leases.c.session_key)
                                .where(receiver_leases.c.receiver_id.in_(ids))):
            holders.setdefault(row.receiver_id, []).append((row.run_id, row.session_key))
        rows = []
        for rid in ids:
            if rid not in channels:  # an unregistered receiver is refused by the caller, not counted here
                continue
            others = [(run, session) for run, session in holders.get(rid, []) if run != run_id]
            if len(others) < len(holders.get(rid, [])):
                held.append(rid)
            elif len(others) >= channels[rid]:
                busy[rid] = (f"all {channels[rid]} channel(s) held by session(s) "
                             + ", ".join(sorted({session for _, session in others})))
            else:
                rows.append({"receiver_id": rid, "run_id": run_id, "session_key": session_key,
                             "expires_at": expires_at})
                held.append(rid)
        if rows:
            conn.execute(receiver_leases.insert(), rows)
    return LeaseResult(tuple(held), busy)


def acquire(engine: sa.Engine, receiver_ids: Sequence[str], *, run_id: str, session_key: str,
            hold_for: timedelta, wait_s: float, poll_s: float = 1.0) -> LeaseResult:
    """Leases for every receiver, waiting up to `wait_s` for busy ones; what is still busy then is
    returned in `busy` (the caller fails those receivers with the reason)."""
    deadline = time.monotonic() + wait_s
    held: list[str] = []
    wanted = list(receiver_ids)
    while True:
        result = try_acquire(engine, wanted, run_id=run_id, session_key=session_key,
                             expires_at=datetime.now(timezone.utc) + hold_for)
        held += [rid for rid in result.held if rid not in held]
        if not result.busy or time.monotonic() >= deadline:
            return LeaseResult(tuple(held), result.busy)
        wanted = list(result.busy)
        time.sleep(min(poll_s, max(0.0, deadline - time.monotonic())))


def release(engine: sa.Engine, run_id: str, receiver_ids: Sequence[str] | None = None) -> int:
    """Gives back the run's leases (all of them, or those of `receiver_ids`); returns how many."""
    stmt = receiver_leases.delete().where(receiver_leases.c.run_id == run_id)
    if receiver_ids is not None:
        stmt = stmt.where(receiver_leases.c.receiver_id.in_(list(receiver_ids)))
    with engine.begin() as conn:
        return conn.execute(stmt).rowcount
