"""Settings defaults and the embedded services' saved environment."""

from __future__ import annotations

import os
from pathlib import Path

from heimdall_pipeline import settings


def _ephemeral_port_range() -> tuple[int, int]:
    """The kernel's range for outgoing connections' local ports (Linux's default when unknown)."""
    path = Path("/proc/sys/net/ipv4/ip_local_port_range")
    if path.exists():
        low, high = path.read_text().split()
        return int(low), int(high)
    return 32768, 60999


def test_default_service_ports_are_outside_the_ephemeral_range():
    # A port in that range may be held by any outgoing connection, so `services up` would fail now and then.
    low, high = _ephemeral_port_range()
    for name in ("HEIMDALL_S3_PORT", "HEIMDALL_PG_PORT"):
        port = int(settings.DEFAULTS[name])
        assert not low <= port <= high, f"{name} default {port} is inside {low}-{high}"


def test_a_runtime_folder_keeps_its_saved_ports(tmp_path, monkeypatch):
    # Folders created under the old default keep working: services.env wins over DEFAULTS.
    environ = {name: value for name, value in os.environ.items() if name != "HEIMDALL_PG_PORT"}
    monkeypatch.setattr(os, "environ", {**environ, "HEIMDALL_HOME": str(tmp_path)})
    (tmp_path / "services.env").write_text("HEIMDALL_PG_PORT=55432\n")
    filled = settings.load_embedded_env()
    assert filled["HEIMDALL_PG_PORT"] == "55432"
