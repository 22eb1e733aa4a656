"""Partitions: sessions (dynamic) and captures (dynamic, one key per session × requested receiver).

A capture key reads `<session>.<receiver>`: key parts are [a-z0-9_-] (storage/layout.py), so the
first dot splits it. Captures exist only for the receivers a session asked for, so the partition
count grows with the captures made, not with sessions × registry (docs/architecture.md, "Partitions").
A session's capture keys are added together, contiguous in Dagster's dynamic-partition order
(ordered by insertion id), so one run targets exactly them as the range first..last.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from dagster import AllPartitionMapping, DynamicPartitionsDefinition

session_partitions = DynamicPartitionsDefinition(name="sessions")
capture_partitions = DynamicPartitionsDefinition(name="captures")

# session_summary / session_localization read their session's rows themselves; the graph edge from
# receiver_metrics needs a mapping every Dagster process can load (a custom PartitionMapping is
# dropped from the code location's snapshot, so the UI and daemons would fall back to identity).
captures_to_session = AllPartitionMapping()

CAPTURE_KEY_SEPARATOR = "."


class PartitionOrderError(RuntimeError):
    """A session's capture keys are not contiguous in the captures partition order."""


def capture_key(session_key: str, receiver_id: str) -> str:
    """The raw_iq / receiver_metrics partition key of one receiver's capture in one session."""
    return f"{session_key}{CAPTURE_KEY_SEPARATOR}{receiver_id}"


def split_capture_key(partition_key: str) -> tuple[str, str]:
    """(session, receiver) of a capture key (each part is checked where it names storage:
    storage/layout.py)."""
    session_key, separator, receiver_id = str(partition_key).partition(CAPTURE_KEY_SEPARATOR)
    if not separator:
        raise ValueError(f"{partition_key!r} is not a capture key ('<session>.<receiver>')")
    return session_key, receiver_id


def session_capture_range(ordered_keys: Sequence[str], session_key: str,
                          receiver_ids: Iterable[str]) -> tuple[str, str]:
    """(first, last) capture key of a session in partition order; PartitionOrderError unless its
    keys are all present and contiguous (nothing else in between)."""
    wanted = {capture_key(session_key, rid) for rid in receiver_ids}
    positions = [i for i, key in enumerate(ordered_keys) if key in wanted]
    if len(positions) != len(wanted) or positions[-1] - positions[0] + 1 != len(wanted):
        raise PartitionOrderError(
            f"session {session_key}: its {len(wanted)} capture partitions are "
            + (f"not all present ({len(positions)} found)" if len(positions) != len(wanted)
               else f"not contiguous (spread over positions {positions[0]}..{positions[-1]})")
            + "; a single run could not target exactly them")
    return ordered_keys[positions[0]], ordered_keys[positions[-1]]


def add_session_partitions(instance, sessions: Mapping[str, Sequence[str]], *,
                           attempts: int = 3) -> tuple[dict[str, tuple[str, str]], dict[str, str]]:
    """Adds each session's partition and its capture partitions (one per requested receiver, added
    in one statement so they are contiguous). Returns ({session: (first, last) capture key},
    {session: why it has no range}).

    A session whose capture keys are present but not contiguous, or only partly present (a session
    stored before this layout, or an archive interrupted halfway), gets them removed and added
    again together: a dynamic partition is a name, its materializations stay in the event log.
    Keys added at the same moment by another process can interleave with a session's: it is
    tried again, `attempts` times in all, then named in the second dict.
    """
    if not sessions:
        return {}, {}
    known_sessions = set(instance.get_dynamic_partitions(session_partitions.name))
    new_sessions = [key for key in sessions if key not in known_sessions]
    if new_sessions:
        instance.add_dynamic_partitions(session_partitions.name, new_sessions)
    ranges: dict[str, tuple[str, str]] = {}
    problems: dict[str, str] = {}
    todo = dict(sessions)
    for attempt in range(attempts + 1):
        ordered = list(instance.get_dynamic_partitions(capture_partitions.name))
        problems = {}
        for session_key, receiver_ids in todo.items():
            try:
                ranges[session_key] = session_capture_range(ordered, session_key, receiver_ids)
            except PartitionOrderError as exc:
                problems[session_key] = str(exc)
        if not problems or attempt == attempts:
            break
        todo = {key: todo[key] for key in problems}
        for session_key, receiver_ids in todo.items():
            keys = [capture_key(session_key, rid) for rid in receiver_ids]
            for key in set(ordered).intersection(keys):
                instance.delete_dynamic_partition(capture_partitions.name, key)
            instance.add_dynamic_partitions(capture_partitions.name, keys)
    return ranges, problems


def remove_session_partitions(instance, session_key: str, receiver_ids: Iterable[str]) -> None:
    """Removes a session's partition and its capture partitions (data and event log are kept)."""
    for rid in receiver_ids:  # deleting an absent key is a no-op
        instance.delete_dynamic_partition(capture_partitions.name, capture_key(session_key, rid))
    instance.delete_dynamic_partition(session_partitions.name, session_key)


# Dagster re-expands the run's whole partition range on every per-partition metadata call, so
# a 700-partition backfill spent most of its time there. Runs up to this size (a session is one
# partition per receiver) record metadata per partition; bigger runs record one summary.
PER_PARTITION_METADATA_LIMIT = 64

