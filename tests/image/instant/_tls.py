"""Test certificates (a CA, a server and a client certificate) made with ``cryptography``.

The file names are the ones qemu's ``tls-creds-x509`` and libnbd's ``tls-certificates``
folders use: ``ca-cert.pem``, ``client-cert.pem``, ``client-key.pem``.
"""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_Key = ec.EllipticCurvePrivateKey


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(
    cn: str, key: _Key, issuer: x509.Name, signer: _Key, *, ca: bool, server: bool = False
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        usage = x509.KeyUsage(False, False, False, False, False, True, True, False, False)
        builder = builder.add_extension(usage, critical=True)
    else:
        usage = x509.KeyUsage(True, False, True, False, False, False, False, False, False)
        purpose = ExtendedKeyUsageOID.SERVER_AUTH if server else (ExtendedKeyUsageOID.CLIENT_AUTH)
        builder = builder.add_extension(usage, critical=True).add_extension(
            x509.ExtendedKeyUsage([purpose]), critical=False
        )
    if server:
        names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(signer, hashes.SHA256())


def _write(path: Path, cert: x509.Certificate | None = None, key: _Key | None = None) -> Path:
    if cert is not None:
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    if key is not None:
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        path.chmod(0o600)
    return path


def make_pki(root: Path, cn: str = "strongroom test CA") -> dict[str, Path]:
    """``server/`` (cert, key), ``client/`` (CA + client cert), ``anon/`` (CA only)."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert(cn, ca_key, _name(cn), ca_key, ca=True)
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = _cert("localhost", server_key, ca.subject, ca_key, ca=False, server=True)
    client_key = ec.generate_private_key(ec.SECP256R1())
    client = _cert("client", client_key, ca.subject, ca_key, ca=False)
    out: dict[str, Path] = {}
    for sub in ("server", "client", "anon"):
        (root / sub).mkdir(parents=True)
        out[sub] = root / sub
        _write(root / sub / "ca-cert.pem", ca)
    out["ca"] = root / "server" / "ca-cert.pem"
    out["cert"] = _write(root / "server" / "server-cert.pem", server)
    out["key"] = _write(root / "server" / "server-key.pem", key=server_key)
    _write(root / "client" / "client-cert.pem", client)
    _write(root / "client" / "client-key.pem", key=client_key)
    return out
