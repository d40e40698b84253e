"""Creating a server's catalog and running the server (uvicorn), as the CLI calls them."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from strongroom.errors import ServerError
from strongroom.server.auth import new_token
from strongroom.server.catalog import CATALOG_FILE, Catalog
from strongroom.server.catalog_db import catalog_url, is_postgres, write_config
from strongroom.server.vaults import check_vault_name
from strongroom.storage.objectlock import ObjectLock


def init_catalog(data_dir: Path, url: str | None = None) -> str | None:
    """Create the catalog in ``data_dir`` (or in the PostgreSQL database ``url``, recorded in
    the data folder's config) and the first admin token; returns the token, or None if this
    server joined a PostgreSQL catalog that other servers made already."""
    if url is not None:
        if not is_postgres(url):
            raise ServerError(f"invalid --catalog {url!r}: a postgresql://... URL")
        if catalog_url(data_dir) is not None or (data_dir / CATALOG_FILE).exists():
            raise ServerError(f"{data_dir} already holds a server catalog")
    catalog = Catalog(data_dir, create=True, url=url)
    try:
        if url is not None:
            write_config(data_dir, url)
        if not catalog.created:
            return None
        made = new_token("admin", label="first admin (server init)")
        catalog.add_token(made.row)
    finally:
        catalog.close()
    return made.secret


def add_vault(
    data_dir: Path, name: str, location: str | None, lock: ObjectLock | None = None
) -> str:
    """Register a vault (default location: under the storage root); returns its location.

    ``lock`` (S3 Object Lock retention for packs, index objects and points) is kept in the
    location as its ``?object-lock-days=N&object-lock-mode=M`` options."""
    from strongroom.server.auth import ApiError
    from strongroom.server.vaults import VaultRegistry

    if lock is not None:
        if location is None or not location.lower().startswith("s3://") or "?" in location:
            raise ServerError(
                "--object-lock-days needs an s3:// LOCATION (without options) in a bucket "
                "created with Object Lock enabled"
            )
        location += lock.query()
    catalog = Catalog(data_dir)
    try:
        check_vault_name(name)
        if location is None:
            return VaultRegistry(catalog).create(name)
        if not catalog.add_vault(name, location):
            raise ServerError(f"vault {name!r} exists already")
        return location
    except ApiError as exc:
        raise ServerError(exc.reason) from None
    finally:
        catalog.close()


def list_vaults(data_dir: Path) -> list[tuple[str, str]]:
    catalog = Catalog(data_dir)
    try:
        return catalog.vaults()
    finally:
        catalog.close()


def parse_listen(text: str, *, tls: bool) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT``); plain HTTP is allowed on loopback addresses only, so a
    token never crosses a network in clear text (put a TLS reverse proxy in front instead)."""
    host, sep, port_text = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ServerError(f"invalid --listen {text!r}: use HOST:PORT, e.g. 127.0.0.1:8443")
    if not tls and not _loopback(host):
        raise ServerError(
            f"refusing plain HTTP on {host}: give --tls-cert and --tls-key, or listen on a "
            "loopback address (127.0.0.1, ::1) behind a TLS reverse proxy"
        )
    return host, int(port_text)


# Seconds a stopping server waits for requests in flight before it cancels them.
SHUTDOWN_GRACE_S = 5


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(
    data_dir: Path,
    listen: str,
    *,
    tls_cert: Path | None = None,
    tls_key: Path | None = None,
    max_upload: int | None = None,
    body_idle_timeout: float | None = None,
    upload_budget: int | None = None,
) -> None:
    """Run the server until interrupted."""
    if (tls_cert is None) != (tls_key is None):
        raise ServerError("give both --tls-cert and --tls-key, or neither")
    host, port = parse_listen(listen, tls=tls_cert is not None)
    for f in (tls_cert, tls_key):
        if f is not None and not f.is_file():
            raise ServerError(f"no such file: {f}")
    import uvicorn

    from strongroom.server.app import Limits, Server, create_app

    limits = Limits()
    if max_upload is not None:
        limits.max_upload = max_upload
    if body_idle_timeout is not None:
        limits.body_idle_timeout = body_idle_timeout
    if upload_budget is not None:
        limits.upload_budget = upload_budget
    server = Server(data_dir, limits)
    try:
        uvicorn.run(
            create_app(server),
            host=host,
            port=port,
            ssl_certfile=str(tls_cert) if tls_cert else None,
            ssl_keyfile=str(tls_key) if tls_key else None,
            log_level="warning",
            timeout_keep_alive=30,
            # A client that keeps an idle TLS connection open (a browser, a long-lived
            # process) would hold a stop for asyncio's 30 s close_notify wait.
            timeout_graceful_shutdown=SHUTDOWN_GRACE_S,
            server_header=False,
        )
    finally:
        server.close()  # commits the audit rows still queued
