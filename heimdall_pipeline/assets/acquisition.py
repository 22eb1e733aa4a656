"""raw_iq: each receiver's recording of a session, stored in S3 by the IQ IO manager, which
records each receiver's outcome in session_captures."""

from collections import defaultdict
from datetime import timedelta
from functools import partial

from dagster import AssetExecutionContext, BackfillPolicy, Failure, asset

from heimdall_pipeline.assets.pictures import spectrum_metadata
from heimdall_pipeline.capture import ReceiverCapture
from heimdall_pipeline.partitions import PER_PARTITION_METADATA_LIMIT, capture_partitions, split_capture_key
from heimdall_pipeline.recordings.bucket import read_upload
from heimdall_pipeline.resources import HeimdallDatabase, ReceiverNetwork
from heimdall_pipeline.resources.iq_store import IQStore
from heimdall_pipeline.run_workers import WORKER_TAG, current_worker
from heimdall_pipeline.sources.acquisition import AcquisitionFailure
from heimdall_pipeline.sources.dispatch import LiveWindowClosedError, check_live_window
from heimdall_pipeline.tags import LAUNCH_TAG

# How long a run waits for a channel of a receiver that other sessions hold all channels of; a
# receiver still busy then fails with ReceiverBusyError naming them. A lease outlives the
# recording by this allowance at most (a worker that died frees its channels then).
CHANNEL_WAIT_S = 60.0
LEASE_ALLOWANCE = timedelta(minutes=15)


class ReceiverBusyError(Exception):
    """Every channel of the receiver is held by other sessions."""


def refuse_session(engine, session_key: str, receiver_ids, launch_id: str, reason: str, run_id: str, *,
                   errors: dict[str, BaseException | str]) -> Failure:
    """Ends a claimed session `failed` with the reason before anything is recorded: each receiver
    in `errors` gets its own error as its outcome, every other requested receiver one saying it
    was not recorded because the session was refused (the reason is the session's, said once);
    then the status; returns the step's Failure."""
    from heimdall_pipeline.db.captures_repo import failed_outcome, record_outcomes  # the database layer loads with the first run, not the code location
    from heimdall_pipeline.db.sessions_repo import REFUSED_ERROR_TYPE, transition

    record_outcomes(engine, [
        failed_outcome(session_key, rid, errors[rid], run_id=run_id) if rid in errors else
        failed_outcome(session_key, rid, f"not recorded: the session was refused because of {', '.join(errors)}",
                       error_type=REFUSED_ERROR_TYPE, run_id=run_id)
        for rid in receiver_ids])
    transition(engine, session_key, "failed", reason=reason, if_run_id=launch_id)
    return Failure(reason)


@asset(
    partitions_def=capture_partitions,
    io_manager_key="iq_io_manager",
    backfill_policy=BackfillPolicy.single_run(),
    group_name="heimdall",
    kinds={"s3", "numpy"},
    description="IQ recorded by one receiver during one session (.npy complex64 + SigMF metadata in S3); "
                "partition <session>.<receiver>, one per receiver the session asked for.",
)
def raw_iq(context: AssetExecutionContext, database: HeimdallDatabase, receiver_network: ReceiverNetwork,
           iq_store: IQStore) -> dict:
    from heimdall_pipeline.db import leases_repo  # the database layer (SQLAlchemy) loads with the first run, not the code location
    from heimdall_pipeline.db.receivers_repo import list_receivers
    from heimdall_pipeline.db.sessions_repo import SessionAlreadyLaunchedError, claim_launch, get_session

    # The process running this run (the executor is in-process): if it dies without ending the
    # run, the reconciler fails it (run_workers.py) instead of leaving it STARTED.
    context.instance.add_run_tags(context.run_id, {WORKER_TAG: current_worker()})
    engine = database.engine()
    registry = {receiver.id: receiver for receiver in list_receivers(engine)}
    partition_keys = context.partition_keys  # Dagster expands the range on every access
    per_partition_metadata = len(partition_keys) <= PER_PARTITION_METADATA_LIMIT
    # The runs of one launch (the sensor's or `heimdall session run`'s) share its id; a run
    # started by hand in the UI is its own launch.
    launch_id = context.run.tags.get(LAUNCH_TAG, context.run_id)
    receivers_by_session: dict[str, list[str]] = defaultdict(list)
    for key in partition_keys:
        session_key, receiver_id = split_capture_key(key)
        receivers_by_session[session_key].append(receiver_id)

    outcomes: dict[str, object] = {}
    for session_key, receiver_ids in receivers_by_session.items():
        if get_session(engine, session_key) is None:
            raise Failure(f"session {session_key!r} is not in the sessions table; request it with "
                          "`heimdall session request` or the request_session job")
        # One launch per session at a time: a concurrent launch is refused before it records.
        try:
            session = claim_launch(engine, session_key, launch_id)
        except SessionAlreadyLaunchedError as exc:
            raise Failure(str(exc), metadata={"refusal": type(exc).__name__}) from exc
        requested = [rid for rid in receiver_ids if rid in session.receiver_ids]
        unknown = [rid for rid in requested if rid not in registry]
        if unknown:
            raise refuse_session(engine, session_key, requested, launch_id,
                                 f"session {session_key}: receivers {unknown} are not registered", context.run_id,
                                 errors=dict.fromkeys(unknown, "not registered"))
        targets = [registry[rid] for rid in requested]
        # Refuse before recording anything: a live receiver cannot re-record the past.
        try:
            check_live_window(session, targets)
        except LiveWindowClosedError as exc:
            raise refuse_session(engine, session_key, requested, launch_id, str(exc), context.run_id,
                                 errors={exc.receiver_id: exc}) from exc
        leases = leases_repo.acquire(engine, requested, run_id=context.run_id, session_key=session_key,
                                     hold_for=timedelta(seconds=session.duration_s) + LEASE_ALLOWANCE,
                                     wait_s=CHANNEL_WAIT_S)
        try:
            acquisition = receiver_network.acquire(session, [r for r in targets if r.id not in leases.busy],
                                                  read_upload=partial(read_upload, iq_store))
        finally:
            leases_repo.release(engine, context.run_id, leases.held)
        for rid, reason in leases.busy.items():
            acquisition.errors[rid] = AcquisitionFailure(rid, ReceiverBusyError.__name__, f"receiver '{rid}': {reason}",
                                                         attempts=0, transient=True)
        for failure in acquisition.errors.values():
            context.log.warning(f"session {session_key}: {failure.error_type}: {failure.message} "
                                f"after {failure.attempts} attempt(s)")
        for key in partition_keys:
            key_session, rid = split_capture_key(key)
            if key_session != session_key:
                continue
            capture = acquisition.captures.get(rid)
            failure: AcquisitionFailure | None = acquisition.errors.get(rid)
            if capture is None:
                outcomes[str(key)] = failure
                continue
            # A picture for people, beside the capture; the IO manager stores the data itself
            # and shows the picture with the partition's storage metadata.
            picture = spectrum_metadata(iq_store, capture) if per_partition_metadata else {}
            outcomes[str(key)] = ReceiverCapture(registry[rid], capture, ui_metadata=picture,
                                                 attempts=acquisition.attempts.get(rid, 1))
        context.log.info(f"session {session_key}: {len(acquisition.captures)} captured, "
                         f"{len(acquisition.errors)} failed"
                         + (f", {len(receiver_ids) - len(targets)} not requested" if len(targets) < len(receiver_ids) else ""))
    return outcomes
