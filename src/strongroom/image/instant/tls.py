"""TLS for ``strongroom serve --listen``: the server's ``ssl.SSLContext``, and address rules.

Certificates: ``--tls-cert``/``--tls-key`` (PEM), and with ``--tls-ca`` every client must
present a certificate signed by that CA (qemu's ``tls-creds-x509 ... endpoint=client`` with
``client-cert.pem``; libnbd's ``tls-certificates`` folder).  Pre-shared keys (the
``username:hexkey`` files of qemu, nbdkit and libnbd) need ``SSLContext.set_psk_server_callback``,
new in Python 3.13: on older Pythons ``--tls-psk`` is refused with a one-line error.
Plain TCP is allowed on loopback addresses only (the rule ``server run`` follows).
"""

from __future__ import annotations

import ipaddress
import ssl
import sys
from dataclasses import dataclass
from pathlib import Path

from strongroom.errors import ImageError

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
            f"refusing plain NBD on {host}: give --tls-cert and --tls-key, or listen on a "
            "loopback address (127.0.0.1, ::1)"
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


def server_context(files: TLSFiles) -> ssl.SSLContext | None:
    """The server context for ``files`` (None when TLS is not configured)."""
    if files.psk is not None:
        if sys.version_info < (3, 13):
            raise ImageError(
                "--tls-psk needs Python 3.13's ssl PSK support (this is Python "
                f"{sys.version_info.major}.{sys.version_info.minor}): use --tls-cert/--tls-key"
            )
        raise ImageError("--tls-psk is not implemented yet: use --tls-cert/--tls-key")
    if files.cert is None:
        return None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    _load(ctx, files)
    return ctx
