"""TLS for ``strongroom serve --listen``: the server's TLS context, and address rules.

Certificates: ``--tls-cert``/``--tls-key`` (PEM) through the stdlib ``ssl``, and with
``--tls-ca`` every client must present a certificate signed by that CA (qemu's
``tls-creds-x509 ... endpoint=client`` with ``client-cert.pem``; libnbd's
``tls-certificates`` folder).  Pre-shared keys: ``--tls-psk`` names a ``username:hexkey``
file (qemu's ``keys.psk``, nbdkit's and libnbd's ``tls-psk-file``), served by
:mod:`strongroom.image.instant.tlspsk` (pyOpenSSL: the stdlib has PSK only from 3.13).
Plain TCP is allowed on loopback addresses only (the rule ``server run`` follows).
"""

from __future__ import annotations

import ipaddress
import ssl
from pathlib import Path

from strongroom.errors import ImageError
from strongroom.image.nbd.options import ServerTLS
from strongroom.records import dataclass

__all__ = ["TLSFiles", "check_plain_allowed", "is_loopback", "server_context"]


@dataclass(frozen=True)
class TLSFiles:
    cert: Path | None = None
    key: Path | None = None
    ca: Path | None = None
    psk: Path | None = None

    @property
    def enabled(self) -> bool:
        return self.cert is not None or self.psk is not None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_plain_allowed(host: str) -> None:
    """Refuse plain NBD (no authentication, no encryption) on a non-loopback address."""
    if not is_loopback(host):
        raise ImageError(
            f"refusing plain NBD on {host}: give --tls-cert and --tls-key, or --tls-psk, "
            "or listen on a loopback address (127.0.0.1, ::1)"
        )


def _load(ctx: ssl.SSLContext, files: TLSFiles) -> None:
    assert files.cert is not None and files.key is not None
    try:
        ctx.load_cert_chain(files.cert, files.key)
    except (OSError, ssl.SSLError) as exc:
        raise ImageError(f"cannot load {files.cert} / {files.key}: {exc}") from None
    if files.ca is not None:
        try:
            ctx.load_verify_locations(cafile=files.ca)
        except (OSError, ssl.SSLError) as exc:
            raise ImageError(f"cannot load the CA {files.ca}: {exc}") from None
        ctx.verify_mode = ssl.CERT_REQUIRED


def server_context(files: TLSFiles) -> ServerTLS | None:
    """The server context for ``files`` (None when TLS is not configured)."""
    if files.psk is not None:
        from strongroom.image.instant.tlspsk import PSKContext, load_psk_file

        return PSKContext(load_psk_file(files.psk))
    if files.cert is None:
        return None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    _load(ctx, files)
    return ctx
