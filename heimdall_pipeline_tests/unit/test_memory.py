"""The allocator setting every process running the assets applies."""

import platform

import pytest

from heimdall_pipeline import memory


def test_default_threshold_is_applied_on_glibc(monkeypatch):
    monkeypatch.delenv(memory.THRESHOLD_ENV, raising=False)
    applied = memory.configure_allocator()
    if platform.libc_ver()[0] == "glibc":
        assert applied == memory.DEFAULT_MMAP_THRESHOLD_BYTES
    else:
        assert applied is None


def test_zero_leaves_glibc_alone(monkeypatch):
    monkeypatch.setenv(memory.THRESHOLD_ENV, "0")
    assert memory.configure_allocator() is None


@pytest.mark.parametrize("text", ["lots", "-5", str(64 * 1024 * 1024)])
def test_bad_setting_names_the_variable(monkeypatch, text):
    monkeypatch.setenv(memory.THRESHOLD_ENV, text)
    with pytest.raises(ValueError, match=memory.THRESHOLD_ENV):
        memory.configure_allocator()
