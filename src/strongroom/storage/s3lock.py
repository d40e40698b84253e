"""An S3 backend that writes packs, index objects and points under S3 Object Lock retention.

obstore (0.12) cannot send the ``x-amz-object-lock-*`` headers: its ``put`` takes only
content attributes and user metadata, and its ``default_headers`` are neither signed (S3
requires every ``x-amz-*`` header to be) nor per request (the retain-until date moves).  So the
puts of the locked kinds, and their deletes, which must name versions, go through botocore,
which signs them; everything else (reads, lists, the other kinds) stays on obstore.  botocore
loads only when a location asks for object lock (the ``objectlock`` extra installs it).

Object Lock needs a versioned bucket created with Object Lock enabled.  Retention protects
*versions*: a plain delete (what the storage credentials can still do) only adds a delete
marker, and an overwrite a newer version; the locked version stays, readable by version id,
until its retain-until date.  Deleting that version before then is refused, and this backend
reports the refusal as :class:`~strongroom.errors.ObjectLocked` (prune keeps such objects).
A delete after the date removes every version of the name, so the space is freed.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from strongroom.errors import (
    BackendConfigError,
    ObjectLocked,
    ObjectNotFound,
    PermanentStorageError,
    ReadOnlyStorage,
    StorageError,
    TransientStorageError,
)
from strongroom.storage.objectlock import ObjectLock, is_locked_kind
from strongroom.storage.objectstore import ObjectStoreBackend

if TYPE_CHECKING:
    from obstore.store import ObjectStore, S3Config

T = TypeVar("T")


def _client(config: S3Config) -> Any:
    """A botocore S3 client with the same credentials, region and endpoint as obstore's."""
    try:
        import botocore.session
        from botocore.config import Config
    except ImportError:
        raise BackendConfigError(
            "object lock on s3:// needs botocore: pip install 'strongroom[objectlock]'"
        ) from None
    endpoint = config.get("endpoint")
    options = Config(
        connect_timeout=10,
        read_timeout=300,
        retries={"max_attempts": 2, "mode": "standard"},  # RetryingBackend is the outer loop
        max_pool_connections=32,
        s3={"addressing_style": "path"} if endpoint else None,
    )
    return botocore.session.Session().create_client(
        "s3",
        region_name=config.get("region"),
        endpoint_url=endpoint,
        aws_access_key_id=config.get("access_key_id"),
        aws_secret_access_key=config.get("secret_access_key"),
        aws_session_token=config.get("session_token"),
        config=options,
    )


class LockingS3Backend(ObjectStoreBackend):
    """:class:`ObjectStoreBackend` whose packs, index objects and points get retention."""

    def __init__(
        self,
        store: ObjectStore,
        bucket: str,
        prefix: str,
        description: str,
        config: S3Config,
        lock: ObjectLock,
    ) -> None:
        super().__init__(store, prefix, description)
        self.lock = lock
        self._bucket = bucket
        self._s3 = _client(config)

    def put(self, name: str, data: bytes | bytearray | memoryview) -> None:
        if not is_locked_kind(name):
            super().put(name, data)
            return
        body = data if isinstance(data, bytes) else bytes(data)
        self._call(
            "put",
            name,
            lambda: self._s3.put_object(
                Bucket=self._bucket,
                Key=self._key(name),
                Body=body,
                ObjectLockMode=self.lock.mode,
                ObjectLockRetainUntilDate=self.lock.retain_until(),
                ChecksumAlgorithm="SHA256",  # S3 requires a checksum on object lock puts
            ),
        )

    def delete(self, name: str) -> None:
        if not is_locked_kind(name):
            super().delete(name)
            return
        key = self._key(name)
        listing = self._call(
            "delete",
            name,
            lambda: self._s3.list_object_versions(Bucket=self._bucket, Prefix=key),
        )
        versions = [v for v in listing.get("Versions", []) if v["Key"] == key]
        markers = [m for m in listing.get("DeleteMarkers", []) if m["Key"] == key]
        if not any(v.get("IsLatest") for v in versions):
            raise ObjectNotFound(f"delete {name} on {self.describe()}: not found", name=name)
        for version in versions:  # all of them first: never half-delete a name
            self._check_expired(name, key, version["VersionId"])
        for version in versions + markers:
            self._delete_version(name, key, version["VersionId"])

    def _delete_version(self, name: str, key: str, version: str) -> None:
        self._call(
            "delete",
            name,
            lambda: self._s3.delete_object(Bucket=self._bucket, Key=key, VersionId=version),
        )

    def _check_expired(self, name: str, key: str, version: str) -> None:
        head = self._call(
            "delete",
            name,
            lambda: self._s3.head_object(Bucket=self._bucket, Key=key, VersionId=version),
        )
        until = head.get("ObjectLockRetainUntilDate")
        if head.get("ObjectLockLegalHoldStatus") == "ON":
            raise ObjectLocked(f"delete {name} on {self.describe()}: under legal hold", name=name)
        if isinstance(until, datetime) and until > datetime.now(UTC):
            mode = head.get("ObjectLockMode", "")
            raise ObjectLocked(
                f"delete {name} on {self.describe()}: held by S3 Object Lock ({mode}) until "
                f"{until.astimezone(UTC):%Y-%m-%d %H:%M} UTC",
                name=name,
            )

    def _call(self, op: str, name: str, fn: Callable[[], T]) -> T:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn()
        except ClientError as exc:
            raise _classify(exc, f"{op} {name} on {self.describe()}", op, name) from exc
        except BotoCoreError as exc:  # connection refused/reset, timeouts: no HTTP status
            raise TransientStorageError(f"{op} {name} on {self.describe()}: {exc}") from exc


def _classify(exc: Any, what: str, op: str, name: str) -> StorageError:
    """A botocore ClientError as a storage error (the rules of ``objectstore.classify``)."""
    error = exc.response.get("Error", {})
    code = str(error.get("Code", ""))
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
    message = f"{what}: {code or status}: {error.get('Message', '')}".rstrip(": ")
    if code == "NoSuchBucket":
        return PermanentStorageError(f"{what}: the bucket does not exist", name=name)
    if "ObjectLockConfiguration" in str(error.get("Message", "")):
        return BackendConfigError(
            f"{what}: the bucket has no Object Lock (create it with Object Lock enabled, or "
            "drop the location's object-lock-days option)",
            name=name,
        )
    if status == 404 or code in ("NoSuchKey", "NoSuchVersion"):
        return ObjectNotFound(message, name=name)
    if status == 403 and op == "delete":
        return ObjectLocked(f"{what}: refused by the storage (object lock): {code}", name=name)
    if status == 403:
        return ReadOnlyStorage(message, name=name)
    if status in (408, 429) or status >= 500:
        return TransientStorageError(message, name=name)
    return PermanentStorageError(message, name=name)
