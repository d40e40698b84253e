"""The gateway's name rules without a server: any name it accepts is a valid object name of
exactly one kind, and nothing with '..' or a reserved component gets through."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from strongroom.server.auth import ApiError
from strongroom.server.gateway import KINDS, kind_of
from strongroom.storage.names import check_name

HEX = "0123456789abcdef"
parts = st.one_of(
    st.sampled_from(["data", "index", "points", "keys", "locks", "deleted", "config", "..", "."]),
    st.text(HEX, min_size=1, max_size=66),
    st.text(min_size=0, max_size=8),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(parts, min_size=1, max_size=4))
def test_accepted_names_are_vault_objects(components: list[str]) -> None:
    name = "/".join(components)
    try:
        kind = kind_of(name)
    except ApiError as exc:
        assert exc.status == 400
        return
    assert check_name(name) == name and ".." not in name.split("/")
    assert [k.name for k in KINDS if k.pattern.fullmatch(name)] == [kind.name]
    if kind.name == "data":
        assert name[5:7] == name[8:10]


def test_known_names() -> None:
    digest = "ab" + "0" * 62
    assert kind_of(f"data/ab/{digest}").name == "data"
    for bad in (f"data/cd/{digest}", f"data/ab/{digest}/x", "keys/" + "0" * 15, "config/x"):
        try:
            kind_of(bad)
        except ApiError as exc:
            assert exc.status == 400
        else:
            raise AssertionError(bad)
