"""Nodes and the encoding of one directory as a tree chunk (format ``files-tree`` v1).

One tree chunk per directory.  Its envelope's reference table lists, once each, every content
chunk of its files and every subdirectory's tree chunk; the body is compact JSON::

    {"v": 1, "nodes": [node, ...]}          nodes sorted by the bytes of their names

and a node refers to chunks by their position in the reference table (``c``: content chunks in
order, ``st``: the subtree), so no id is stored twice.  File names, symlink targets and xattr
names are the file system's bytes decoded with ``surrogateescape``; JSON escapes the lone
surrogates of non-UTF-8 bytes (``\\udcff``), so the encoding is lossless.  Keys (omitted when
empty or zero): ``n`` name, ``t`` type (f d l p c b), ``m`` permission bits with setuid,
setgid and sticky, ``u``/``g`` numeric owner, ``un``/``gn`` owner names, ``mt``/``at`` mtime
and atime in ns, ``s`` size, ``c`` content chunk refs, ``x`` data extents of a sparse file
(flat ``[offset, length, ...]``; without it the content covers ``[0, size)``), ``st`` subtree
ref, ``lt`` symlink target, ``r`` device number, ``h`` hard link group (``"dev:ino"``), ``xa``
xattrs as ``[[name, base64 value], ...]`` (POSIX ACLs are the ``system.posix_acl_*`` ones),
``i`` 1 when the file changed while it was read, ``e`` why a directory's listing is incomplete,
``fl`` the user-settable inode flags (``chattr``) of a file or directory.
"""

from __future__ import annotations

import base64
import json
import operator
import os
import re
import sys
from dataclasses import field, fields
from typing import Any

from strongroom.errors import IntegrityError
from strongroom.records import dataclass

try:  # compiled (setup.py); without it every node is written by _node_json
    from strongroom.files import _treejson
except ImportError:  # pragma: no cover - a build without a C compiler
    _treejson = None  # type: ignore[assignment]
try:
    from strongroom.files import _treeread
except ImportError:  # pragma: no cover - a build without a C compiler
    _treeread = None  # type: ignore[assignment]

FORMAT_VERSION = 1
# Restores write under this prefix before renaming; backups and live diffs never take them.
TEMP_PREFIX = b".strongroom-tmp-"
# Exactly the names a restore gives its temporaries (TEMP_PREFIX, then an 8-hex-digit token
# and a counter, or "probe-" and a token): what a later restore removes after a crash.
TEMP_NAME = re.compile(rb"\.strongroom-tmp-(?:[0-9a-f]{8}-[0-9]+|probe-[0-9a-f]{8})")
# The folder at a restore's target root that holds its temporaries (named by a counter) until
# they are renamed into their folders, so that those only ever get their final entries (an
# ext4 directory never shrinks: every temporary name would have grown it for good).
STAGING_NAME = re.compile(rb"\.strongroom-tmp-staging-[0-9a-f]{8}")

FILE = "f"
DIR = "d"
SYMLINK = "l"
FIFO = "p"
CHARDEV = "c"
BLOCKDEV = "b"
KINDS = (FILE, DIR, SYMLINK, FIFO, CHARDEV, BLOCKDEV)
KIND_NAMES = {
    FILE: "file",
    DIR: "dir",
    SYMLINK: "symlink",
    FIFO: "fifo",
    CHARDEV: "chardev",
    BLOCKDEV: "blockdev",
}

# A tuple, so that the many nodes without xattrs share one empty value.
Xattrs = tuple[tuple[str, bytes], ...]


@dataclass(slots=True, eq=True)
class Node:
    """One directory entry with everything needed to restore it."""

    name: bytes
    kind: str
    mode: int = 0
    uid: int = 0
    gid: int = 0
    user: str = ""
    group: str = ""
    mtime_ns: int = 0
    atime_ns: int = 0
    size: int = 0
    chunks: list[bytes] = field(default_factory=list)
    extents: list[tuple[int, int]] | None = None
    subtree: bytes | None = None
    target: bytes | None = None
    rdev: int = 0
    link: str | None = None
    xattrs: Xattrs = ()
    inconsistent: bool = False
    error: str | None = None
    flags: int = 0  # inode flags (FS_IOC_GETFLAGS), the user-settable ones

    def __reduce__(self) -> tuple[type[Node], tuple[Any, ...]]:
        # Pickled by position: a restore hands tens of thousands to its worker processes,
        # and this takes half the time of the slots' default (and two thirds of the bytes).
        return Node, _node_fields(self)

    @property
    def is_dir(self) -> bool:
        return self.kind == DIR

    def data_extents(self) -> list[tuple[int, int]]:
        """Where the content chunks go: the sparse extents, or the whole file."""
        if self.extents is not None:
            return self.extents
        return [(0, self.size)] if self.size else []


_node_fields = operator.attrgetter(*(f.name for f in fields(Node)))

_FS_ENCODING = sys.getfilesystemencoding()
_FS_ERRORS = sys.getfilesystemencodeerrors()


def _s(raw: bytes) -> str:
    return raw.decode(_FS_ENCODING, _FS_ERRORS)  # os.fsdecode, minus its checks


def _b(text: str) -> bytes:
    return os.fsencode(text)


_OPTIONAL_KEYS = ("u", "g", "un", "gn", "mt", "at", "s", "r", "h", "fl")
_optional_values = operator.attrgetter(
    "uid", "gid", "user", "group", "mtime_ns", "atime_ns", "size", "rdev", "link", "flags"
)


def _node_json(node: Node, ref: dict[bytes, int], refs: list[bytes]) -> str:
    """One node as compact JSON text: keys in this order, falsy optional ones left out.

    Written out piece by piece rather than as a dict for ``json``: a first backup encodes
    every file once, and this takes 2.9 us a node where the dict and the encoder took
    3.4 (docs/benchmarks.md, "Session 24").  Strings go through the ``json`` module's own
    escaping and ints through ``int.__repr__``, as its encoder does, so the bytes are the
    same (``tests/files/test_format_and_patterns.py`` compares them with ``json.dumps``)."""
    out = ['{"n":', _esc(_s(node.name)), ',"t":', _esc(node.kind), ',"m":', repr(node.mode)]
    for key, value in zip(_OPTIONAL_KEYS, _optional_values(node), strict=True):
        if value:
            out.append(f',"{key}":{_esc(value) if value.__class__ is str else repr(value)}')
    if node.inconsistent:
        out.append(',"i":1')
    if node.error:
        out.append(',"e":' + _esc(node.error))
    if node.chunks:
        out.append(',"c":[' + ",".join([repr(_ref(c, ref, refs)) for c in node.chunks]) + "]")
    if node.extents is not None:
        out.append(',"x":[' + ",".join([repr(v) for ext in node.extents for v in ext]) + "]")
    if node.subtree is not None:
        out.append(',"st":' + repr(_ref(node.subtree, ref, refs)))
    if node.target is not None:
        out.append(',"lt":' + _esc(_s(node.target)))
    if node.xattrs:
        pairs = [f"[{_esc(k)},{_esc(_b64(v))}]" for k, v in node.xattrs]
        out.append(',"xa":[' + ",".join(pairs) + "]")
    out.append("}")
    return "".join(out)


def _b64(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")


def _ref(cid: bytes, ref: dict[bytes, int], refs: list[bytes]) -> int:
    """``cid``'s position in the reference table (added at the end the first time)."""
    i = ref.get(cid)
    if i is None:
        i = ref[cid] = len(refs)
        refs.append(cid)
    return i


# JSON string escaping with ensure_ascii, the json module's (C) function: lone surrogates of
# names that are not UTF-8 come out as \udcXX, as json.dumps writes them.
_esc = json.encoder.encode_basestring_ascii
_BODY_HEAD = f'{{"v":{FORMAT_VERSION},"nodes":['
_BODY_HEAD_BYTES = _BODY_HEAD.encode("ascii")


def encode_dir(nodes: list[Node]) -> tuple[list[bytes], bytes]:
    """(reference table, body) of one directory's tree chunk.  ``_treejson.c`` writes the
    common nodes (0.65 us where :func:`_node_json` takes 3) and hands it the others."""
    refs: list[bytes] = []
    ref: dict[bytes, int] = {}
    ordered = sorted(nodes, key=lambda n: n.name)
    if _treejson is not None:
        items = _treejson.encode_items(ordered, ref, refs, _node_json)
        return refs, _BODY_HEAD_BYTES + items + b"]}"
    text = ",".join([_node_json(n, ref, refs) for n in ordered])
    return refs, (_BODY_HEAD + text + "]}").encode("ascii")


def _shared(same: dict[object, Any], value: Any) -> Any:
    """One object per value of a field that repeats from node to node (mode, owner): a
    restore keeps every node it plans, and an int or a str apiece adds up."""
    return same.setdefault(value, value)


def _decode_node(d: dict[str, Any], refs: list[bytes], same: dict[object, Any]) -> Node:
    x = d.get("x")
    st = d.get("st")
    lt = d.get("lt")
    xa = d.get("xa")
    node = Node(
        name=_b(d["n"]),
        kind=d["t"],
        mode=_shared(same, int(d["m"])),
        uid=_shared(same, int(d.get("u", 0))),
        gid=_shared(same, int(d.get("g", 0))),
        user=_shared(same, d.get("un", "")),
        group=_shared(same, d.get("gn", "")),
        mtime_ns=int(d.get("mt", 0)),
        atime_ns=int(d.get("at", 0)),
        size=int(d.get("s", 0)),
        chunks=[refs[i] for i in d.get("c", ())],
        extents=[(x[i], x[i + 1]) for i in range(0, len(x), 2)] if x is not None else None,
        subtree=refs[st] if st is not None else None,
        target=_b(lt) if lt is not None else None,
        rdev=int(d.get("r", 0)),
        link=d.get("h"),
        xattrs=tuple((k, base64.b64decode(v)) for k, v in xa) if xa else (),
        inconsistent=bool(d.get("i", 0)),
        error=d.get("e"),
        flags=int(d.get("fl", 0)),
    )
    if node.kind not in KINDS:
        raise ValueError(f"unknown node type {node.kind!r}")
    return node


_MALFORMED = (ValueError, KeyError, TypeError, IndexError, AttributeError, OverflowError)


def _node_from_text(raw: bytes, refs: list[bytes], same: dict[object, Any]) -> Node:
    """One node's JSON object that ``_treebody.c`` leaves to this module."""
    return _decode_node(json.loads(raw), refs, same)


def _decode_body(refs: list[bytes], body: bytes) -> list[Node] | None:
    """The nodes of a body in the encoder's own form, straight from its text (``_treebody.c``:
    1 us a node where json.loads and the objects' decoding take 4), or None: another form, or
    a malformed node, which :func:`decode_dir`'s json.loads path then reads or reports."""
    if _treeread is None:
        return None
    try:
        return _treeread.decode_body(body, _BODY_HEAD_BYTES, refs, {}, Node, KINDS, _node_from_text)
    except _MALFORMED:
        return None


def decode_dir(refs: list[bytes], body: bytes, tree_id: bytes = b"") -> list[Node]:
    """The nodes of one directory's tree chunk, sorted by name."""
    fast = _decode_body(refs, body)
    if fast is not None:
        return fast
    try:
        doc = json.loads(body)
        if doc.get("v") != FORMAT_VERSION:
            raise ValueError(f"unsupported files tree version {doc.get('v')!r}")
        same: dict[object, Any] = {}
        items = doc["nodes"]
        if _treeread is not None and type(items) is list:  # exactly a list: the C takes it
            # _treeread.c builds the common nodes (1 us where _decode_node takes 5)
            out: list[Node] = _treeread.decode_items(items, refs, same, Node, KINDS, _decode_node)
            return out
        return [_decode_node(d, refs, same) for d in items]
    except _MALFORMED as exc:
        # (a node that is not an object, an int too big for a float: 1e400 is inf)
        name = tree_id.hex()[:16]
        raise IntegrityError(f"tree {name}: malformed files tree ({exc})") from None
