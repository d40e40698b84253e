"""Hypothesis strategies for files tree nodes, shared by the tree encoder's and decoder's tests:
every field with values of every shape a node may hold (names not UTF-8, ints past 64 bits,
xattrs, hard links, errors)."""

from __future__ import annotations

from hypothesis import strategies as st

from strongroom.files.nodes import KINDS, Node

ids = st.sampled_from([bytes([i]) * 32 for i in range(6)]) | st.binary(min_size=32, max_size=32)
ints = st.integers(0, 3) | st.integers(-(2**63), 2**63 - 1) | st.integers(-(2**70), 2**70)
text = st.sampled_from(["", "root", "www-data"]) | st.text(max_size=12)
names = st.binary(min_size=1, max_size=20).filter(lambda n: b"/" not in n and b"\0" not in n)
plain_names = st.text("abcxyz.-_ ~!'", min_size=1, max_size=12).map(str.encode)
node = st.builds(
    Node,
    name=plain_names | names,
    kind=st.sampled_from(KINDS),
    mode=ints,
    uid=ints,
    gid=ints,
    user=text,
    group=text,
    mtime_ns=ints,
    atime_ns=ints,
    size=ints,
    chunks=st.lists(ids, max_size=4),
    extents=st.none() | st.lists(st.tuples(ints, ints), max_size=3),
    subtree=st.none() | ids,
    target=st.none() | plain_names | names,
    rdev=ints,
    link=st.none() | st.sampled_from(["", "2049:1234"]) | st.text(max_size=6),
    xattrs=st.just(()) | st.tuples(st.tuples(st.just("user.a"), st.binary(max_size=8))),
    inconsistent=st.booleans(),
    error=st.none() | text,
    flags=ints,
)
# what a usual folder holds: files with one chunk, the same owner and mode, a few folders
common_node = st.builds(
    Node,
    name=plain_names,
    kind=st.sampled_from(KINDS),
    mode=st.sampled_from([0o100644, 0o40755]),
    user=st.sampled_from(["", "root"]),
    group=st.sampled_from(["", "root"]),
    mtime_ns=st.integers(0, 2**63 - 1),
    size=st.integers(0, 2**40),
    chunks=st.lists(ids, max_size=2),
    subtree=st.none() | ids,
)
