"""The compiled tree decoder (files/_treeread.c) gives exactly what nodes.py's decoder gives,
whatever a tree chunk's objects hold: the same nodes, the same shared values, the same error
for a malformed one (it builds the common objects and hands the others back)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strongroom.errors import IntegrityError
from strongroom.files import _treeread, nodes
from strongroom.files.nodes import FORMAT_VERSION, KINDS, Node, decode_dir, encode_dir

_REFS = [bytes([i]) * 32 for i in range(4)]
_ints = st.integers(0, 3) | st.integers(-(2**63), 2**63 - 1) | st.integers(-(2**70), 2**70)
# what a JSON value of a field may be: mostly the right type, sometimes not
_any = st.none() | st.booleans() | _ints | st.floats() | st.text(max_size=4)
_int_or_odd = _ints | _ints | _any
_str_or_odd = st.text(max_size=8) | st.text(max_size=8) | _any
_ref_or_odd = st.integers(-5, 5) | _any
_kind = st.sampled_from(KINDS) | st.sampled_from(["file", "x", ""])
_fields: dict[str, st.SearchStrategy[Any]] = {
    "n": st.text(min_size=1, max_size=8) | _any,
    "t": _kind | _any,
    "m": _int_or_odd,
    "u": _int_or_odd,
    "g": _int_or_odd,
    "un": _str_or_odd,
    "gn": _str_or_odd,
    "mt": _int_or_odd,
    "at": _int_or_odd,
    "s": _int_or_odd,
    "c": st.lists(_ref_or_odd, max_size=3) | _any,
    "st": _ref_or_odd,
    # keys the compiled decoder leaves to nodes.py
    "x": st.lists(_ints, max_size=4),
    "lt": st.text(max_size=4),
    "r": _ints,
    "h": st.text(max_size=4),
    "fl": _ints,
    "i": st.booleans(),
    "e": st.text(max_size=4),
    "zz": _any,
}
_common = st.fixed_dictionaries(
    {"n": st.text(min_size=1, max_size=8), "t": st.sampled_from(KINDS), "m": _ints},
    optional={
        k: v for k, v in _fields.items() if k in ("u", "g", "un", "gn", "mt", "at", "s", "c")
    },
)
_object = _common | st.fixed_dictionaries({}, optional=_fields) | _any


def _outcome(decode: Any) -> tuple[str, Any]:
    try:
        return "ok", decode()
    except (ValueError, KeyError, TypeError, IndexError, AttributeError, OverflowError) as exc:
        return "error", type(exc)


@settings(max_examples=500, deadline=None)
@given(st.lists(_object, max_size=6))
def test_the_same_nodes_or_the_same_error(objects: list[Any]) -> None:
    same_c: dict[object, Any] = {}
    same_py: dict[object, Any] = {}
    got = _outcome(
        lambda: _treeread.decode_items(objects, _REFS, same_c, Node, KINDS, nodes._decode_node)
    )
    want = _outcome(lambda: [nodes._decode_node(d, _REFS, same_py) for d in objects])
    assert got == want
    if got[0] == "ok":
        assert same_c == same_py
        for a, b in zip(got[1], want[1], strict=True):  # not only equal: of the same types
            assert [type(getattr(a, f)) for f in Node.__slots__] == [
                type(getattr(b, f)) for f in Node.__slots__
            ]


def test_a_folder_round_trips_through_the_compiled_decoder() -> None:
    items = [
        Node(name=b"f%05d" % i, kind=nodes.FILE, mode=0o644, user="root", size=i, chunks=[c])
        for i, c in enumerate(_REFS * 50)
    ]
    items.append(Node(name=b"sub", kind=nodes.DIR, mode=0o755, subtree=_REFS[1]))
    odd = Node(name=b"\xff-not-utf8", kind=nodes.FILE, mode=0o600, xattrs=(("user.a", b"v"),))
    items.append(odd)
    refs, body = encode_dir(items)
    assert decode_dir(refs, body) == sorted(items, key=lambda n: n.name)


@pytest.mark.parametrize(
    "node",
    [
        {"n": "a", "t": "f", "m": 1, "c": [9]},  # a reference outside the table
        None,  # not an object
        {"n": "a", "t": "f", "m": 1e400},  # an int as no float can be (inf)
    ],
)
def test_a_malformed_node_is_an_integrity_error(node: object) -> None:
    body = json.dumps({"v": FORMAT_VERSION, "nodes": [node]})
    with pytest.raises(IntegrityError, match="malformed files tree"):
        decode_dir(_REFS, body.encode())
