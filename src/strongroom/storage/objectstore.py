"""A backend over any obstore store (Azure Blob, S3, and obstore's own memory/local stores).

obstore is one Rust library for every cloud: it pools connections per store, releases the GIL
during requests and is safe to share between threads, so one :class:`ObjectStoreBackend` serves a
whole upload/download thread pool.

Error classification (obstore raises builtin ``FileNotFoundError`` for missing objects and its
own ``obstore.exceptions`` for the rest):

* a missing bucket or container (``NoSuchBucket``, ``ContainerNotFound``) -> permanent, whatever
  the operation: the vault location itself is wrong;
* ``FileNotFoundError`` / ``NotFoundError`` -> :class:`~strongroom.errors.ObjectNotFound`;
* permission, authentication, invalid path, configuration, unsupported, precondition -> permanent;
  a ``put`` refused for want of permission (403: a read-only key, a WORM bucket) ->
  :class:`~strongroom.errors.ReadOnlyStorage`, so reading commands go on without a lock;
* an HTTP status in the message: 408, 429 and 5xx -> transient, other 4xx -> permanent;
* anything else from obstore (connection refused or reset, timeouts, DNS, a body cut short,
  ``JoinError``) -> transient: these carry no status and are the faults a retry is for.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, TypeVar

import obstore
from obstore.exceptions import (
    AlreadyExistsError,
    BaseError,
    InvalidPathError,
    NotFoundError,
    NotSupportedError,
    PermissionDeniedError,
    PreconditionError,
    UnauthenticatedError,
    UnknownConfigurationKeyError,
)

from strongroom.errors import (
    BackendConfigError,
    ObjectNotFound,
    PermanentStorageError,
    ReadOnlyStorage,
    StorageError,
    TransientStorageError,
)
from strongroom.storage.backend import ObjectInfo
from strongroom.storage.names import check_name, check_prefix, check_range, split_prefix

if TYPE_CHECKING:
    from obstore.store import ClientConfig, ObjectStore, RetryConfig

T = TypeVar("T")

_PERMANENT_TYPES = (
    PermissionDeniedError,
    UnauthenticatedError,
    InvalidPathError,
    UnknownConfigurationKeyError,
    NotSupportedError,
    AlreadyExistsError,
    PreconditionError,
    PermissionError,
)
_NO_CONTAINER = re.compile(r"NoSuchBucket|ContainerNotFound|ContainerBeingDeleted")
_STATUS = re.compile(r"status code: (\d{3})")
_BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")

MULTIPART_THRESHOLD = 64 * 1024 * 1024
"""Objects up to this size go up in one request: simplest, atomic and leaves no orphan parts."""


def client_options(endpoint: str | None) -> ClientConfig:
    """HTTP options for a remote store: generous whole-request timeout for large packs."""
    options: ClientConfig = {
        "connect_timeout": timedelta(seconds=10),
        "timeout": timedelta(seconds=300),
    }
    if endpoint is not None and endpoint.startswith("http://"):
        options["allow_http"] = True  # emulators (Azurite, moto) and plain-HTTP gateways
    return options


def retry_config() -> RetryConfig:
    """obstore's own retries stay short: :class:`RetryingBackend` is the outer, visible loop."""
    return {
        "max_retries": 2,
        "backoff": {
            "init_backoff": timedelta(milliseconds=100),
            "max_backoff": timedelta(seconds=1),
        },
        "retry_timeout": timedelta(seconds=60),
    }


def parse_bucket_url(url: str, scheme: str, kind: str) -> tuple[str, str]:
    """Split ``scheme://BUCKET/PREFIX`` into bucket and prefix (``''`` or without slashes)."""
    lead = f"{scheme}://"
    if not url.startswith(lead):
        raise BackendConfigError(f"not a {lead} location: {url!r}")
    if any(c in url for c in "?#\\"):
        raise BackendConfigError(f"invalid {kind} location {url!r}: '?', '#' or '\\' in it")
    bucket, _, prefix = url[len(lead) :].partition("/")
    if not _BUCKET_NAME.match(bucket) or ".." in bucket:
        raise BackendConfigError(
            f"invalid {kind} location {url!r}: {bucket!r} is not a valid {kind} "
            "bucket/container name (3-63 lowercase letters, digits, '-' or '.')"
        )
    prefix = prefix.strip("/")
    if prefix:
        try:
            check_name(prefix)
        except StorageError as e:
            raise BackendConfigError(f"invalid {kind} location {url!r}: bad prefix") from e
    return bucket, prefix


def build_backend(
    url: str,
    prefix: str,
    endpoint: str | None,
    make_store: Callable[[ClientConfig, RetryConfig], ObjectStore],
) -> ObjectStoreBackend:
    """Build a store with the shared HTTP and retry settings and wrap it.

    Any failure to build the store is a configuration error.
    """
    try:
        store = make_store(client_options(endpoint), retry_config())
    except Exception as e:  # obstore reports bad configuration as assorted exception types
        raise BackendConfigError(f"cannot configure storage for {url}: {e}") from e
    return ObjectStoreBackend(store, prefix, url.rstrip("/"))


def classify(err: BaseException, message: str, name: str) -> StorageError:
    """Turn an obstore or OS exception into a storage error (see the module docstring)."""
    text = str(err)
    first = text.strip().splitlines()[0][:300] if text.strip() else type(err).__name__
    full = f"{message}: {first}"
    if _NO_CONTAINER.search(text):
        return PermanentStorageError(
            f"{message}: the bucket or container does not exist", name=name
        )
    if isinstance(err, FileNotFoundError | NotFoundError):
        return ObjectNotFound(full, name=name)
    if isinstance(err, _PERMANENT_TYPES):
        return PermanentStorageError(full, name=name)
    status = _STATUS.search(text)
    if status is not None:
        code = int(status.group(1))
        if code in (408, 429) or code >= 500:
            return TransientStorageError(full, name=name)
        return PermanentStorageError(full, name=name)
    return TransientStorageError(full, name=name)


class ObjectStoreBackend:
    """The Backend protocol over an obstore store, with names kept under ``prefix``."""

    def __init__(
        self,
        store: ObjectStore,
        prefix: str = "",
        description: str | None = None,
        *,
        multipart_threshold: int = MULTIPART_THRESHOLD,
    ) -> None:
        self._store = store
        prefix = prefix.strip("/")
        self._prefix = f"{prefix}/" if prefix else ""
        self._description = description or f"{type(store).__name__}/{prefix}"
        self._multipart_threshold = multipart_threshold

    def describe(self) -> str:
        return self._description

    @property
    def store(self) -> ObjectStore:
        return self._store

    def close(self) -> None:
        """obstore closes its pooled connections when the store is garbage collected."""

    def _key(self, name: str) -> str:
        return self._prefix + check_name(name)

    def _run(self, op: str, name: str, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except (BaseError, OSError) as e:
            error = classify(e, f"{op} {name} on {self._description}", name)
            if op == "put" and _refused(e, error):
                raise ReadOnlyStorage(str(error), name=name) from e
            raise error from e

    def get(self, name: str) -> bytes:
        key = self._key(name)
        return self._run("get", name, lambda: bytes(obstore.get(self._store, key).bytes()))

    def get_range(self, name: str, offset: int, length: int) -> bytes:
        """Up to ``length`` bytes from ``offset``; empty when ``offset`` is at or past the end.

        Stores reject empty ranges and ranges starting at or past the end (416), so those
        cases are settled with a ``head`` instead of reported as errors.
        """
        key = self._key(name)
        check_range(name, offset, length)
        if length == 0:
            self.stat(name)  # still ObjectNotFound for a missing object
            return b""
        try:
            return self._run(
                "get_range",
                name,
                lambda: bytes(obstore.get_range(self._store, key, start=offset, length=length)),
            )
        except StorageError as e:
            if isinstance(e, ObjectNotFound) or not self._starts_past_end(name, offset):
                raise
            return b""

    def _starts_past_end(self, name: str, offset: int) -> bool:
        try:
            return offset >= self.stat(name).size
        except StorageError:
            return False  # the original error is the one to report

    def put(self, name: str, data: bytes | bytearray | memoryview) -> None:
        key = self._key(name)
        view = memoryview(data).cast("B")
        multipart = view.nbytes > self._multipart_threshold
        self._run("put", name, lambda: obstore.put(self._store, key, view, use_multipart=multipart))

    def delete(self, name: str) -> None:
        key = self._key(name)
        # S3 and some other stores report success for a missing object; ask first so that
        # deleting a missing object is ObjectNotFound everywhere (the race is harmless).
        self._run("delete", name, lambda: obstore.head(self._store, key))
        self._run("delete", name, lambda: obstore.delete(self._store, key))

    def stat(self, name: str) -> ObjectInfo:
        key = self._key(name)
        meta = self._run("stat", name, lambda: obstore.head(self._store, key))
        return ObjectInfo(name, meta["size"], _timestamp(meta.get("last_modified")))

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """obstore lists whole path segments, so list the prefix's folder and filter the rest."""
        check_prefix(prefix)
        return self._list(prefix)

    def _list(self, prefix: str) -> Iterator[ObjectInfo]:
        full = self._prefix + prefix
        folder = split_prefix(full)[0]
        strip = len(self._prefix)
        try:
            for batch in obstore.list(self._store, folder or None, chunk_size=1000):
                for meta in batch:
                    path = meta["path"]
                    if path.startswith(full):
                        yield ObjectInfo(
                            path[strip:], meta["size"], _timestamp(meta.get("last_modified"))
                        )
        except (BaseError, OSError) as e:
            raise classify(e, f"list {prefix or '/'} on {self._description}", prefix) from e


def _refused(err: BaseException, error: StorageError) -> bool:
    """A write the store refuses for want of permission (a read-only key or SAS, a WORM
    bucket): the vault opened, so reading works and only writing is denied."""
    if not isinstance(error, PermanentStorageError):
        return False
    if isinstance(err, PermissionDeniedError | PermissionError):
        return True
    status = _STATUS.search(str(err))
    return status is not None and int(status.group(1)) == 403


def _timestamp(when: object) -> float | None:
    """The store's last-modified time as epoch seconds (None when it reports none)."""
    return when.timestamp() if isinstance(when, datetime) else None
