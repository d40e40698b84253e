"""``strongroom serve --listen`` with TLS (NBD_OPT_STARTTLS, forced) against qemu-img, nbdinfo
and nbdcopy; plain TCP only on loopback (PSK: test_serve_psk.py)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.image._vm import cli

from ._serve import serving
from ._tls import make_pki
from .conftest import Served

MiB = 1 << 20


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_pki(tmp_path_factory.mktemp("pki"))


def _qemu_info(uri: str, creds: Path | None) -> subprocess.CompletedProcess[str]:
    host, port = uri.split("//")[1].split("/", maxsplit=1)[0].rsplit(":", 1)
    opts = f"driver=nbd,host={host},port={port},export=vda"
    command = ["qemu-img", "info", "--output=json"]
    if creds is not None:
        command += ["--object", f"tls-creds-x509,id=tls0,dir={creds},endpoint=client"]
        opts += ",tls-creds=tls0"
    return subprocess.run(
        [*command, "--image-opts", opts], capture_output=True, text=True, timeout=60, check=False
    )


def _nbd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=60, check=False)


def test_certificate_tls_with_real_clients(
    served: Served, pki: dict[str, Path], tmp_path: Path
) -> None:
    args = ("--listen", "127.0.0.1:0", "--tls-cert", pki["cert"], "--tls-key", pki["key"])
    with serving(served.vault, served.point, *args) as uris:
        uri = uris["vda"]
        assert uri.startswith("nbds://127.0.0.1:")
        info = _qemu_info(uri, pki["anon"])
        assert info.returncode == 0, info.stderr
        assert f'"virtual-size": {128 * MiB}' in info.stdout
        out = tmp_path / "vdb.raw"
        copy = _nbd("nbdcopy", f"{uris['vdb']}?tls-certificates={pki['anon']}", str(out))
        assert copy.returncode == 0, copy.stderr
        assert out.read_bytes() == served.restored["vdb"].read_bytes()
        listing = _nbd("nbdinfo", "--list", f"{uri}?tls-certificates={pki['anon']}")
        assert listing.returncode == 0 and "vdb" in listing.stdout, listing.stderr
        # Without TLS: refused before any option is answered (forced TLS).
        plain = _nbd("nbdinfo", "--list", uri.replace("nbds://", "nbd://"))
        assert plain.returncode != 0 and "vda" not in plain.stdout
        assert _nbd("nbdinfo", "--size", uri.replace("nbds://", "nbd://")).returncode != 0
        assert _qemu_info(uri, None).returncode != 0
        # A client that does not trust the server's CA is refused too.
        stranger = make_pki(tmp_path / "other", cn="another CA")
        assert _qemu_info(uri, stranger["anon"]).returncode != 0


def test_client_certificates_required_with_ca(served: Served, pki: dict[str, Path]) -> None:
    args = ("--listen", "127.0.0.1:0", "--tls-cert", pki["cert"], "--tls-key", pki["key"],
            "--tls-ca", pki["ca"])  # fmt: skip
    with serving(served.vault, served.point, *args) as uris:
        good = _qemu_info(uris["vda"], pki["client"])
        assert good.returncode == 0, good.stderr
        assert _qemu_info(uris["vda"], pki["anon"]).returncode != 0  # no client certificate
        ok = _nbd("nbdinfo", "--size", f"{uris['vdb']}?tls-certificates={pki['client']}")
        assert ok.returncode == 0, ok.stderr


def test_address_and_option_rules(served: Served, pki: dict[str, Path], tmp_path: Path) -> None:
    plain = cli("serve", served.point, "--listen", "0.0.0.0:0")
    assert plain.code == 1 and "refusing plain NBD on 0.0.0.0" in plain.err
    assert len(plain.err.strip().splitlines()) == 1
    assert (
        cli("serve", served.point, "--listen", "127.0.0.1:0", "--tls-cert", pki["cert"]).code == 2
    )
    sock = tmp_path / "s"
    tls_unix = cli("serve", served.point, "--socket", sock, "--tls-cert", pki["cert"],
                   "--tls-key", pki["key"])  # fmt: skip
    assert tls_unix.code == 2
    assert cli("serve", served.point, "--listen", "127.0.0.1:0", "--tls-ca", pki["ca"]).code == 2
    bad = cli("serve", served.point, "--listen", "127.0.0.1:0", "--tls-cert", pki["ca"],
              "--tls-key", pki["ca"])  # fmt: skip
    assert bad.code == 1 and "cannot load" in bad.err
