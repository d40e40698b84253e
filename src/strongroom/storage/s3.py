"""S3 vaults: ``s3://BUCKET/PREFIX`` through obstore's S3Store.

Credentials and settings come from the environment: ``AWS_ACCESS_KEY_ID`` and
``AWS_SECRET_ACCESS_KEY`` (required), ``AWS_SESSION_TOKEN``, ``AWS_REGION`` or
``AWS_DEFAULT_REGION`` (default ``us-east-1``), and ``AWS_ENDPOINT_URL_S3`` or
``AWS_ENDPOINT_URL`` for S3-compatible servers (MinIO, moto; ``http://`` allowed when given
explicitly; such endpoints are addressed path-style).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

from obstore.store import S3Store

from strongroom.errors import BackendConfigError
from strongroom.storage.objectlock import ObjectLock
from strongroom.storage.objectstore import (
    ObjectStoreBackend,
    build_backend,
    parse_bucket_url,
)

if TYPE_CHECKING:
    from obstore.store import S3Config

DEFAULT_REGION = "us-east-1"


def s3_config(env: Mapping[str, str]) -> S3Config:
    """Credentials, region and endpoint from the environment (see the module docstring)."""
    key_id = env.get("AWS_ACCESS_KEY_ID")
    secret = env.get("AWS_SECRET_ACCESS_KEY")
    if not key_id or not secret:
        raise BackendConfigError(
            "no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
        )
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or DEFAULT_REGION
    config: S3Config = {"access_key_id": key_id, "secret_access_key": secret, "region": region}
    token = env.get("AWS_SESSION_TOKEN")
    if token:
        config["session_token"] = token
    endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
    if endpoint:
        config["endpoint"] = endpoint.rstrip("/")
    return config


def open_s3(
    url: str, env: Mapping[str, str] | None = None, lock: ObjectLock | None = None
) -> ObjectStoreBackend:
    """A backend for ``s3://BUCKET/PREFIX``; BackendConfigError if it cannot be built.

    With ``lock``, packs, index objects and points are written under S3 Object Lock
    retention (:mod:`strongroom.storage.s3lock`)."""
    bucket, prefix = parse_bucket_url(url, "s3", "S3")
    config = s3_config(os.environ if env is None else env)
    plain = build_backend(
        url,
        prefix,
        config.get("endpoint"),
        lambda options, retry: S3Store(
            bucket, config=config, client_options=options, retry_config=retry
        ),
    )
    if lock is None:
        return plain
    from strongroom.storage.s3lock import LockingS3Backend

    return LockingS3Backend(plain.store, bucket, prefix, plain.describe(), config, lock)
