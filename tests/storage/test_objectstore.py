"""The obstore backends: configuration from URLs and environment, and error classification."""

from __future__ import annotations

import pytest
from obstore.exceptions import GenericError, PermissionDeniedError, UnauthenticatedError

from strongroom.errors import (
    BackendConfigError,
    ObjectNotFound,
    PermanentStorageError,
    TransientStorageError,
)
from strongroom.storage.azure import AZURITE_KEY, azure_config, open_azure
from strongroom.storage.objectstore import classify, parse_bucket_url
from strongroom.storage.s3 import open_s3, s3_config
from tests.emulators import Emulator, free_port
from tests.storage.conftest import unique_prefix

# --- classification --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (FileNotFoundError("Object at location x not found"), ObjectNotFound),
        (PermissionDeniedError("denied"), PermanentStorageError),
        (UnauthenticatedError("bad key"), PermanentStorageError),
        (
            GenericError("Server returned non-2xx status code: 503 Service Unavailable"),
            TransientStorageError,
        ),
        (
            GenericError("Server returned non-2xx status code: 429 Too Many Requests"),
            TransientStorageError,
        ),
        (GenericError("Server returned non-2xx status code: 403 Forbidden"), PermanentStorageError),
        (GenericError("HTTP error: error sending request"), TransientStorageError),
        (FileNotFoundError("404 <Code>NoSuchBucket</Code>"), PermanentStorageError),
        (GenericError("404 <Code>ContainerNotFound</Code>"), PermanentStorageError),
    ],
)
def test_classify(error: Exception, expected: type[Exception]) -> None:
    mapped = classify(error, "get x on s3://b", "x")
    assert type(mapped) is expected
    assert mapped.name == "x"
    assert str(mapped).startswith("get x on s3://b: ")
    assert "\n" not in str(mapped)


# --- configuration ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "s3://",
        "s3://Upper/x",
        "s3://ab",
        "s3://b..c/x",
        "s3://bucket/a/../b",
        "s3://bucket/x?y",
        "azure://bucket/x",
    ],
)
def test_invalid_s3_urls(url: str) -> None:
    with pytest.raises(BackendConfigError):
        parse_bucket_url(url, "s3", "S3")


def test_bucket_url_prefix() -> None:
    assert parse_bucket_url("s3://my-bucket", "s3", "S3") == ("my-bucket", "")
    assert parse_bucket_url("s3://my-bucket/", "s3", "S3") == ("my-bucket", "")
    assert parse_bucket_url("s3://my-bucket/a/b/", "s3", "S3") == ("my-bucket", "a/b")


def test_azure_container_rules() -> None:
    env = {"AZURE_STORAGE_ACCOUNT": "a", "AZURE_STORAGE_KEY": "k"}
    for url in ("azure://has.dot/x", "azure://double--dash"):
        with pytest.raises(BackendConfigError, match="container"):
            open_azure(url, env=env)


def test_missing_credentials_are_config_errors() -> None:
    with pytest.raises(BackendConfigError, match="AZURE_STORAGE_CONNECTION_STRING"):
        open_azure("azure://vault/x", env={})
    with pytest.raises(BackendConfigError, match="AZURE_STORAGE_KEY"):
        open_azure("azure://vault/x", env={"AZURE_STORAGE_ACCOUNT": "acct"})
    with pytest.raises(BackendConfigError, match="AWS_ACCESS_KEY_ID"):
        open_s3("s3://vault/x", env={"AWS_ACCESS_KEY_ID": "id"})


def test_azure_connection_strings() -> None:
    config = azure_config(
        {"AZURE_STORAGE_CONNECTION_STRING": "AccountName=acct;AccountKey=a2V5==;EndpointSuffix=x.y"}
    )
    assert config == {
        "account_name": "acct",
        "account_key": "a2V5==",
        "endpoint": "https://acct.blob.x.y",
    }
    config = azure_config({"AZURE_STORAGE_CONNECTION_STRING": "UseDevelopmentStorage=true"})
    assert config["account_key"] == AZURITE_KEY
    assert config.get("endpoint") == "http://127.0.0.1:10000/devstoreaccount1"
    config = azure_config(
        {
            "AZURE_STORAGE_CONNECTION_STRING": "AccountName=a;SharedAccessSignature=?sv=1&sig=2;"
            "BlobEndpoint=http://host:1/a/"
        }
    )
    assert config == {"account_name": "a", "sas_key": "sv=1&sig=2", "endpoint": "http://host:1/a"}
    for bad in ("AccountName=a", "AccountKey=k", "garbage"):
        with pytest.raises(BackendConfigError):
            azure_config({"AZURE_STORAGE_CONNECTION_STRING": bad})


def test_s3_config_defaults() -> None:
    config = s3_config({"AWS_ACCESS_KEY_ID": "id", "AWS_SECRET_ACCESS_KEY": "secret"})
    assert config == {"access_key_id": "id", "secret_access_key": "secret", "region": "us-east-1"}
    config = s3_config(
        {
            "AWS_ACCESS_KEY_ID": "id",
            "AWS_SECRET_ACCESS_KEY": "s",
            "AWS_DEFAULT_REGION": "eu-west-1",
            "AWS_SESSION_TOKEN": "t",
            "AWS_ENDPOINT_URL": "http://127.0.0.1:9000/",
        }
    )
    assert config.get("region") == "eu-west-1"
    assert config.get("session_token") == "t"
    assert config.get("endpoint") == "http://127.0.0.1:9000"


# --- real failures against real servers ------------------------------------------------------


def test_unreachable_endpoint_is_transient() -> None:
    env = {
        "AWS_ACCESS_KEY_ID": "id",
        "AWS_SECRET_ACCESS_KEY": "s",
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}",
    }
    backend = open_s3("s3://vault/x", env=env)
    with pytest.raises(TransientStorageError, match="get config on s3://vault/x"):
        backend.get("config")


@pytest.mark.azurite
def test_azure_wrong_key_is_permanent(azurite: Emulator) -> None:
    env = {**azurite.env, "AZURE_STORAGE_KEY": AZURITE_KEY[:-8] + "AAAAAAA="}
    backend = open_azure(f"azure://{azurite.bucket}/{unique_prefix()}", env=env)
    with pytest.raises(PermanentStorageError):
        backend.put("config", b"c")


@pytest.mark.azurite
def test_azure_missing_container_is_permanent(azurite: Emulator) -> None:
    backend = open_azure("azure://no-such-container/x", env=azurite.env)
    for call in (lambda: backend.put("config", b"c"), lambda: list(backend.list())):
        with pytest.raises(PermanentStorageError, match="does not exist"):
            call()


@pytest.mark.s3
def test_s3_missing_bucket_is_permanent(moto: Emulator) -> None:
    backend = open_s3("s3://no-such-bucket/x", env=moto.env)
    for call in (
        lambda: backend.put("config", b"c"),
        lambda: backend.get("config"),
        lambda: list(backend.list()),
    ):
        with pytest.raises(PermanentStorageError, match="does not exist"):
            call()


@pytest.mark.azurite
def test_azure_describe_hides_credentials(azurite: Emulator) -> None:
    backend = open_azure(f"azure://{azurite.bucket}/some/prefix/", env=azurite.env)
    assert backend.describe() == f"azure://{azurite.bucket}/some/prefix"
