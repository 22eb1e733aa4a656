import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from heimdall_pipeline.receivers import RECEIVER_ID_PATTERN
from heimdall_pipeline.storage.layout import (
    InvalidKeyError,
    iq_dataset_name,
    iq_object_key,
    metadata_object_key,
    parse_object_key,
    session_prefix,
    spectrum_object_key,
    validate_key_part,
)

FORBIDDEN = ["/", "..", "|", ",", "[", "]", " ", "\\", ":", "*", "?", "\n", "\t", "\x00", "\x7f", "%", "+", "="]
ALLOWED_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789_-")
BUILDERS = [iq_object_key, metadata_object_key, spectrum_object_key]


def test_builders():
    assert iq_object_key("s1", "f5len") == "sessions/s1/websdr_f5len.npy"
    assert metadata_object_key("s1", "f5len") == "sessions/s1/websdr_f5len_metadata.json"
    assert spectrum_object_key("s1", "f5len") == "sessions/s1/websdr_f5len_spectrum.png"
    assert session_prefix("s1") == "sessions/s1/"
    assert iq_dataset_name("f5len") == "websdr_f5len.npy"


@settings(max_examples=500)
@given(st.text(max_size=80))
def test_accepted_parts_contain_no_forbidden_characters(value):
    try:
        accepted = validate_key_part(value, field="session_key")
    except InvalidKeyError as exc:
        assert exc.field == "session_key" and "session_key" in str(exc)
        return
    assert accepted == value
    assert 1 <= len(value) <= 64
    assert set(value) <= ALLOWED_CHARS
    assert value[0] not in "_-"
    for bad in FORBIDDEN:
        assert bad not in value


@settings(max_examples=300)
@given(st.text(alphabet=st.sampled_from(sorted(ALLOWED_CHARS) + ["/", ".", "|", ",", "[", "]", " ", "A", "é"]), max_size=70))
def test_key_part_rule_near_misses(value):
    """Same as above with an alphabet that hits the boundary often."""
    expected = bool(value) and len(value) <= 64 and set(value) <= ALLOWED_CHARS and value[0] not in "_-"
    try:
        validate_key_part(value, field="session_key")
        assert expected
    except InvalidKeyError:
        assert not expected


@pytest.mark.parametrize("bad", ["..", "a/b", "a|b", "a,b", "a b", "a[0]", "a]", "[a", "../etc", "a..b", "s1/", "/s1"])
@pytest.mark.parametrize("field", ["session_key", "receiver_id"])
def test_forbidden_characters_refused_with_field(bad, field):
    with pytest.raises(InvalidKeyError) as info:
        validate_key_part(bad, field=field)
    assert info.value.field == field
    assert field in str(info.value)


@pytest.mark.parametrize("bad", ["", "A", "Abc", "é", "a\u200bb", "a\nb", "a\x00", "_a", "-a", "ａ"])
def test_other_refusals(bad):
    with pytest.raises(InvalidKeyError, match="session_key"):
        validate_key_part(bad, field="session_key")


@pytest.mark.parametrize("bad", [None, 123, b"abc", ["a"]])
def test_non_strings_refused(bad):
    with pytest.raises(InvalidKeyError, match="receiver_id"):
        validate_key_part(bad, field="receiver_id")


def test_length_limits():
    assert validate_key_part("a" * 64, field="session_key")
    with pytest.raises(InvalidKeyError, match="session_key.*65.*64"):
        validate_key_part("a" * 65, field="session_key")
    with pytest.raises(InvalidKeyError, match="session_key"):
        validate_key_part("a" * 300, field="session_key")
    assert validate_key_part("a" * 40, field="receiver_id")
    with pytest.raises(InvalidKeyError, match="receiver_id"):
        validate_key_part("a" * 41, field="receiver_id")
    with pytest.raises(InvalidKeyError, match="receiver_id"):
        validate_key_part("a" * 300, field="receiver_id")


@pytest.mark.parametrize("builder", BUILDERS)
def test_builders_validate_both_parts(builder):
    with pytest.raises(InvalidKeyError, match="session_key"):
        builder("../x", "f5len")
    with pytest.raises(InvalidKeyError, match="receiver_id"):
        builder("s1", "a/b")
    with pytest.raises(InvalidKeyError, match="session_key"):
        session_prefix("a" * 300)
    with pytest.raises(InvalidKeyError, match="receiver_id"):
        iq_dataset_name("F5LEN")


part = st.from_regex(r"\A[a-z0-9][a-z0-9_-]{0,39}\Z")


@given(session=part, receiver=part)
def test_parse_inverts_builders(session, receiver):
    assert RECEIVER_ID_PATTERN.fullmatch(receiver)  # layout and receiver rules agree
    for builder, kind in zip(BUILDERS, ["iq", "metadata", "spectrum"]):
        key = builder(session, receiver)
        assert key.startswith(session_prefix(session))
        assert parse_object_key(key) == (session, receiver, kind)


def test_parse_tricky_receiver_names():
    assert parse_object_key("sessions/s1/websdr_x_metadata.npy") == ("s1", "x_metadata", "iq")
    assert parse_object_key("sessions/s1/websdr_x_metadata_metadata.json") == ("s1", "x_metadata", "metadata")


@pytest.mark.parametrize(
    "key",
    [
        "",
        "sessions/s1",
        "sessions/s1/f5len.npy",
        "sessions/s1/websdr_f5len.txt",
        "sessions/s1/websdr_.npy",
        "sessions/../websdr_f5len.npy",
        "sessions/s1/x/websdr_f5len.npy",
        "other/s1/websdr_f5len.npy",
        "sessions/S1/websdr_f5len.npy",
        "sessions/s1/websdr_F5LEN.npy",
        "/sessions/s1/websdr_f5len.npy",
    ],
)
def test_parse_refuses_foreign_keys(key):
    with pytest.raises(InvalidKeyError) as info:
        parse_object_key(key)
    assert info.value.field == "key"
