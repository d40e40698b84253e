"""The ``username:hexkey`` parser of ``--tls-psk`` (qemu's keys.psk, libnbd's tls-psk-file)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strongroom.image.instant.tlspsk import parse_psk_keys

_USERS = st.text(
    st.characters(min_codepoint=33, max_codepoint=0x2FF, blacklist_characters=":"),
    min_size=1,
    max_size=20,
).filter(lambda u: u.strip() == u and not any(c.isspace() for c in u))


@given(st.dictionaries(_USERS, st.binary(min_size=1, max_size=64), min_size=1, max_size=5),
       st.booleans())  # fmt: skip
@settings(max_examples=60, deadline=None)
def test_psktool_files_round_trip(keys: dict[str, bytes], crlf: bool) -> None:
    end = "\r\n" if crlf else "\n"
    text = "".join(f"{user}:{key.hex()}{end}" for user, key in keys.items())
    assert parse_psk_keys(text) == keys
    upper = "".join(f"{user}:{key.hex().upper()}" + end for user, key in keys.items())
    assert parse_psk_keys(upper) == keys


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("alice:00ff\n", {"alice": b"\x00\xff"}),
        ("alice:00FF", {"alice": b"\x00\xff"}),  # no final newline, upper-case hex
        ("\nalice:01\n\n  \nbob:0203\n", {"alice": b"\x01", "bob": b"\x02\x03"}),
        ("user@host.example:aa\n", {"user@host.example": b"\xaa"}),
    ],
)
def test_good_files(text: str, expected: dict[str, bytes]) -> None:
    assert parse_psk_keys(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no username:hexkey line"),
        ("\n\n", "no username:hexkey line"),
        ("alice", "line 1 is not username:hexkey"),
        (":00", "line 1 is not username:hexkey"),
        ("al ice:00", "line 1 is not username:hexkey"),
        ("alice:", "line 1: the key is not an even number of hex digits"),
        ("alice:0", "line 1: the key is not an even number of hex digits"),
        ("alice:0g", "line 1: the key is not an even number of hex digits"),
        ("alice:00:11", "line 1: the key is not an even number of hex digits"),
        ("a:00\nb:00\na:01", "line 3: username 'a' is given twice"),
        ("alice:" + "00" * 257, "line 1: the key is longer than 256 bytes"),
    ],
)
def test_bad_files(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_psk_keys(text)
