"""The code location `heimdall bench --scale` serves to dagster-webserver: the project's own
definitions (the capture partitions it uses) plus one placeholder asset per alternative partition
design, so the UI's partition queries can be timed for each on the same instance.

- `scale_product_iq`: sessions × every registered receiver (what main 4ef43da used);
- `scale_slot_iq`: sessions × a static slot dimension (slot i = the session's i-th receiver).

Never part of the project's code location (workspace.yaml); the assets have no body worth running.
"""

from dagster import (
    Definitions, DynamicPartitionsDefinition, MultiPartitionsDefinition, StaticPartitionsDefinition, asset,
)

from heimdall_pipeline.definitions import defs

SLOTS = 7  # the largest session of the bench
scale_sessions = DynamicPartitionsDefinition(name="scale_sessions")
scale_receivers = DynamicPartitionsDefinition(name="scale_receivers")
product_partitions = MultiPartitionsDefinition({"session": scale_sessions, "receiver": scale_receivers})
slot_partitions = MultiPartitionsDefinition(
    {"session": scale_sessions, "slot": StaticPartitionsDefinition([f"{i}" for i in range(SLOTS)])})


@asset(partitions_def=product_partitions, group_name="scale_bench")
def scale_product_iq() -> None:
    """Placeholder: partitions sessions × registry."""


@asset(partitions_def=slot_partitions, group_name="scale_bench")
def scale_slot_iq() -> None:
    """Placeholder: partitions sessions × receiver slot."""


defs = Definitions.merge(defs, Definitions(assets=[scale_product_iq, scale_slot_iq]))
