"""open_backend: from a location string to the right stack of backends."""

from __future__ import annotations

from pathlib import Path

import pytest

from strongroom.errors import BackendConfigError
from strongroom.storage import CachingBackend, LocalBackend, RetryingBackend, open_backend
from strongroom.storage.cacheroot import default_cache_root
from strongroom.storage.names import content_digest
from strongroom.storage.objectstore import ObjectStoreBackend
from strongroom.storage.url import cache_dir_for
from tests.emulators import Emulator
from tests.storage.conftest import unique_prefix


def test_plain_path_and_file_url(tmp_path: Path) -> None:
    for location in (str(tmp_path), f"file://{tmp_path}", f"FILE://localhost{tmp_path}"):
        backend = open_backend(location)
        assert isinstance(backend, LocalBackend)
        assert backend.root == tmp_path


def test_file_url_with_spaces(tmp_path: Path) -> None:
    backend = open_backend(f"file://{tmp_path}/with%20space")
    assert isinstance(backend, LocalBackend)
    assert backend.root == tmp_path / "with space"


@pytest.mark.parametrize(
    "location",
    ["", "gs://bucket/x", "http://host/x", "file://otherhost/x", "file:relative", "s3:/b/x"],
)
def test_unsupported_locations(location: str) -> None:
    with pytest.raises(BackendConfigError):
        open_backend(location)


def test_default_cache_root(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_cache_root() == tmp_path / "strongroom"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_root() == tmp_path / "home" / ".cache" / "strongroom"


def test_cache_folder_per_location(tmp_path: Path) -> None:
    a = cache_dir_for("s3://bucket/a", tmp_path)
    assert a == cache_dir_for("s3://bucket/a/", tmp_path)
    assert a != cache_dir_for("s3://bucket/b", tmp_path)
    assert a.parent == tmp_path


def check_remote_stack(location: str, cache_root: Path) -> None:
    backend = open_backend(location, cache_dir=cache_root)
    assert isinstance(backend, CachingBackend)
    assert isinstance(backend.inner, RetryingBackend)
    assert isinstance(backend.inner.inner, ObjectStoreBackend)
    data = b"an index object"
    name = f"index/{content_digest(data).hex()}"
    backend.put(name, data)
    assert backend.get(name) == data
    assert (cache_dir_for(location, cache_root) / name).read_bytes() == data
    assert [i.name for i in backend.list()] == [name]
    assert backend.describe() == location
    backend.close()


@pytest.mark.azurite
def test_azure_from_environment(
    azurite: Emulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for key, value in azurite.env.items():
        monkeypatch.setenv(key, value)
    check_remote_stack(f"azure://{azurite.bucket}/{unique_prefix()}", tmp_path)


@pytest.mark.azurite
def test_azure_from_connection_string(
    azurite: Emulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    env = azurite.env
    monkeypatch.setenv(
        "AZURE_STORAGE_CONNECTION_STRING",
        f"DefaultEndpointsProtocol=http;AccountName={env['AZURE_STORAGE_ACCOUNT']};"
        f"AccountKey={env['AZURE_STORAGE_KEY']};BlobEndpoint={env['AZURE_STORAGE_ENDPOINT']};",
    )
    check_remote_stack(f"azure://{azurite.bucket}/{unique_prefix()}", tmp_path)


@pytest.mark.s3
def test_s3_from_environment(
    moto: Emulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for key, value in moto.env.items():
        monkeypatch.setenv(key, value)
    check_remote_stack(f"s3://{moto.bucket}/{unique_prefix()}", tmp_path)
