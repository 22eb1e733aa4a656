"""StoredCaptures: a range of partitions read in order with a bounded read-ahead."""

import threading
import weakref

import pytest

from heimdall_pipeline.io_managers.s3_iq import StoredCaptures


class Loaded:
    """Stands for a capture; counts how many are alive at once."""


class StubStore:
    def __init__(self, read_ahead: int, fail_on: str | None = None):
        self.read_ahead, self.fail_on = read_ahead, fail_on
        self.alive = self.max_alive = 0
        self.lock = threading.Lock()

    def _released(self):
        with self.lock:
            self.alive -= 1

    def load_capture(self, key: str):
        if key == self.fail_on:
            raise ValueError(f"s3://bucket/{key}: sha256 mismatch")
        if key.startswith("none"):
            return None
        capture = Loaded()
        with self.lock:
            self.alive += 1
            self.max_alive = max(self.max_alive, self.alive)
        weakref.finalize(capture, self._released)
        return capture


@pytest.mark.parametrize("read_ahead", [1, 2, 5])
@pytest.mark.parametrize("consumer_keeps_previous", [True, False])
def test_order_kept_and_read_ahead_bounds_what_is_held(read_ahead, consumer_keeps_previous):
    keys = [f"r{i}|s" for i in range(40)] + ["none|s"]
    store = StubStore(read_ahead)
    seen = []
    for key, capture in StoredCaptures(store.load_capture, keys, store.read_ahead).items():
        seen.append((key, capture is None))
        if not consumer_keeps_previous:
            del capture
    assert seen == [(key, key.startswith("none")) for key in keys]
    # the one being processed + read_ahead downloading (+ the previous one a plain for loop still holds)
    assert store.max_alive <= read_ahead + 1 + consumer_keeps_previous
    assert store.alive == 0


def test_a_damaged_capture_stops_the_iteration_with_its_error():
    store = StubStore(2, fail_on="r3|s")
    got = []
    with pytest.raises(ValueError, match="r3"):
        for key, _ in StoredCaptures(store.load_capture, [f"r{i}|s" for i in range(10)], store.read_ahead).items():
            got.append(key)
    assert got == ["r0|s", "r1|s", "r2|s"]


def test_mapping_access():
    store = StubStore(2)
    captures = StoredCaptures(store.load_capture, ["a|s", "b|s"], store.read_ahead)
    assert len(captures) == 2 and list(captures) == ["a|s", "b|s"]
    assert isinstance(captures["a|s"], Loaded)
    with pytest.raises(KeyError):
        captures["c|s"]
