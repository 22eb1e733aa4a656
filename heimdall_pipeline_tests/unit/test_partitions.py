"""Capture partition keys, a session's contiguous range, and adding a session's partitions."""

import pytest
from dagster import DagsterInstance

from heimdall_pipeline.partitions import (
    PartitionOrderError, add_session_partitions, capture_key, remove_session_partitions, session_capture_range,
    split_capture_key,
)


def test_capture_keys_name_session_and_receiver():
    assert capture_key("s20261205t0101z-abc123", "hb9q") == "s20261205t0101z-abc123.hb9q"
    assert split_capture_key("s20261205t0101z-abc123.hb9q") == ("s20261205t0101z-abc123", "hb9q")
    with pytest.raises(ValueError, match="not a capture key"):
        split_capture_key("hb9q|s1")  # the old sessions × receivers key


def test_a_session_range_is_exactly_its_keys_in_order():
    ordered = ["a.r1", "b.r9", "b.r2", "b.r5", "c.r1"]
    assert session_capture_range(ordered, "b", ["r9", "r2", "r5"]) == ("b.r9", "b.r5")
    with pytest.raises(PartitionOrderError, match="not contiguous"):
        session_capture_range(["b.r9", "a.r1", "b.r2"], "b", ["r9", "r2"])
    with pytest.raises(PartitionOrderError, match="not all present"):
        session_capture_range(ordered, "b", ["r9", "r7"])


def test_sessions_added_together_and_interleaved_keys_repaired():
    with DagsterInstance.ephemeral() as instance:
        ranges, problems = add_session_partitions(instance, {"s1": ["r3", "r1"], "s2": ["r2"]})
        assert not problems and ranges == {"s1": ("s1.r3", "s1.r1"), "s2": ("s2.r2", "s2.r2")}
        assert instance.get_dynamic_partitions("captures") == ["s1.r3", "s1.r1", "s2.r2"]
        assert instance.get_dynamic_partitions("sessions") == ["s1", "s2"]
        # keys added one by one with another session's in between (another process, or an old
        # instance): they are added again together
        instance.add_dynamic_partitions("captures", ["s3.r1"])
        instance.add_dynamic_partitions("captures", ["s4.r1"])
        instance.add_dynamic_partitions("captures", ["s3.r2"])
        ranges, problems = add_session_partitions(instance, {"s3": ["r1", "r2"], "s1": ["r3", "r1"]})
        assert not problems and ranges["s3"] == ("s3.r1", "s3.r2") and ranges["s1"] == ("s1.r3", "s1.r1")
        order = instance.get_dynamic_partitions("captures")
        assert order.index("s3.r2") == order.index("s3.r1") + 1
        remove_session_partitions(instance, "s3", ["r1", "r2"])
        assert "s3" not in instance.get_dynamic_partitions("sessions")
        assert not [k for k in instance.get_dynamic_partitions("captures") if k.startswith("s3.")]
