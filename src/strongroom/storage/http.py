"""A vault served by ``strongroom server``: the Backend protocol over HTTP(S).

``http(s)://HOST[:PORT][/PREFIX]/VAULT`` names vault ``VAULT`` on the server at
``http(s)://HOST[:PORT][/PREFIX]``.  The client holds a token (``STRONGROOM_TOKEN``, or the
file ``STRONGROOM_TOKEN_FILE`` names), never the storage's credentials; encryption stays here.

Only the standard library is used (``http.client`` with a pool of keep-alive connections), so
opening a served vault costs no import of a server framework or an HTTP library.  The server's
refusals become storage errors: 404 not-found, 401/403/409/400/413/408 permanent (with the
server's one-line reason), 5xx and connection failures transient (retried by the caller); a
settings change kept for a second admin's approval (202) is :class:`ApprovalPending`.
A recovery point is put with its source (:mod:`strongroom.storage.served`), and the source the
server recorded for each point it lists or sends is kept in ``point_sources``.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import os
import queue
import ssl
from collections.abc import Iterator, Sequence
from pathlib import Path
from urllib.parse import quote, unquote, urlencode, urlsplit

from strongroom.errors import (
    AccessDenied,
    ApprovalPending,
    BackendConfigError,
    ObjectConflict,
    ObjectLocked,
    ObjectNotFound,
    PermanentStorageError,
    RequestRefused,
    StorageError,
    TransientStorageError,
)
from strongroom.records import dataclass
from strongroom.storage.backend import BackendCapabilities, ObjectInfo
from strongroom.storage.batch import Range, batches, unframe
from strongroom.storage.names import check_name, check_prefix, check_range
from strongroom.storage.served import committing_meta, committing_source, storing_sources

API = "/v1"
TOKEN_ENV = "STRONGROOM_TOKEN"
TOKEN_FILE_ENV = "STRONGROOM_TOKEN_FILE"
CA_FILE_ENV = "STRONGROOM_CA_FILE"
ALLOW_HTTP_ENV = "STRONGROOM_ALLOW_HTTP"
ERROR_KIND_HEADER = "X-Strongroom-Error-Kind"
SOURCE_HEADER = "X-Strongroom-Source"
SOURCES_HEADER = "X-Strongroom-Sources"
"""The sources a pack or index object written by prune serves (comma-separated, encoded)."""
POINT_META_HEADER = "X-Strongroom-Point-Meta"
"""A committed point's plain facts for the dashboard (percent-encoded JSON)."""
_POOL_SIZE = 16
_TIMEOUT_S = 120.0


def token_from_env(token_file: Path | None = None) -> str:
    """The token: ``STRONGROOM_TOKEN``, else the file ``token_file`` or
    ``STRONGROOM_TOKEN_FILE`` names (one trailing line break dropped)."""
    env = os.environ.get(TOKEN_ENV)
    if env:
        return env.strip()
    where = token_file or (Path(p) if (p := os.environ.get(TOKEN_FILE_ENV)) else None)
    if where is None:
        raise BackendConfigError(
            f"no server token: set {TOKEN_ENV} or {TOKEN_FILE_ENV} (a file holding the token)"
        )
    try:
        text = where.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise BackendConfigError(f"cannot read token file {where}: {exc}") from None
    if not text:
        raise BackendConfigError(f"token file {where} is empty")
    return text


def encode_source(source: str) -> str:
    """A source name as a header value (percent-encoded UTF-8: any name fits in ASCII)."""
    return quote(source, safe="")


def decode_source(value: str) -> str:
    return unquote(value, errors="strict")


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class ServerAddress:
    """Where a server listens: scheme, host, port and the path prefix of its API."""

    scheme: str
    host: str
    port: int
    prefix: str

    @classmethod
    def parse(cls, url: str) -> ServerAddress:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https") or not parts.hostname:
            raise BackendConfigError(f"invalid server address {url!r}: use https://HOST[:PORT]")
        if parts.query or parts.fragment or parts.username:
            raise BackendConfigError(f"invalid server address {url!r}: no query or user part")
        try:
            port = parts.port or (443 if scheme == "https" else 80)
        except ValueError:
            raise BackendConfigError(f"invalid port in server address {url!r}") from None
        if (
            scheme == "http"
            and not _is_loopback(parts.hostname)
            and os.environ.get(ALLOW_HTTP_ENV) != "1"
        ):
            raise BackendConfigError(
                f"refusing to send a token over plain HTTP to {parts.hostname}: use https:// "
                f"(or set {ALLOW_HTTP_ENV}=1 on a trusted network)"
            )
        return cls(scheme, parts.hostname, port, parts.path.rstrip("/"))

    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}{self.prefix}"


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> object:
        try:
            return json.loads(self.body)
        except ValueError:
            raise TransientStorageError(f"server sent invalid JSON (HTTP {self.status})") from None


class HttpClient:
    """A thread-safe pool of keep-alive connections to one server, with a bearer token."""

    def __init__(self, address: ServerAddress, token: str, *, timeout: float = _TIMEOUT_S) -> None:
        self.address = address
        self._token = token
        self._timeout = timeout
        self._idle: queue.LifoQueue[http.client.HTTPConnection] = queue.LifoQueue()
        self._ssl: ssl.SSLContext | None = None
        if address.scheme == "https":
            self._ssl = ssl.create_default_context(cafile=os.environ.get(CA_FILE_ENV) or None)

    def _connect(self) -> http.client.HTTPConnection:
        a = self.address
        if self._ssl is not None:
            return http.client.HTTPSConnection(
                a.host, a.port, timeout=self._timeout, context=self._ssl
            )
        return http.client.HTTPConnection(a.host, a.port, timeout=self._timeout)

    def request(
        self,
        method: str,
        path: str,
        body: bytes | bytearray | memoryview | None = None,
        extra: dict[str, str] | None = None,
    ) -> Reply:
        """One request; an idle pooled connection the server closed meanwhile is replaced
        once (every request of the API may be repeated: puts are idempotent)."""
        headers = {"Authorization": f"Bearer {self._token}", **(extra or {})}
        if body is not None:
            headers.setdefault("Content-Type", "application/octet-stream")
        for attempt in range(2):
            try:
                conn, reused = self._idle.get_nowait(), True
            except queue.Empty:
                conn, reused = self._connect(), False
            try:
                conn.request(method, self.address.prefix + path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as e:
                conn.close()
                if reused and attempt == 0:
                    continue
                raise TransientStorageError(f"{self.address.url()}: connection lost: {e}") from e
            except ssl.SSLCertVerificationError as e:
                conn.close()  # retrying cannot make the certificate trusted
                raise PermanentStorageError(f"{self.address.url()}: {e}") from e
            except (OSError, http.client.HTTPException) as e:
                conn.close()
                raise TransientStorageError(f"{self.address.url()}: {e}") from e
            reply = Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)
            if resp.will_close or self._idle.qsize() >= _POOL_SIZE:
                conn.close()
            else:
                self._idle.put(conn)
            return reply
        raise AssertionError("unreachable: the loop returns or raises")

    def close(self) -> None:
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                return


def reason_of(reply: Reply) -> str:
    """The server's one-line reason for a refusal (its JSON ``error``), else the status."""
    try:
        doc = json.loads(reply.body)
        text = str(doc["error"]) if isinstance(doc, dict) and "error" in doc else ""
    except ValueError:
        text = ""
    text = " ".join(text.split())[:300]
    return f"{text} (HTTP {reply.status})" if text else f"HTTP {reply.status}"


def raise_for(reply: Reply, what: str, name: str | None = None) -> None:
    """Turn a refusal into the storage error class the vault and the CLI act on."""
    status = reply.status
    if status < 300:
        return
    kind = reply.headers.get(ERROR_KIND_HEADER.lower(), "")
    message = f"{what}: {reason_of(reply)}"
    error: type[StorageError]
    if status == 404 and kind == "not-found":
        error = ObjectNotFound
    elif status in (401, 403):
        error = AccessDenied
    elif status == 409:
        error = ObjectConflict
    elif status == 423:
        error = ObjectLocked
    elif status in (400, 404, 405, 408, 411, 413, 414, 422):
        error = RequestRefused
    elif kind == "permanent":
        error = PermanentStorageError
    elif status >= 500 or status == 429:
        error = TransientStorageError
    else:
        error = PermanentStorageError
    raise error(message, name=name)


class HttpBackend:
    """The objects of one vault on a ``strongroom server``."""

    server_decides_settings = True
    """The server judges settings changes (see :mod:`strongroom.storage.served`)."""

    def __init__(self, address: ServerAddress, vault: str, token: str) -> None:
        self.address, self.vault = address, vault
        self._client = HttpClient(address, token)
        self._base = f"{API}/vaults/{quote(vault, safe='')}"
        self.point_sources: dict[str, str] = {}
        """The source the server recorded for each point it listed or sent."""
        self.object_sources: dict[str, list[str]] = {}
        """The sources the server recorded for each pack and index object it listed (it
        lists them to unscoped tokens only)."""

    @property
    def capabilities(self) -> BackendCapabilities:
        # A request costs a round trip and CPU on both sides: read a run's spans in one.
        return BackendCapabilities(batch_reads=True)

    def describe(self) -> str:
        return f"{self.address.url()}/{self.vault}"

    def close(self) -> None:
        self._client.close()

    def _object(self, name: str, query: dict[str, int] | None = None) -> str:
        path = f"{self._base}/objects/{quote(check_name(name), safe='/')}"
        return f"{path}?{urlencode(query)}" if query else path

    def _call(
        self,
        method: str,
        path: str,
        name: str,
        body: bytes | bytearray | memoryview | None = None,
        extra: dict[str, str] | None = None,
    ) -> Reply:
        reply = self._client.request(method, path, body, extra)
        raise_for(reply, f"{self.describe()}: {method.lower()} {name}", name)
        return reply

    def _remember_source(self, name: str, value: object) -> None:
        if name.startswith("points/") and isinstance(value, str):
            self.point_sources[name] = value

    def get(self, name: str) -> bytes:
        reply = self._call("GET", self._object(name), name)
        header = reply.headers.get(SOURCE_HEADER.lower())
        if header is not None:
            self._remember_source(name, decode_source(header))
        return reply.body

    def get_range(self, name: str, offset: int, length: int) -> bytes:
        check_range(name, offset, length)
        if length == 0:
            self.stat(name)
            return b""
        path = self._object(name, {"offset": offset, "length": length})
        return self._call("GET", path, name).body

    def get_ranges(self, ranges: Sequence[Range]) -> list[memoryview]:
        """Several ranges in as few requests as the server's limits allow (``POST .../read``,
        :mod:`strongroom.storage.batch`)."""
        for name, offset, length in ranges:
            check_name(name)
            check_range(name, offset, length)
        out: list[memoryview] = []
        for group in batches(ranges):
            if len(group) == 1:
                out.append(memoryview(self.get_range(*group[0])))
                continue
            asked = [{"name": n, "offset": o, "length": size} for n, o, size in group]
            body = json.dumps({"ranges": asked}).encode()
            extra = {"Content-Type": "application/json"}
            reply = self._client.request("POST", f"{self._base}/read", body, extra)
            if reply.status in (404, 405) and _no_such_route(reply):  # a server before batches
                out += [memoryview(self.get_range(*r)) for r in group]
                continue
            raise_for(reply, f"{self.describe()}: read {group[0][0]}", group[0][0])
            out += unframe(reply.body, [size for _, _, size in group])
        return out

    def put(self, name: str, data: bytes | bytearray | memoryview) -> None:
        extra = _sources_headers(name)
        reply = self._call("PUT", self._object(name), name, data, extra)
        if reply.status == 202:  # kept for a second admin: nothing is stored yet
            doc = reply.json()
            ident = doc.get("approval") if isinstance(doc, dict) else None
            what = doc.get("summary") if isinstance(doc, dict) else None
            raise ApprovalPending(
                f"{self.describe()}: {what or 'the change'} is waiting for a second admin's "
                f"approval: strongroom approve {ident}",
                name=name,
            )

    def delete(self, name: str) -> None:
        self._call("DELETE", self._object(name), name)

    def stat(self, name: str) -> ObjectInfo:
        path = f"{self._base}/stat/{quote(check_name(name), safe='/')}"
        doc = self._call("GET", path, name).json()
        return _info(doc)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        check_prefix(prefix)
        path = f"{self._base}/objects?{urlencode({'prefix': prefix})}"
        doc = self._call("GET", path, prefix or "/").json()
        items = doc.get("objects") if isinstance(doc, dict) else None
        if not isinstance(items, list):
            raise TransientStorageError(f"{self.describe()}: invalid listing from the server")
        infos = [_info(item) for item in items]
        for info, item in zip(infos, items, strict=True):
            self._remember_source(info.name, item.get("source"))
            sources = item.get("sources")
            if isinstance(sources, list) and all(isinstance(s, str) for s in sources):
                self.object_sources[info.name] = sources
        return iter(infos)


def _no_such_route(reply: Reply) -> bool:
    """Whether a 404 or 405 says the route is missing (not a missing vault or object)."""
    return reply.headers.get(ERROR_KIND_HEADER.lower(), "") in ("", "refused")


def _sources_headers(name: str) -> dict[str, str] | None:
    """What a put tells the server beyond the bytes: a point's source, or the sources a
    repacked pack or index object serves."""
    if name.startswith("points/"):
        source = committing_source()
        if source is None:
            return None
        meta = committing_meta()
        headers = {SOURCE_HEADER: encode_source(source)}
        if meta is not None:
            headers[POINT_META_HEADER] = quote(json.dumps(meta, sort_keys=True), safe="")
        return headers
    sources = storing_sources() if name.startswith(("data/", "index/")) else ()
    return {SOURCES_HEADER: encode_sources(sources)} if sources else None


def encode_sources(sources: tuple[str, ...] | list[str]) -> str:
    return ",".join(encode_source(s) for s in sources)


def decode_sources(value: str) -> list[str]:
    return [decode_source(s) for s in value.split(",")] if value else []


def _info(doc: object) -> ObjectInfo:
    if not isinstance(doc, dict):
        raise TransientStorageError("invalid object description from the server")
    name, size, mtime = doc.get("name"), doc.get("size"), doc.get("mtime")
    if not isinstance(name, str) or not isinstance(size, int):
        raise TransientStorageError("invalid object description from the server")
    return ObjectInfo(name, size, float(mtime) if isinstance(mtime, int | float) else None)


def split_vault_url(location: str) -> tuple[ServerAddress, str]:
    """``https://host:port/prefix/VAULT`` -> (the server's address, ``VAULT``)."""
    head, _, vault = location.rstrip("/").rpartition("/")
    if not vault or head.endswith(":/") or head.endswith(":"):
        raise BackendConfigError(
            f"invalid vault location {location!r}: use https://HOST[:PORT]/VAULT"
        )
    return ServerAddress.parse(head), vault


def open_http(location: str) -> HttpBackend:
    """The backend for a served vault; the token comes from the environment."""
    address, vault = split_vault_url(location)
    return HttpBackend(address, vault, token_from_env())


__all__ = [
    "SOURCES_HEADER",
    "SOURCE_HEADER",
    "HttpBackend",
    "HttpClient",
    "ServerAddress",
    "open_http",
    "raise_for",
    "split_vault_url",
    "token_from_env",
]
