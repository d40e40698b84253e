"""``POST /v1/vaults/V/read``: many ranges in one request, judged like single reads."""

from __future__ import annotations

import http.client
import json
import os
from pathlib import Path

import pytest

from strongroom.errors import AccessDenied, ObjectNotFound, TransientStorageError
from strongroom.storage import batch
from strongroom.storage.batch import frame, unframe
from strongroom.storage.names import content_digest
from tests.server.conftest import InProcess, in_process


def _pack(b: object, data: bytes) -> str:
    digest = content_digest(data).hex()
    name = f"data/{digest[:2]}/{digest}"
    b.put(name, data)  # type: ignore[attr-defined]
    return name


def _post(srv: InProcess, token: str, body: bytes) -> tuple[int, dict[str, object]]:
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
    try:
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        conn.request("POST", "/v1/vaults/v/read", body=body, headers=headers)
        resp = conn.getresponse()
        text = resp.read()
    finally:
        conn.close()
    return resp.status, json.loads(text) if resp.status != 200 else {}


def test_a_batch_read_returns_each_range(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with in_process(tmp_path / "srv") as srv:
        writer = srv.backend("backup")
        one, two = os.urandom(5000), os.urandom(7000)
        a, b = _pack(writer, one), _pack(writer, two)
        reader = srv.backend("restore")
        asked = [(a, 0, 100), (b, 6990, 50), (a, 4000, 1000), (b, 0, 0)]
        got = reader.get_ranges(asked)
        assert [bytes(g) for g in got] == [one[:100], two[6990:], one[4000:], b""]
        monkeypatch.setattr(batch, "MAX_RANGES", 2)  # cut into requests within the limits
        assert [bytes(g) for g in reader.get_ranges(asked)] == [bytes(g) for g in got]
        with pytest.raises(ObjectNotFound):
            reader.get_ranges([(a, 0, 10), ("data/ab/ab" + "0" * 62, 0, 10)])
        entries = srv.server.catalog.audit_log(100)
        reads = [e for e in entries if e.action == "read" and e.status == 200]
        assert len(reads) == 3  # one row per request, naming what it read
        assert any(a in e.detail and b in e.detail for e in reads)


def test_roles_that_may_not_read_data_are_refused(tmp_path: Path) -> None:
    with in_process(tmp_path / "srv") as srv:
        name = _pack(srv.backend("backup"), os.urandom(100))
        made = srv.server.catalog  # an enrol token reaches no vault
        from strongroom.server.auth import new_token

        enrol = new_token("enrol")
        made.add_token(enrol.row)
        status, doc = _post(
            srv,
            enrol.secret,
            json.dumps({"ranges": [{"name": name, "offset": 0, "length": 1}]}).encode(),
        )
        assert status == 403 and doc["kind"] == "forbidden"
        status, _ = _post(srv, "srt_bogus", b'{"ranges": []}')
        assert status == 401


def _range(name: object = "config", offset: object = 0, length: object = 1) -> dict[str, object]:
    return {"name": name, "offset": offset, "length": length}


MALFORMED: dict[str, bytes] = {
    "not JSON": b"{ranges",
    "not an object": b"[1, 2]",
    "no ranges": b"{}",
    "empty list": b'{"ranges": []}',
    "negative offset": json.dumps({"ranges": [_range(offset=-1)]}).encode(),
    "negative length": json.dumps({"ranges": [_range(length=-5)]}).encode(),
    "huge offset": json.dumps({"ranges": [_range(offset=1 << 70)]}).encode(),
    "offset not a number": json.dumps({"ranges": [_range(offset="x")]}).encode(),
    "missing length": json.dumps({"ranges": [{"name": "config", "offset": 0}]}).encode(),
    "dot-dot name": json.dumps({"ranges": [_range(name="data/../config")]}).encode(),
    "unknown kind": json.dumps({"ranges": [_range(name="etc/passwd")]}).encode(),
    "name not a string": json.dumps({"ranges": [_range(name=5)]}).encode(),
    "too many ranges": json.dumps({"ranges": [_range()] * (batch.MAX_RANGES + 1)}).encode(),
    "too many bytes": json.dumps(
        {"ranges": [_range(length=batch.MAX_BYTES), _range(length=1)]}
    ).encode(),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_batch_reads_get_400(tmp_path: Path, case: str) -> None:
    with in_process(tmp_path / "srv") as srv:
        status, doc = _post(srv, srv.tokens["restore"], MALFORMED[case])
        assert status == 400, doc
        assert isinstance(doc["error"], str) and "\n" not in doc["error"]


def test_an_oversized_request_body_gets_413(tmp_path: Path) -> None:
    with in_process(tmp_path / "srv") as srv:
        status, doc = _post(srv, srv.tokens["restore"], b" " * (2 << 20))
        assert status == 413, doc


def test_garbled_answers_are_transient_errors() -> None:
    good = frame([b"abc", b""])
    assert [bytes(p) for p in unframe(good, [3, 5])] == [b"abc", b""]
    for body, lengths in (
        (good[:-1], [3, 0]),
        (good, [2, 0]),
        (good + b"x", [3, 0]),
        (good, [3, 0, 1]),
    ):
        with pytest.raises(TransientStorageError):
            unframe(body, lengths)


def test_a_scoped_token_cannot_batch_read_other_sources(tmp_path: Path) -> None:
    from strongroom.server.auth import new_token
    from strongroom.storage.http import HttpBackend, ServerAddress

    with in_process(tmp_path / "srv") as srv:
        scoped = {}
        for s in ("a", "b"):
            made = new_token("backup", sources=[s])
            srv.server.catalog.add_token(made.row)
            scoped[s] = HttpBackend(
                ServerAddress("http", "127.0.0.1", srv.port, ""), "v", made.secret
            )
        mine, theirs = _pack(scoped["a"], os.urandom(300)), _pack(scoped["b"], os.urandom(300))
        assert len(scoped["a"].get_ranges([(mine, 0, 10), (mine, 20, 10)])) == 2
        with pytest.raises(AccessDenied, match="other sources"):
            scoped["a"].get_ranges([(mine, 0, 10), (theirs, 0, 10)])


def test_a_server_without_the_batch_route_is_read_range_by_range(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from strongroom.server import batchread

    monkeypatch.setattr(batchread, "add_routes", lambda app, server: None)  # an older server
    with in_process(tmp_path / "srv") as srv:
        one = os.urandom(3000)
        a = _pack(srv.backend("backup"), one)
        got = srv.backend("restore").get_ranges([(a, 0, 10), (a, 2990, 20)])
        assert [bytes(g) for g in got] == [one[:10], one[2990:]]
        with pytest.raises(ObjectNotFound):  # a missing object is still reported as missing
            srv.backend("restore").get_ranges([(a, 0, 1), ("data/ab/ab" + "0" * 62, 0, 1)])
