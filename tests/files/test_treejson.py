"""The compiled tree encoder (files/_treejson.c) writes exactly what nodes.py's encoder writes,
whatever the nodes hold: it takes the common ones and hands the others back."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strongroom.files import _treejson, nodes
from strongroom.files.nodes import Node, decode_dir, encode_dir
from tests.files import nodestrategies

_node = nodestrategies.node


def _python(monkeypatch: pytest.MonkeyPatch, items: list[Node]) -> tuple[list[bytes], bytes]:
    with monkeypatch.context() as m:
        m.setattr(nodes, "_treejson", None)
        return encode_dir(items)


@settings(max_examples=400, deadline=None)
@given(st.lists(_node, max_size=8, unique_by=lambda n: n.name))
def test_the_same_bytes_and_references(items: list[Node]) -> None:
    assert _treejson.encode_items is not None  # the compiled encoder is under test
    with pytest.MonkeyPatch.context() as m:
        assert encode_dir(items) == _python(m, items)


def test_common_nodes_round_trip() -> None:
    items = [
        Node(
            name=b"f%d" % i,
            kind="f",
            mode=0o644,
            user="root",
            group="root",
            mtime_ns=10**18,
            size=i,
            chunks=[bytes([i % 3]) * 32],
        )
        for i in range(50)
    ] + [Node(name=b"sub", kind="d", mode=0o755, subtree=b"\x09" * 32)]
    refs, body = encode_dir(items)
    assert len(refs) == 4  # three content ids and the subtree, each once
    back = decode_dir(refs, body)
    assert [n.name for n in back] == sorted(n.name for n in items)
    assert back[0].chunks == [b"\0" * 32] and back[-1].subtree == b"\x09" * 32


class _Sub(Node):
    __slots__ = ("extra",)


class _Duck:
    """Not a Node at all: the encoder goes by attribute."""

    def __init__(self, node: Node) -> None:
        for name in Node.__slots__:
            setattr(self, name, getattr(node, name))


@settings(max_examples=100, deadline=None)
@given(st.lists(_node, min_size=1, max_size=6, unique_by=lambda n: n.name))
def test_other_node_types_the_same_bytes(items: list[Node]) -> None:
    """The fields are read at their slots' offsets for one type (the first met) and by
    attribute for any other: the bytes are the same either way."""
    ref: dict[bytes, int] = {}
    refs: list[bytes] = []
    want = _treejson.encode_items(items, ref, refs, nodes._node_json)
    for kind in (_Sub, _Duck):
        others: list[Any] = []
        for n in items:
            other = kind.__new__(kind)
            if kind is _Sub:
                for name in Node.__slots__:
                    setattr(other, name, getattr(n, name))
            else:
                other.__init__(n)  # type: ignore[misc]
            others.append(other)
        ref2: dict[bytes, int] = {}
        refs2: list[bytes] = []
        assert _treejson.encode_items(others, ref2, refs2, nodes._node_json) == want
        assert refs2 == refs


def test_a_field_never_set_is_an_attribute_error() -> None:
    node = Node.__new__(Node)  # no field set at all
    with pytest.raises(AttributeError):
        _treejson.encode_items([node], {}, [], nodes._node_json)
    half = Node(name=b"x", kind="f")
    del half.chunks  # the slot emptied: read by offset, then looked up to say why
    with pytest.raises(AttributeError, match="chunks"):
        _treejson.encode_items([half], {}, [], nodes._node_json)
