"""S3 Object Lock retention for packs, index objects and points, against moto_server."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from strongroom.errors import BackendConfigError, ObjectLocked
from strongroom.storage.objectlock import ObjectLock, split_location
from strongroom.storage.s3 import open_s3
from strongroom.storage.s3lock import LockingS3Backend
from strongroom.storage.url import open_backend
from tests.emulators import Emulator

LOCK_BUCKET = "lockvault"
PACK = "data/ab/" + "ab" * 32
POINT = "points/" + "cd" * 32


def s3_client(moto: Emulator) -> Any:
    import boto3  # type: ignore[import-untyped]

    return boto3.client(
        "s3",
        endpoint_url=moto.env["AWS_ENDPOINT_URL"],
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


@pytest.fixture(scope="session")
def lock_bucket(moto: Emulator) -> str:
    s3_client(moto).create_bucket(Bucket=LOCK_BUCKET, ObjectLockEnabledForBucket=True)
    return LOCK_BUCKET


@pytest.fixture
def locked(moto: Emulator, lock_bucket: str) -> Iterator[LockingS3Backend]:
    url = f"s3://{lock_bucket}/{uuid.uuid4().hex[:12]}"
    backend = open_s3(url, env=moto.env, lock=ObjectLock(1))
    assert isinstance(backend, LockingS3Backend)
    yield backend


def test_location_options() -> None:
    assert split_location("s3://b/p") == ("s3://b/p", None)
    base, lock = split_location("s3://b/p?object-lock-days=30&object-lock-mode=governance")
    assert base == "s3://b/p" and lock == ObjectLock(30, "GOVERNANCE")
    assert split_location(f"s3://b/p{ObjectLock(7).query()}")[1] == ObjectLock(7)
    for bad in (
        "?object-lock-days=x",
        "?object-lock-days=0",
        "?days=3",
        "?object-lock-days=3&object-lock-mode=forever",
    ):
        with pytest.raises(BackendConfigError):
            split_location("s3://b/p" + bad)


def test_azure_says_it_cannot() -> None:
    with pytest.raises(BackendConfigError, match="s3:// only"):
        open_backend("azure://vault/p?object-lock-days=3")


@pytest.mark.s3
def test_bucket_without_object_lock_is_one_line(moto: Emulator) -> None:
    backend = open_s3(f"s3://{moto.bucket}/nolock", env=moto.env, lock=ObjectLock(1))
    with pytest.raises(BackendConfigError, match="has no Object Lock"):
        backend.put(PACK, b"pack")
    backend.put("config", b"plain objects need no lock")


@pytest.mark.s3
def test_storage_credentials_cannot_delete_or_overwrite(
    locked: LockingS3Backend, moto: Emulator
) -> None:
    import botocore.exceptions

    locked.put(PACK, b"pack bytes")
    locked.put("locks/" + "0" * 32, b"a lock")
    s3, key = s3_client(moto), locked._key(PACK)
    head = s3.head_object(Bucket=LOCK_BUCKET, Key=key)
    assert head["ObjectLockMode"] == "COMPLIANCE"
    until = head["ObjectLockRetainUntilDate"]
    assert timedelta(hours=23) < until - datetime.now(UTC) <= timedelta(days=1)
    assert "ObjectLockMode" not in s3.head_object(
        Bucket=LOCK_BUCKET, Key=locked._key("locks/" + "0" * 32)
    )
    version = head["VersionId"]

    with pytest.raises(botocore.exceptions.ClientError, match="AccessDenied"):
        s3.delete_object(Bucket=LOCK_BUCKET, Key=key, VersionId=version)
    with pytest.raises(botocore.exceptions.ClientError, match="AccessDenied"):
        s3.delete_object(
            Bucket=LOCK_BUCKET, Key=key, VersionId=version, BypassGovernanceRetention=True
        )
    s3.put_object(Bucket=LOCK_BUCKET, Key=key, Body=b"ransomware")  # only a newer version
    s3.delete_object(Bucket=LOCK_BUCKET, Key=key)  # only a delete marker
    kept = s3.get_object(Bucket=LOCK_BUCKET, Key=key, VersionId=version)["Body"].read()
    assert kept == b"pack bytes"

    locked.put(PACK, b"pack bytes")  # the name is visible again (as after a repair)
    with pytest.raises(ObjectLocked, match="held by S3 Object Lock"):
        locked.delete(PACK)
    assert s3.get_object(Bucket=LOCK_BUCKET, Key=key, VersionId=version)["Body"].read()
    locked.delete("locks/" + "0" * 32)  # other kinds delete as before


class _Seconds(ObjectLock):
    def retain_until(self, now: datetime | None = None) -> datetime:
        return datetime.now(UTC) + timedelta(seconds=2)


@pytest.mark.s3
def test_delete_after_retention_removes_every_version(
    locked: LockingS3Backend, moto: Emulator
) -> None:
    locked.lock = _Seconds(1)
    locked.put(POINT, b"point")
    locked.put(POINT, b"point")  # a retried upload: a second locked version
    with pytest.raises(ObjectLocked):
        locked.delete(POINT)
    assert locked.get(POINT) == b"point"  # nothing half-deleted
    time.sleep(2.5)
    locked.delete(POINT)
    listing = s3_client(moto).list_object_versions(Bucket=LOCK_BUCKET, Prefix=locked._key(POINT))
    assert not listing.get("Versions") and not listing.get("DeleteMarkers")


@pytest.mark.azurite
def test_azurite_has_no_blob_immutability(azurite: Emulator) -> None:
    """Why azure:// has no object-lock option yet: Azurite (the test emulator) implements no
    blob immutability, so strongroom could not test it.  When this test fails, Azurite has
    learnt it and the option can be built and tested (docs/server.md)."""
    from azure.core.exceptions import HttpResponseError
    from azure.storage.blob import BlobServiceClient, ImmutabilityPolicy

    from strongroom.storage.azure import AZURITE_KEY

    connection = (
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
        f"AccountKey={AZURITE_KEY};BlobEndpoint={azurite.env['AZURE_STORAGE_ENDPOINT']};"
    )
    container = BlobServiceClient.from_connection_string(connection).get_container_client(
        azurite.bucket
    )
    blob = container.get_blob_client(f"immutability-{uuid.uuid4().hex}")
    until = datetime.now(UTC) + timedelta(days=1)
    policy = ImmutabilityPolicy(expiry_time=until, policy_mode="Unlocked")
    blob.upload_blob(b"x", immutability_policy=policy, legal_hold=True)
    props = blob.get_blob_properties()
    assert props.immutability_policy.expiry_time is None  # the headers were ignored
    assert not props.has_legal_hold and props.version_id is None  # no versioning either
    for call in (lambda: blob.set_immutability_policy(policy), lambda: blob.set_legal_hold(True)):
        with pytest.raises(HttpResponseError) as caught:
            call()
        assert caught.value.status_code == 501  # "Current API is not implemented yet"
    blob.delete_blob()  # and nothing stops a delete
