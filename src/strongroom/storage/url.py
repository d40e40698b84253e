"""Turn a vault location (a path or a URL) into a ready-to-use backend."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

from strongroom.errors import BackendConfigError
from strongroom.storage.backend import Backend
from strongroom.storage.cache import CachingBackend
from strongroom.storage.cacheroot import default_cache_root
from strongroom.storage.local import LocalBackend
from strongroom.storage.objectlock import split_location
from strongroom.storage.retry import RetryingBackend

REMOTE_SCHEMES = ("azure", "s3")


def cache_dir_for(location: str, cache_root: Path | None = None) -> Path:
    """A cache folder of its own for each remote location."""
    import hashlib  # here: its OpenSSL adds 3.6 MiB to the key derivation's peak (options.py)

    digest = hashlib.sha256(location.rstrip("/").encode()).hexdigest()[:32]
    return (cache_root or default_cache_root()) / digest


def _local_path(location: str) -> Path:
    if not location.lower().startswith("file:"):
        return Path(location).expanduser()
    parts = urlsplit(location)
    if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
        raise BackendConfigError(f"invalid file location {location!r}: use file:///absolute/path")
    return Path(unquote(parts.path))


def open_remote(location: str) -> Backend:
    """The bare remote backend for an ``azure://`` or ``s3://`` location (no retry, no cache)."""
    # obstore loads only here: it is about 6 MiB of memory that a local vault never needs
    scheme = location.partition("://")[0].lower()
    location, lock = split_location(location)
    if scheme == "azure":
        if lock is not None:
            raise BackendConfigError(
                "object-lock-days works on s3:// only: for azure:// set a version-level "
                "immutability policy on the container (see docs/server.md)"
            )
        from strongroom.storage.azure import open_azure

        return open_azure(location)
    if scheme == "s3":
        from strongroom.storage.s3 import open_s3

        return open_s3(location, lock=lock)
    raise BackendConfigError(
        f"unsupported vault location {location!r}: use a path, file://, azure:// or s3://"
    )


def open_backend(location: str, *, cache_dir: Path | None = None) -> Backend:
    """A backend for ``location``: a path or ``file://`` URL, ``azure://C/P``, ``s3://B/P``
    or ``https://SERVER/VAULT`` (a vault served by ``strongroom server``).

    Remote backends are wrapped in retries and then in a local cache of index and recovery
    point objects, kept in a folder per location under ``cache_dir`` (default:
    :func:`default_cache_root`), so one cache root can serve many vaults.
    """
    if not location:
        raise BackendConfigError("empty vault location")
    scheme = location.partition(":")[0].lower()
    if scheme in REMOTE_SCHEMES and "://" not in location:
        # 's3:/bucket' is a typo, not a local folder named 's3:'.
        raise BackendConfigError(f"invalid vault location {location!r}: use {scheme}://...")
    if "://" not in location or scheme == "file":
        return LocalBackend(_local_path(location))
    if scheme in ("http", "https"):  # a vault served by `strongroom server`
        from strongroom.storage.http import open_http

        served = RetryingBackend(open_http(location))
        return CachingBackend(served, cache_dir_for(location, cache_dir))
    remote = open_remote(location)
    return CachingBackend(RetryingBackend(remote), cache_dir_for(location, cache_dir))
