import dataclasses
import math
import random
import re
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from heimdall_pipeline.receivers import DEFAULT_RECEIVERS, Receiver
from heimdall_pipeline.sessions import (
    InvalidSessionRequestError,
    SessionLimits,
    Session,
    new_session_key,
)
from heimdall_pipeline.sources.transmitter import TRANSMITTER_KEYS, default_transmitter
from heimdall_pipeline.storage.layout import validate_key_part
from heimdall_pipeline.validation import validate_session_request

NOW = datetime(2026, 11, 23, 13, 26, 5, tzinfo=timezone.utc)
KIWI = Receiver(
    id="kiwi1", name="Kiwi", url="http://kiwi.example:8073", kind="kiwisdr", location_name="Somewhere",
    latitude=50.0, longitude=5.0,
)
SLEEPY = dataclasses.replace(DEFAULT_RECEIVERS[1], id="sleepy", is_active=False)
REGISTRY = (*DEFAULT_RECEIVERS, KIWI, SLEEPY)


def validate(**overrides):
    fields = dict(center_frequency_hz=7.1e6, duration_s=10, receivers=REGISTRY, now=NOW)
    fields.update(overrides)
    return validate_session_request(**fields)


def refused(field, **overrides) -> str:
    with pytest.raises(InvalidSessionRequestError) as info:
        validate(**overrides)
    assert info.value.field == field, str(info.value)
    assert f"'{field}'" in str(info.value)
    return str(info.value)


# ------------------------------------------------------------------------------------ slugs


def test_slug_format():
    key = new_session_key(NOW)
    assert re.fullmatch(r"s20261123t1326z-[0-9a-f]{6}", key), key
    assert validate_key_part(key, field="session_key") == key
    assert new_session_key(NOW, prefix="sched").startswith("sched20261123t1326z-")


def test_slug_converts_to_utc_and_refuses_naive():
    cet = timezone(timedelta(hours=1))
    assert new_session_key(NOW.astimezone(cet)).startswith("s20261123t1326z-")
    with pytest.raises(ValueError):
        new_session_key(datetime(2026, 1, 1))


@pytest.mark.parametrize("prefix", ["", "S", "a/b", "a-b", "1a", "x" * 17, "a b"])
def test_slug_prefix_validated(prefix):
    with pytest.raises(ValueError):
        new_session_key(NOW, prefix=prefix)


def test_slugs_unique_deterministic_rng():
    rng = random.Random(1234)
    keys = [new_session_key(NOW, rng=rng) for _ in range(2000)]
    assert len(set(keys)) == len(keys)


def test_slugs_unique_default_randomness():
    keys = {new_session_key(NOW) for _ in range(20)}
    assert len(keys) == 20


@given(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2999, 12, 31), timezones=st.just(timezone.utc)))
def test_slugs_valid_and_sortable(when):
    a = new_session_key(when)
    b = new_session_key(when + timedelta(minutes=1))
    for key in (a, b):
        validate_key_part(key, field="session_key")
        for bad in ("/", "..", "|", ",", "[", "]", " "):
            assert bad not in key
    assert a < b


# ------------------------------------------------------------------------------- validation


def test_valid_default_request():
    request = validate()
    assert isinstance(request, Session)
    assert request.session_key.startswith("s20261123t1326z-")
    assert request.center_frequency_hz == 7.1e6 and request.duration_s == 10.0
    assert request.sample_rate_hz == 12000.0
    assert request.receiver_ids == ()
    assert request.source_kind == "auto"
    assert request.scheduled_for == NOW
    assert request.expected_sample_count == 120_000
    assert request.transmitter is not None  # default receivers are simulated


def test_string_inputs_from_cli():
    request = validate(
        center_frequency_hz="145.5e6", duration_s="2.5", sample_rate_hz="48000", receiver_ids="f5len, ph0m",
        scheduled_for="2026-11-23T14:00:00Z", session_key="my-session_1", requested_by=" alice ",
    )
    assert request.center_frequency_hz == 145.5e6
    assert request.receiver_ids == ("f5len", "ph0m")
    assert request.scheduled_for == datetime(2026, 11, 23, 14, tzinfo=timezone.utc)
    assert request.session_key == "my-session_1"
    assert request.requested_by == "alice"
    assert request.expected_sample_count == 120_000


def test_to_dict_round_trip():
    request = validate(receiver_ids=["f5len", "hb9q"], transmitter={"lat": 47.0, "lon": 7.0})
    again = validate_session_request(**request.to_dict(), receivers=REGISTRY)
    assert again == request


@pytest.mark.parametrize("value", [0, -1, "-7e6", 0.0, float("nan"), float("inf"), "abc", None, True])
def test_frequency_not_positive_or_not_a_number(value):
    refused("center_frequency_hz", center_frequency_hz=value)


def test_frequency_above_range_names_receiver_and_range():
    message = refused("center_frequency_hz", center_frequency_hz=145.5e6, receiver_ids=["kiwi1"])
    assert "kiwi1" in message and "145.5 MHz" in message and "0..30 MHz" in message
    # all active includes the kiwi receiver
    assert "kiwi1" in refused("center_frequency_hz", center_frequency_hz=145.5e6)
    message = refused("center_frequency_hz", center_frequency_hz=7e9, receiver_ids=["f5len"])
    assert "f5len" in message


def test_frequency_within_kiwi_range_accepted():
    assert validate(center_frequency_hz=14.2e6, receiver_ids=["kiwi1"]).transmitter is None


@pytest.mark.parametrize("value", [0, -5, "0", float("nan")])
def test_duration_not_positive(value):
    refused("duration_s", duration_s=value)


def test_duration_limit():
    assert validate(duration_s=600).duration_s == 600
    assert "600" in refused("duration_s", duration_s=600.5)
    refused("duration_s", duration_s=30, limits=SessionLimits(max_duration_s=20))


def test_duration_times_rate_memory_limit():
    message = refused("duration_s", duration_s=600, sample_rate_hz=2.4e6, receiver_ids=["f5len"])
    assert "sample" in message


@pytest.mark.parametrize("value", [999, 2_400_001, 0, -12000, "fast"])
def test_sample_rate_out_of_range(value):
    refused("sample_rate_hz", sample_rate_hz=value, receiver_ids=["f5len"])


def test_kiwisdr_only_12000():
    message = refused("sample_rate_hz", sample_rate_hz=48000, receiver_ids=["kiwi1"])
    assert "kiwi1" in message and "12000" in message
    assert validate(sample_rate_hz=2.4e6, duration_s=1, receiver_ids=["f5len"]).sample_rate_hz == 2.4e6
    # simulating a kiwisdr receiver is not bound to the KiwiSDR rate
    assert validate(sample_rate_hz=48000, receiver_ids=["kiwi1"], source_kind="simulated").transmitter


def test_unknown_receiver_named():
    message = refused("receiver_ids", receiver_ids=["f5len", "nope"])
    assert "'nope'" in message


def test_inactive_receiver_named():
    assert "'sleepy'" in refused("receiver_ids", receiver_ids=["sleepy"])
    # inactive receivers are not part of "all active"
    assert validate().receiver_ids == ()


def test_no_active_receivers():
    idle = tuple(dataclasses.replace(r, is_active=False) for r in DEFAULT_RECEIVERS)
    assert "no active" in refused("receiver_ids", receivers=idle)
    assert "no active" in refused("receiver_ids", receivers=())


@pytest.mark.parametrize("value", ["F5LEN", "a/b", "x,,y|z", ["f5len", "f5len"], 42, ["a" * 300]])
def test_bad_receiver_ids(value):
    refused("receiver_ids", receiver_ids=value)


@pytest.mark.parametrize("value", ["..", "a/b", "a|b", "a,b", "a b", "a[1]", "UPPER", "a" * 65, "a" * 300])
def test_bad_session_key(value):
    refused("session_key", session_key=value)


def test_source_kind():
    refused("source_kind", source_kind="websdr")
    assert "f5len" in refused("source_kind", source_kind="kiwisdr", receiver_ids=["f5len"])
    assert validate(source_kind="kiwisdr", receiver_ids=["kiwi1"]).transmitter is None


@pytest.mark.parametrize("value", ["2026-11-23T14:00:00", datetime(2026, 11, 23, 14), "tomorrow", 17])
def test_bad_scheduled_for(value):
    refused("scheduled_for", scheduled_for=value)


def test_requested_by():
    refused("requested_by", requested_by="x" * 201)
    refused("requested_by", requested_by="bad\x00name")
    refused("requested_by", requested_by=12)
    assert validate().requested_by == "unknown"


# ------------------------------------------------------------------------------ transmitter


def _inside_hull(lat, lon, receivers):
    """Point-in-convex-hull on a lon/lat plane (good enough at these scales)."""
    points = sorted({(r.longitude, r.latitude) for r in receivers})

    def cross(o, a, b):
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

    lower, upper = [], []
    for p in points:
        while len(lower) >= 2 and cross(lower[-2], lower[-1], p) <= 0:
            lower.pop()
        lower.append(p)
    for p in reversed(points):
        while len(upper) >= 2 and cross(upper[-2], upper[-1], p) <= 0:
            upper.pop()
        upper.append(p)
    hull = lower[:-1] + upper[:-1]
    q = (lon, lat)
    return all(cross(hull[i], hull[(i + 1) % len(hull)], q) >= 0 for i in range(len(hull)))


@given(st.from_regex(r"\A[a-z0-9][a-z0-9_-]{0,63}\Z"), st.sampled_from([3.5e6, 7.1e6, 14.2e6, 145.5e6, 433e6]))
def test_default_transmitter_inside_hull_and_deterministic(key, frequency):
    tx = default_transmitter(key, DEFAULT_RECEIVERS, frequency, 12000.0)
    assert tx == default_transmitter(key, DEFAULT_RECEIVERS, frequency, 12000.0)
    assert _inside_hull(tx["latitude"], tx["longitude"], DEFAULT_RECEIVERS)
    assert -30 <= tx["eirp_dbm"] <= 90
    assert 0.05 * 12000 - 1 <= abs(tx["offset_hz"]) <= 0.2 * 12000 + 1
    assert set(tx) == {"latitude", "longitude", "altitude_m", "eirp_dbm", "modulation", "offset_hz", "shadowing_sigma_db"}


def test_default_transmitter_depends_on_session_key():
    a = validate(session_key="alpha").transmitter
    b = validate(session_key="beta").transmitter
    assert a == validate(session_key="alpha").transmitter
    assert (a["latitude"], a["longitude"]) != (b["latitude"], b["longitude"])


def test_user_transmitter_fields_override_default():
    tx = validate(session_key="alpha", transmitter={"lat": 48.0, "longitude": 6.0, "eirp_dbm": 40}).transmitter
    assert tx["latitude"] == 48.0 and tx["longitude"] == 6.0 and tx["eirp_dbm"] == 40.0
    assert tx["modulation"] == validate(session_key="alpha").transmitter["modulation"]


@pytest.mark.parametrize(
    "tx",
    [
        {"lat": 91},
        {"lon": -181},
        {"eirp_dbm": 200},
        {"offset_hz": 6000},
        {"modulation": "FM radio!"},
        {"power": 3},
        "north",
        {"lat": "x"},
    ],
)
def test_bad_transmitter(tx):
    refused("transmitter", transmitter=tx)


def test_transmitter_refused_for_real_only_sessions():
    refused("transmitter", transmitter={"lat": 48}, receiver_ids=["kiwi1"])


def test_default_transmitter_reaches_most_receivers_in_the_simulator():
    """The default EIRP gives SNR >= 10 dB at >= 75 % of the default network, by the simulator's
    own ground truth (its path loss and each receiver's noise figure)."""
    from heimdall_pipeline.sources.kinds.simulated import transmitter_for
    from heimdall_pipeline.sources.simulator import simulate_capture

    for key in ("budget", "other", "third"):
        request = validate(session_key=key)
        snrs = [simulate_capture(key, r, transmitter_for(request), request.center_frequency_hz, request.sample_rate_hz,
                                 0.1, request.scheduled_for).ground_truth["snr_db"] for r in DEFAULT_RECEIVERS]
        assert sum(s >= 10 for s in snrs) >= math.ceil(0.75 * len(snrs)), snrs


def test_launchpad_config_is_the_session_request_field_for_field():
    from heimdall_pipeline.jobs import SessionConfig, TransmitterConfig
    from heimdall_pipeline.sessions import REQUEST_FIELDS

    # requested_by is the run that asks; recordings come from an import (uploaded files), not a form
    assert set(SessionConfig.model_fields) == set(REQUEST_FIELDS) - {"requested_by", "recordings"}
    assert set(TransmitterConfig.model_fields) == set(TRANSMITTER_KEYS)
    config = SessionConfig(center_frequency_hz=7.1e6, duration_s=2, receiver_ids=["f5len", "hb9q", "g0mjw"],
                           session_key="form1", scheduled_for="2026-11-23T14:00:00Z",
                           transmitter=TransmitterConfig(eirp_dbm=40.0, modulation="fm_tone"))
    session = validate_session_request(**config.request_fields(), requested_by="dagster:run", receivers=REGISTRY, now=NOW)
    assert session.to_dict() == {**config.request_fields(), "requested_by": "dagster:run",
                                 "sample_rate_hz": 12000.0, "duration_s": 2.0, "source_kind": "auto",
                                 "transmitter": session.transmitter, "recordings": None}
    assert session.transmitter["eirp_dbm"] == 40.0 and session.transmitter["modulation"] == "fm_tone"
    by_id = {r.id: r for r in DEFAULT_RECEIVERS}
    selected = [by_id[rid] for rid in config.receiver_ids]
    assert session.transmitter == {**default_transmitter("form1", selected, 7.1e6, 12000.0),
                                   "eirp_dbm": 40.0, "modulation": "fm_tone"}


@pytest.mark.parametrize("value, position", [("dk0ghz,,f5len", 2), (",f5len", 1), ("f5len,", 2), ("f5len, ,ph0m", 2)])
def test_an_empty_receiver_id_is_refused_not_dropped(value, position):
    assert f"empty receiver id at position {position}" in refused("receiver_ids", receiver_ids=value)


@pytest.mark.parametrize("field, fields", [
    ("receiver_ids", {"receiver_ids": "F" * 10_000}),
    ("receiver_ids", {"receiver_ids": ["f5len", "Ab" * 5_000]}),
    ("session_key", {"session_key": "?" * 10_000}),
])
def test_long_input_is_cut_in_the_message(field, fields):
    message = refused(field, **fields)
    assert len(message) < 400 and "characters" in message, message[:500]
