"""Partitions: sessions (dynamic) × receivers (dynamic, one key per registered receiver)."""

from dagster import DynamicPartitionsDefinition, MultiPartitionKey, MultiPartitionsDefinition

session_partitions = DynamicPartitionsDefinition(name="sessions")
receiver_partitions = DynamicPartitionsDefinition(name="receivers")

# Keys read "receiver|session": Dagster orders the dimensions by name.
session_receiver_partitions = MultiPartitionsDefinition(
    {"session": session_partitions, "receiver": receiver_partitions}
)


def split_key(partition_key: str) -> tuple[str, str]:
    """(session, receiver) of a raw_iq / receiver_metrics partition key."""
    if isinstance(partition_key, MultiPartitionKey):
        parts = partition_key.keys_by_dimension
    else:
        receiver, _, session = partition_key.partition("|")
        parts = {"session": session, "receiver": receiver}
    return parts["session"], parts["receiver"]


def partition_key_for(session_key: str, receiver_id: str) -> MultiPartitionKey:
    return MultiPartitionKey({"session": session_key, "receiver": receiver_id})


# Dagster re-expands the run's whole partition range on every per-partition metadata call, so
# a 700-partition backfill spent most of its time there. Runs up to this size (a session is one
# partition per receiver) record metadata per partition; bigger runs record one summary.
PER_PARTITION_METADATA_LIMIT = 64


def receiver_blocks(receiver_keys: list[str], wanted) -> list[tuple[str, str]]:
    """(first, last) of each contiguous run of `wanted` receivers in partition order: the partition
    ranges that cover exactly those receivers (a run targets one rectangular range)."""
    wanted = set(wanted)
    blocks: list[tuple[str, str]] = []
    start = previous = None
    for key in receiver_keys:
        if key in wanted:
            start = key if start is None else start
            previous = key
        elif start is not None:
            blocks.append((start, previous))
            start = None
    if start is not None:
        blocks.append((start, previous))
    return blocks
