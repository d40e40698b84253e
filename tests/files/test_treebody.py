"""The tree decoder that reads a tree chunk's body itself (files/_treebody.c) gives exactly what
json.loads and nodes.py's decoder give: the same nodes, of the same types, for every body the
encoder writes, for bodies in any other JSON form and for damaged ones (where both report a
malformed tree)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from strongroom.errors import IntegrityError
from strongroom.files import _treeread, nodes
from strongroom.files.nodes import FORMAT_VERSION, KINDS, Node, decode_dir, encode_dir
from tests.files import nodestrategies

_REFS = [bytes([i]) * 32 for i in range(4)]
_HEAD = b'{"v":%d,"nodes":[' % FORMAT_VERSION


def _reference(refs: list[bytes], body: bytes) -> tuple[str, Any]:
    """What the json module and nodes.py's own decoder make of a body."""
    try:
        doc = json.loads(body)
        if doc.get("v") != FORMAT_VERSION:
            raise ValueError("version")
        same: dict[object, Any] = {}
        return "ok", [nodes._decode_node(d, refs, same) for d in doc["nodes"]]
    except nodes._MALFORMED as exc:
        return "error", type(exc)


def _decoded(refs: list[bytes], body: bytes) -> tuple[str, Any]:
    try:
        return "ok", decode_dir(refs, body)
    except IntegrityError:
        return "error", None


def _fast(refs: list[bytes], body: bytes) -> list[Node] | None:
    out: list[Node] | None = _treeread.decode_body(
        body, _HEAD, refs, {}, Node, KINDS, nodes._node_from_text
    )
    return out


def _assert_same(got: list[Node], want: list[Node]) -> None:
    assert got == want
    for a, b in zip(got, want, strict=True):  # not only equal: of the same types
        assert [type(getattr(a, f)) for f in Node.__slots__] == [
            type(getattr(b, f)) for f in Node.__slots__
        ]


def _assert_agree(refs: list[bytes], body: bytes) -> None:
    got, want = _decoded(refs, body), _reference(refs, body)
    assert got[0] == want[0], (body, want)
    if got[0] == "ok":
        _assert_same(got[1], want[1])
    try:  # and the compiled path alone, where it answers (decode_dir would hide its mistakes)
        fast = _fast(refs, body)
    except nodes._MALFORMED:
        fast = None
    if fast is not None:
        assert want[0] == "ok"
        _assert_same(fast, want[1])


@settings(max_examples=400, deadline=None)
@given(st.lists(nodestrategies.node, max_size=8, unique_by=lambda n: n.name))
def test_every_body_the_encoder_writes_is_read_straight(items: list[Node]) -> None:
    refs, body = encode_dir(items)
    fast = _fast(refs, body)
    assert fast is not None  # never handed back to json.loads
    _assert_same(fast, _reference(refs, body)[1])


@settings(max_examples=100, deadline=None)
@given(st.lists(nodestrategies.common_node, min_size=2, max_size=12, unique_by=lambda n: n.name))
def test_repeated_values_are_one_object(items: list[Node]) -> None:
    # a restore keeps every node it plans: a mode or an owner is one object per folder
    refs, body = encode_dir(items)
    fast = _fast(refs, body)
    assert fast is not None
    for field in ("mode", "uid", "gid", "user", "group"):
        seen: dict[object, object] = {}
        for node in fast:
            value = getattr(node, field)
            assert seen.setdefault(value, value) is value


# JSON values of every kind, for the fields and for keys the encoder never writes
_scalar = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=6)
)
_value = st.recursive(_scalar, lambda inner: st.lists(inner, max_size=3), max_leaves=6)
_field_values: dict[str, st.SearchStrategy[Any]] = {
    "n": st.text(min_size=1, max_size=8) | _scalar,
    "t": st.sampled_from(KINDS) | _scalar,
    "m": st.integers(-(2**70), 2**70) | _scalar,
    "u": st.integers(-3, 3) | _scalar,
    "g": st.integers(0, 3) | _scalar,
    "un": st.text(max_size=6) | _scalar,
    "gn": st.text(max_size=6) | _scalar,
    "mt": st.integers(-(2**64), 2**64) | _scalar,
    "at": st.integers(0, 3) | _scalar,
    "s": st.integers(0, 2**64) | _scalar,
    "r": st.integers(-3, 2**64) | _scalar,
    "fl": st.integers(0, 2**40) | _scalar,
    "c": st.lists(st.integers(-6, 6), max_size=3) | _value,
    "st": st.integers(-6, 6) | _value,
    "x": st.lists(st.integers(0, 9), max_size=4) | _value,
    "lt": st.text(max_size=4) | _value,
    "h": st.text(max_size=4) | _value,
    "xa": st.lists(st.tuples(st.just("user.a"), st.just("dmFsdWU=")), max_size=2) | _value,
    "zz": _value,
}
_common_keys = ("u", "g", "un", "gn", "mt", "at", "s", "r", "h", "fl", "c", "st", "lt")
_objects = (
    st.fixed_dictionaries(
        {"n": st.text(min_size=1, max_size=8), "t": st.sampled_from(KINDS), "m": st.integers()},
        optional={k: v for k, v in _field_values.items() if k in _common_keys},
    )
    | st.fixed_dictionaries({}, optional=_field_values)
    | _value
)


@settings(max_examples=500, deadline=None)
@given(st.lists(_objects, max_size=5), st.booleans())
def test_any_json_gives_the_same_nodes_or_the_same_error(objs: list[Any], compact: bool) -> None:
    doc = {"v": FORMAT_VERSION, "nodes": objs}
    text = json.dumps(doc, separators=(",", ":")) if compact else json.dumps(doc)
    _assert_agree(_REFS, text.encode())


@settings(max_examples=500, deadline=None)
@given(
    st.lists(nodestrategies.node, min_size=1, max_size=4, unique_by=lambda n: n.name),
    st.data(),
)
def test_a_damaged_body_gives_the_same_nodes_or_a_malformed_tree(
    items: list[Node], data: st.DataObject
) -> None:
    refs, body = encode_dir(items)
    damaged = bytearray(body)
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(damaged) - 1))
        what = data.draw(st.sampled_from(["set", "insert", "delete"]))
        byte = data.draw(st.sampled_from(b'{}[],:"\\u0123456789-.eE ntfx\x00\x7f\xc3'))
        if what == "set":
            damaged[at] = byte
        elif what == "insert":
            damaged.insert(at, byte)
        else:
            del damaged[at]
    _assert_agree(refs, bytes(damaged))


@pytest.mark.parametrize(
    "nodes_json",
    [
        "",  # no nodes
        '{"n":"a\\/b\\u0041\\ud83d\\ude00","t":"f","m":1}',  # escapes, a surrogate pair
        '{"n":"\\udcff\\ud800x","t":"f","m":1}',  # lone surrogates (a name not UTF-8)
        '{"n":"\\ud800\\u0041","t":"f","m":1}',  # a high surrogate, then not a low one
        '{"n":"a","t":"f","m":9223372036854775807,"mt":-9223372036854775808}',
        '{"n":"a","t":"f","m":9999999999999999999,"s":18446744073709551616}',  # past 64 bits
        '{"n":"a","t":"f","m":-0,"u":-1}',
        '{"n":"a","t":"f","m":1.0}',  # a float
        '{"n":"a","t":"f","m":1e3}',
        '{"n":"a","t":"f","m":01}',  # not JSON
        '{"n":"a","t":"f","m":1,"m":2}',  # a key twice: json keeps the last
        '{"n":"a","t":"f","m":1,"c":[-1,0]}',  # a reference from the end
        '{"n":"a","t":"f","m":1,"c":[4]}',  # outside the table
        '{"n":"a","t":"f","m":1,"st":null}',
        '{"n":"a","t":"f","m":1,"lt":"x","h":"1:2","xa":[["user.a","dmFsdWU="]],"e":"x"}',
        '{"n":"a","t":"l","m":1,"lt":"\\udcff/x","h":"1:2","r":5,"fl":16}',  # read here
        '{"n":"a","t":"f","m":1,"h":3}',  # a link group that is not a string
        '{"n":"a","t":"f","m":1,"h":"","lt":""}',  # empty: kept, not the defaults
        '{"n":"a","t":"l","m":1,"lt":null}',
        '{"n":"a","t":"c","m":1,"r":-1,"fl":18446744073709551616}',
        '{"n":"a","t":"f","m":1,"h":"1:2","h":"1:3"}',  # twice
        '{"n":"a","t":"\\u0066","m":1}',  # the type escaped
        '{"n":"a","t":"q","m":1}',  # an unknown type
        '{"n":"a","t":"f"}',  # no mode
        '{"n":"a\x01","t":"f","m":1}',  # a control character in a string
        '{"n":"\xc3\xa9","t":"f","m":1}',  # not ASCII (the encoder escapes it)
        '{"n":"a","t":"f","m":1} ',  # white space
        '{"n":"a","t":"f","m":1},{"n":"b","t":"d","m":2,"st":3}',
        '{"n":"a","t":"f","m":1},',  # a trailing comma
        '{"n":"a","t":"f","m":1}}',
        '{"n":"a","t":"f","m":1,"x":[1,2],"zz":{"a":["}"]}}',  # braces in a string
        '{"n":"a\\"}","t":"f","m":1,"zz":1}',
        "[]",  # not an object
        '{"n":"a","t":"f","m":1,"s":"\\uZZZZ","zz":1}',
    ],
)
def test_forms_and_damage_by_hand(nodes_json: str) -> None:
    for tail in ("]}", "]}x", '],"more":1}', "]"):
        _assert_agree(_REFS, _HEAD + nodes_json.encode("latin-1") + tail.encode())


@pytest.mark.parametrize(
    "node",
    [
        '{"n":"a\\ud83d\\ude00","t":"f","m":1}',  # a surrogate pair: one code point
        '{"n":"\\udcff","t":"f","m":1,"un":"\\ud83d\\ude00\\u00e9","gn":"\\\\\\"\\t"}',
        '{"n":"x","t":"f","m":1,"un":"\\ud800\\u0041","gn":"\\udc00"}',  # lone ones
        '{"n":"l","t":"l","m":1,"lt":"\\udcff\\ud83d\\ude00/a","h":"\\u0031:2"}',
    ],
)
def test_escaped_strings_are_read_without_json(node: str) -> None:
    body = _HEAD + node.encode() + b"]}"
    fast = _fast(_REFS, body)
    assert fast is not None
    _assert_same(fast, _reference(_REFS, body)[1])


@given(st.just(b'{"v":1,"nodes":[{"n":"a","t":"f","m":1}]}'))
@example(b'{"v":1.0,"nodes":[{"n":"a","t":"f","m":1}]}')
@example(b'{"nodes":[{"n":"a","t":"f","m":1}],"v":1}')
@example(b'{"v":2,"nodes":[]}')
@example(b'\xef\xbb\xbf{"v":1,"nodes":[]}')
def test_other_heads_are_read_by_json(body: bytes) -> None:
    _assert_agree(_REFS, body)


def test_the_canonical_body_is_read_without_json(monkeypatch: pytest.MonkeyPatch) -> None:
    items = [
        Node(name=b"f%d" % i, kind=nodes.FILE, mode=0o644, chunks=[c]) for i, c in enumerate(_REFS)
    ]
    # hard links, a symlink (a name not UTF-8 in its target), a device, inode flags
    items[1].link = items[2].link = "2049:77"
    items.append(Node(name=b"l", kind=nodes.SYMLINK, mode=0o777, target=b"../\xff/f1"))
    items.append(Node(name=b"tty", kind=nodes.CHARDEV, mode=0o620, rdev=1025, flags=16))
    refs, body = encode_dir(items)

    def no_json(_: object) -> None:
        raise AssertionError("json.loads called")

    monkeypatch.setattr(json, "loads", no_json)
    assert decode_dir(refs, body) == items
