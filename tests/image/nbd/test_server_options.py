"""NBDServer option haggling driven byte by byte, for paths the peers do not take."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from strongroom.image.nbd import MemoryExport, NBDClient, NBDServer
from strongroom.image.nbd import protocol as p

from ._support import MiB


@pytest.fixture
def sock(sockdir: Path) -> Iterator[Path]:
    mem = MemoryExport(MiB)
    mem.write(0, memoryview(b"hello"))
    with NBDServer({"mem": mem}, sockdir / "s.sock"):
        yield sockdir / "s.sock"


def greet(path: Path) -> socket.socket:
    conn = socket.socket(socket.AF_UNIX)
    conn.settimeout(5)
    conn.connect(str(path))
    magic, opt, flags = p.HANDSHAKE.unpack(p.recv_exact(conn, p.HANDSHAKE.size))
    assert (magic, opt) == (p.NBDMAGIC, p.IHAVEOPT)
    assert flags == p.FLAG_FIXED_NEWSTYLE | p.FLAG_NO_ZEROES
    conn.sendall(p.CLIENT_FLAGS.pack(p.FLAG_C_FIXED_NEWSTYLE | p.FLAG_C_NO_ZEROES))
    return conn


def option(conn: socket.socket, opt: int, data: bytes = b"") -> list[tuple[int, bytes]]:
    """Send one option and collect its replies up to the final one."""
    conn.sendall(p.OPTION.pack(p.IHAVEOPT, opt, len(data)) + data)
    replies = []
    while True:
        magic, got, rtype, length = p.OPTION_REPLY.unpack(p.recv_exact(conn, 20))
        assert (magic, got) == (p.OPT_REPLY_MAGIC, opt)
        replies.append((rtype, p.recv_exact(conn, length)))
        if rtype == p.REP_ACK or rtype & p.REP_FLAG_ERROR:
            return replies


def meta_query(export: str, *queries: str) -> bytes:
    body = p.pack_string(export) + p.U32.pack(len(queries))
    return body + b"".join(p.pack_string(q) for q in queries)


def test_unknown_options_and_tls_are_unsupported(sock: Path) -> None:
    with greet(sock) as conn:
        assert option(conn, 99)[0][0] == p.REP_ERR_UNSUP
        assert option(conn, p.OPT_STARTTLS)[0][0] == p.REP_ERR_UNSUP
        assert option(conn, p.OPT_LIST, b"junk")[0][0] == p.REP_ERR_INVALID
        assert option(conn, p.OPT_ABORT) == [(p.REP_ACK, b"")]


def test_meta_context_listing_and_rules(sock: Path) -> None:
    with greet(sock) as conn:
        early = option(conn, p.OPT_LIST_META_CONTEXT, meta_query("mem"))
        assert early[0][0] == p.REP_ERR_INVALID  # needs structured replies first
        assert option(conn, p.OPT_STRUCTURED_REPLY) == [(p.REP_ACK, b"")]
        listed = option(conn, p.OPT_LIST_META_CONTEXT, meta_query("mem"))
        names = {data[4:].decode() for rtype, data in listed if rtype == p.REP_META_CONTEXT}
        assert names == {"base:allocation", "x-strongroom:dirty"}
        base = option(conn, p.OPT_LIST_META_CONTEXT, meta_query("mem", "base:"))
        assert [data[4:] for _, data in base[:-1]] == [b"base:allocation"]
        chosen = option(
            conn, p.OPT_SET_META_CONTEXT, meta_query("mem", "x-strongroom:dirty", "a:b")
        )
        assert [(t, d[4:]) for t, d in chosen] == [
            (p.REP_META_CONTEXT, b"x-strongroom:dirty"),
            (p.REP_ACK, b""),
        ]
        missing = option(conn, p.OPT_SET_META_CONTEXT, meta_query("nope", "base:allocation"))
        assert missing[0][0] == p.REP_ERR_UNKNOWN
        truncated = option(conn, p.OPT_SET_META_CONTEXT, p.U32.pack(50) + b"mem")
        assert truncated[0][0] == p.REP_ERR_INVALID


def test_legacy_export_name_then_simple_read(sock: Path) -> None:
    with greet(sock) as conn:
        conn.sendall(p.OPTION.pack(p.IHAVEOPT, p.OPT_EXPORT_NAME, 3) + b"mem")
        size, flags = p.EXPORT_NAME_REPLY.unpack(p.recv_exact(conn, 10))  # no 124 zeroes
        assert size == MiB and flags & p.TFLAG_HAS_FLAGS and not flags & p.TFLAG_SEND_DF
        conn.sendall(p.REQUEST.pack(p.REQUEST_MAGIC, 0, p.CMD_READ, 77, 0, 8))
        magic, error, cookie = p.SIMPLE_REPLY.unpack(p.recv_exact(conn, 16))
        assert (magic, error, cookie) == (p.SIMPLE_REPLY_MAGIC, 0, 77)
        assert p.recv_exact(conn, 8) == b"hello\0\0\0"
        conn.sendall(p.REQUEST.pack(p.REQUEST_MAGIC, 0, 42, 78, 0, 0))  # unknown command
        assert p.SIMPLE_REPLY.unpack(p.recv_exact(conn, 16))[1] == p.EINVAL
        conn.sendall(p.REQUEST.pack(p.REQUEST_MAGIC, 0, p.CMD_DISC, 79, 0, 0))
        assert conn.recv(1) == b""  # the server hangs up after DISC


def test_legacy_export_name_unknown_hangs_up(sock: Path) -> None:
    with greet(sock) as conn:
        conn.sendall(p.OPTION.pack(p.IHAVEOPT, p.OPT_EXPORT_NAME, 4) + b"nope")
        assert conn.recv(1) == b""  # NBD_OPT_EXPORT_NAME cannot report errors


def test_tcp_round_trip() -> None:
    mem = MemoryExport(MiB)
    with NBDServer({"": mem}, tcp=("127.0.0.1", 0)) as server:
        assert server.tcp_address is not None
        with NBDClient(server.tcp_address) as client:
            client.write(100, b"over tcp")
            assert client.pread(98, 12) == b"\0\0over tcp\0\0"
