"""A running test guest under libvirt: its definition, disks and serial command channel."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import libvirt

from .guest import READY, GuestImage

MiB: Final = 1 << 20
PREFIX: Final = "srtest-"
# Per test session, so concurrent sessions on one host never touch each other's domains.
SESSION: Final = f"{PREFIX}{os.getpid():x}-"
_DONE: Final = re.compile(rb"@@DONE (\d+) (\d+)@@")


@dataclass
class DiskSpec:
    target: str
    fmt: str = "qcow2"
    size: int = 64 * MiB
    ext4: bool = False  # formatted on the host, mounted at /mnt in the guest


def run(*args: str | Path) -> str:
    proc = subprocess.run([str(a) for a in args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise AssertionError(f"{args[0]} failed ({proc.returncode}): {proc.stderr}{proc.stdout}")
    return proc.stdout


def make_disk(path: Path, spec: DiskSpec) -> None:
    raw = path.with_suffix(".build") if spec.fmt != "raw" else path
    with raw.open("wb") as f:
        f.truncate(spec.size)
    if spec.ext4:
        run("mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0,nodiscard", raw)
    if spec.fmt != "raw":
        run("qemu-img", "convert", "-f", "raw", "-O", spec.fmt, raw, path)
        raw.unlink()
    os.chmod(path, 0o644)


def domain_xml(
    name: str, folder: Path, image: GuestImage, disks: list[tuple[DiskSpec, Path]], agent: bool
) -> str:
    disk_xml = "".join(
        f"""    <disk type='file' device='disk'>
      <driver name='qemu' type='{spec.fmt}'/>
      <source file='{path}'/>
      <target dev='{spec.target}' bus='virtio'/>
    </disk>
"""
        for spec, path in disks
    )
    mount = next((s.target for s, _ in disks if s.ext4), "")
    channel = (
        "    <channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel>\n"
        if agent
        else ""
    )
    return f"""<domain type='qemu'>
  <name>{name}</name>
  <uuid>{uuid.uuid4()}</uuid>
  <memory unit='MiB'>192</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>{image.kernel}</kernel>
    <initrd>{image.initrd}</initrd>
    <cmdline>console=ttyS0 quiet panic=-1{f" sr_mount={mount}" if mount else ""}</cmdline>
  </os>
  <features><acpi/></features>
  <on_reboot>destroy</on_reboot>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
{disk_xml}    <serial type='unix'>
      <source mode='bind' path='{folder}/sockets/{name}-console.sock'/>
      <target port='0'/>
    </serial>
{channel}    <interface type='user'><model type='virtio'/></interface>
    <memballoon model='none'/>
  </devices>
</domain>
"""


class Console:
    """The guest's command channel on its serial port (a unix socket libvirt's qemu binds)."""

    def __init__(self, path: Path, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX)
                self.sock.connect(str(path))
                break
            except OSError:
                self.sock.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        self.buf = b""
        self.seq = 0
        self._handshake(deadline)

    def _handshake(self, deadline: float) -> None:
        """Output sent while nobody listens is lost: ask until the loop answers."""
        while True:
            try:
                self.run("true", timeout=0.5)
                return
            except TimeoutError:
                if _DONE.search(self.buf):  # it answers, only slower than we ask (a loaded
                    left = max(deadline - time.monotonic(), 5.0)  # host): wait for the last
                    self.run("true", timeout=left)
                    return
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the guest did not answer: {self.buf[-2000:]!r}") from None

    def run(self, command: str, timeout: float = 60.0) -> tuple[int, str]:
        self.seq += 1
        self.sock.sendall(f"{self.seq} {command}\n".encode())
        deadline = time.monotonic() + timeout
        while True:
            for match in _DONE.finditer(self.buf):
                if int(match.group(1)) == self.seq:
                    out = self.buf[: match.start()].decode(errors="replace")
                    self.buf = self.buf[match.end() :]
                    return int(match.group(2)), out.replace("\r", "")
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no answer to {command!r}")
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            if not data:
                raise ConnectionError("the guest's console closed")
            self.buf += data

    def check(self, command: str, timeout: float = 60.0) -> str:
        rc, out = self.run(command, timeout)
        assert rc == 0, f"{command!r} failed ({rc}): {out}"
        lines = out.splitlines()
        return "\n".join(lines[1:] if lines and not lines[0] else lines).strip()

    def close(self) -> None:
        self.sock.close()


@dataclass
class Guest:
    conn: Any
    name: str
    folder: Path
    image: GuestImage
    disks: list[tuple[DiskSpec, Path]]
    agent: bool = True
    console: Console | None = field(default=None, repr=False)

    @classmethod
    def create(
        cls,
        conn: Any,
        name: str,
        folder: Path,
        image: GuestImage,
        specs: list[DiskSpec],
        agent: bool = True,
    ) -> Guest:
        folder.mkdir(parents=True, exist_ok=True)
        disks = [
            (s, folder / f"{name}-{s.target}.{'img' if s.fmt == 'raw' else s.fmt}") for s in specs
        ]
        for spec, path in disks:
            make_disk(path, spec)
        guest = cls(conn, SESSION + name, folder, image, disks, agent)
        conn.defineXML(domain_xml(guest.name, folder, image, disks, agent))
        return guest

    @property
    def dom(self) -> Any:
        return self.conn.lookupByName(self.name)

    def disk_path(self, target: str) -> Path:
        return next(p for s, p in self.disks if s.target == target)

    def start(self) -> Console:
        self.dom.create()
        return self.connect()

    def connect(self, socket_name: str | None = None) -> Console:
        path = self.folder / "sockets" / (socket_name or f"{self.name}-console.sock")
        self.console = Console(path)
        return self.console

    @property
    def sh(self) -> Console:
        assert self.console is not None, "the guest is not started"
        return self.console

    def wait_agent(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while "state='connected'" not in self.dom.XMLDesc(0):
            assert time.monotonic() < deadline, "the guest agent did not connect"
            time.sleep(0.2)

    def sha(self, dev: str) -> str:
        # the kernel may print to the serial console meanwhile (I/O errors while an instant
        # recovery's export restarts): take the digest itself, not the output's first word
        out = self.sh.check(f"sha256sum /dev/{dev}")
        found = re.search(rf"\b([0-9a-f]{{64}})\s+/dev/{dev}\b", out)
        assert found, f"no sha256sum of /dev/{dev} in the console output: {out!r}"
        return found.group(1)

    def write(self, dev: str, offset_mib: int, count_mib: int = 1, seed: str = "") -> None:
        """Write ``count_mib`` MiB of fresh random data at ``offset_mib`` MiB (fsync'ed)."""
        self.sh.check(
            f"dd if=/dev/urandom of=/dev/{dev} bs=1M seek={offset_mib} count={count_mib} "
            "conv=fsync,notrunc 2>/dev/null"
        )

    def stop(self) -> None:
        """Flush the guest and power it off."""
        if self.console is not None:
            with contextlib.suppress(Exception):
                self.sh.check("sync")
            self.console.close()
            self.console = None
        with contextlib.suppress(libvirt.libvirtError):
            self.dom.destroy()

    def remove(self) -> None:
        self.stop()
        with contextlib.suppress(libvirt.libvirtError):
            self.dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA)


def remove_test_domains(conn: Any, *, stale: bool = False) -> None:
    """This session's test domains; with ``stale``, also shut-off ones of earlier sessions."""
    for dom in conn.listAllDomains(0):
        name = dom.name()
        if name.startswith(SESSION) or (stale and name.startswith(PREFIX) and not dom.isActive()):
            with contextlib.suppress(libvirt.libvirtError):
                dom.destroy()
            with contextlib.suppress(libvirt.libvirtError):
                dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA)


def copy_image(image: GuestImage, dest: Path) -> GuestImage:
    """The kernel and initramfs where libvirt's qemu user can read them."""
    dest.mkdir(parents=True, exist_ok=True)
    kernel, initrd = dest / "vmlinuz", dest / "initrd.gz"
    shutil.copy(image.kernel, kernel)
    shutil.copy(image.initrd, initrd)
    return GuestImage(kernel, initrd)


READY_MARKER = READY
