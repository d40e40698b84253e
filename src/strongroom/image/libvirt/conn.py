"""The libvirt connection: libvirt-python imported lazily, its errors turned into ImageError.

Nothing outside this package imports ``libvirt``: the rest of strongroom works without
libvirt-python installed, and only the libvirt commands say it is missing.
"""

from __future__ import annotations

import contextlib
import os
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from types import ModuleType
from typing import Any, Final

from strongroom.errors import ImageError

__all__ = [
    "DEFAULT_URI",
    "Connection",
    "LibvirtError",
    "default_uri",
    "libvirt_errors",
    "libvirt_module",
]

DEFAULT_URI: Final = "qemu:///system"
_HINT: Final = (
    "libvirt-python is not installed: `pip install 'strongroom[libvirt]'` "
    "(builds against libvirt-dev and pkg-config) or `apt-get install python3-libvirt`"
)


class LibvirtError(ImageError):
    """A libvirt call failed; ``code`` is libvirt's error code (VIR_ERR_*)."""

    def __init__(self, message: str, code: int = 0) -> None:
        super().__init__(message)
        self.code = code


def libvirt_module() -> ModuleType:
    try:
        import libvirt
    except ImportError:
        raise ImageError(_HINT) from None
    module: ModuleType = libvirt
    return module


def default_uri(uri: str | None = None) -> str:
    """``uri``, else ``LIBVIRT_DEFAULT_URI``, else ``qemu:///system``."""
    return uri or os.environ.get("LIBVIRT_DEFAULT_URI") or DEFAULT_URI


@contextlib.contextmanager
def libvirt_errors(what: str) -> Iterator[None]:
    """Turn a libvirtError raised inside into :class:`LibvirtError` prefixed by ``what``."""
    lv = libvirt_module()
    try:
        yield
    except lv.libvirtError as exc:
        message = exc.get_error_message() or str(exc)
        raise LibvirtError(f"{what}: {message}", exc.get_error_code() or 0) from None


def _quiet(_ctx: object, _err: object) -> None:
    """libvirt prints every error to stderr by default; ours are raised instead."""


class Connection:
    """An open libvirt connection (``virConnect``) and the few calls strongroom needs."""

    def __init__(self, uri: str | None = None) -> None:
        self.lv = libvirt_module()
        self.uri = default_uri(uri)
        self.lv.registerErrorHandler(_quiet, None)
        self._host: dict[str, str] | None = None
        with libvirt_errors(f"cannot connect to libvirt at {self.uri}"):
            self.conn: Any = self.lv.open(self.uri)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.conn.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def domain(self, name: str) -> Any:
        """The domain called ``name`` (or with that UUID)."""
        with libvirt_errors(f"no domain {name!r} at {self.uri}"):
            try:
                return self.conn.lookupByName(name)
            except self.lv.libvirtError:
                if len(name) == 36 and name.count("-") == 4:
                    return self.conn.lookupByUUIDString(name)
                raise

    def find(self, name: str, uuid: str = "") -> Any | None:
        """The domain with ``uuid`` (if given), else called ``name``; None when neither."""
        for lookup, key in ((self.conn.lookupByUUIDString, uuid), (self.conn.lookupByName, name)):
            if key:
                with contextlib.suppress(self.lv.libvirtError):
                    return lookup(key)
        return None

    def domains(self) -> list[Any]:
        with libvirt_errors(f"cannot list the domains at {self.uri}"):
            found: list[Any] = self.conn.listAllDomains(0)
        return sorted(found, key=lambda d: str(d.name()))

    def host(self) -> dict[str, str]:
        """The host's identity: its name, and its SMBIOS UUID where libvirt knows it.

        (Not the capabilities' host UUID: ``getCapabilities`` probes the host for seconds.)
        """
        if self._host is None:
            with libvirt_errors("cannot read the host's name"):
                name = str(self.conn.getHostname())
            uuid = ""
            with contextlib.suppress(self.lv.libvirtError, ET.ParseError):
                sysinfo = ET.fromstring(self.conn.getSysinfo(0))
                uuid = (sysinfo.findtext("./system/entry[@name='uuid']") or "").strip()
            self._host = {"uuid": uuid, "name": name}
        return dict(self._host)

    def define(self, xml: str | bytes) -> Any:
        text = xml.decode() if isinstance(xml, bytes) else xml
        with libvirt_errors("cannot define the domain"):
            return self.conn.defineXML(text)


def is_active(dom: Any) -> bool:
    return bool(dom.isActive())


def state_name(dom: Any) -> str:
    lv = libvirt_module()
    names = {
        lv.VIR_DOMAIN_NOSTATE: "no state",
        lv.VIR_DOMAIN_RUNNING: "running",
        lv.VIR_DOMAIN_BLOCKED: "blocked",
        lv.VIR_DOMAIN_PAUSED: "paused",
        lv.VIR_DOMAIN_SHUTDOWN: "shutting down",
        lv.VIR_DOMAIN_SHUTOFF: "shut off",
        lv.VIR_DOMAIN_CRASHED: "crashed",
        lv.VIR_DOMAIN_PMSUSPENDED: "suspended",
    }
    state = dom.state()[0]
    return names.get(state, f"state {state}")
