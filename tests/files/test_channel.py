"""The worker pipe's framing (files/channel.py): any message arrives whole and in order,
big ones too; the end of input is an EOFError; ``wait`` reports what is readable."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strongroom.files.channel import Channel, Watch, wait

messages = st.recursive(
    st.none() | st.integers() | st.binary(max_size=200) | st.text(max_size=50),
    lambda inner: st.lists(inner, max_size=5).map(tuple) | st.dictionaries(st.text(), inner),
    max_leaves=20,
)


@pytest.fixture
def pair() -> Iterator[tuple[Channel, Channel]]:
    a, b = socket.socketpair()
    ends = Channel(a.detach()), Channel(b.detach())
    yield ends
    for end in ends:
        end.close()


@given(st.lists(messages, max_size=20))
@settings(max_examples=60, deadline=None)
def test_messages_arrive_whole_and_in_order(msgs: list[object]) -> None:
    a, b = socket.socketpair()
    left, right = Channel(a.detach()), Channel(b.detach())
    try:
        for msg in msgs:
            left.send(msg)
        assert [right.recv() for _ in msgs] == msgs
        assert wait([right], 0) == []
    finally:
        left.close()
        right.close()


def test_messages_bigger_than_the_socket_buffer(pair: tuple[Channel, Channel]) -> None:
    """A 20 MiB message (written while the other end reads) and small ones around it."""
    left, right = pair
    big = ("files", bytes(range(256)) * (80 << 10))

    def send() -> None:
        for msg in ("a", big, "b"):
            left.send(msg)

    sender = threading.Thread(target=send)
    sender.start()
    assert [right.recv(), right.recv(), right.recv()] == ["a", big, "b"]
    sender.join()


def test_end_of_input_and_wait(pair: tuple[Channel, Channel]) -> None:
    left, right = pair
    assert wait([left, right], 0.01) == []
    left.send(("ready",))
    assert wait([left, right], None) == [right]
    assert right.recv() == ("ready",)
    left.close()
    assert wait([right], 1.0) == [right]  # the end of input is readable too
    with pytest.raises(EOFError):
        right.recv()
    with pytest.raises(OSError):
        right.send("to nobody")


def test_a_watch_answers_as_wait_does(pair: tuple[Channel, Channel]) -> None:
    """A watch keeps its poll set: each look sees what has come since, in channel order;
    a channel closed after it was made is never reported."""
    left, right = pair
    x, y = socket.socketpair()
    other, other_end = Channel(x.detach()), Channel(y.detach())
    try:
        watch = Watch([right, other_end])
        assert watch.fds == (right.fileno(), other_end.fileno())
        assert watch.ready(0) == [] and watch.ready(0.01) == []
        other.send("b")
        left.send("a")
        assert watch.ready(None) == [right, other_end] == wait([right, other_end], 0)
        assert right.recv() == "a"
        assert watch.ready(0) == [other_end]
        assert other_end.recv() == "b"
        assert watch.ready(0) == []
        other.close()
        assert watch.ready(1.0) == [other_end]  # the end of input, as wait reports it
        other_end.close()
        assert Watch([right, other_end]).fds == (right.fileno(), -1)
        assert Watch([right, other_end]).ready(0.01) == []
    finally:
        other.close()
        other_end.close()


def test_a_message_cut_short_is_an_eoferror(pair: tuple[Channel, Channel]) -> None:
    """The other end died in the middle of a message: no partial message, an EOFError."""
    left, right = pair
    os.write(left.fileno(), (100).to_bytes(8, "big") + b"only part")
    left.close()
    with pytest.raises(EOFError):
        right.recv()
