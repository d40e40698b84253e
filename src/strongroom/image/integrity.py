"""Checking a disk image before its block status is trusted.

qemu reads a data cluster that lies past the end of its file as zeros, and its block status
reports it as zero, so a truncated qcow2, vmdk, vdi ... would back up "successfully" as
zeros.  Before an offline backup reads a non-raw image, every image of its backing chain is
checked, reading only metadata:

* ``qemu-img check`` for the formats that have one (corruptions or a failed check are
  errors; leaked clusters are harmless);
* ``qemu-img map``: every data extent must lie inside the file holding it (the image, a
  backing file, or a qcow2 external data file); vdi and qcow need this, their check is blind
  to truncation or missing;
* a vmdk's flat extent files must be as long as the extents they hold.

A raw image needs none of this: its size is its content.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

from strongroom.errors import ImageError
from strongroom.image.formats import qemu_img_path, run_qemu_img
from strongroom.records import dataclass

__all__ = ["check_image"]

_CHECKED: Final = ("qcow2", "qed", "vmdk", "vhdx", "parallels", "vdi")
# vmdk offsets point into per-extent files the map does not name: its check covers them.
_UNMAPPED: Final = ("raw", "vmdk")
_CHECK_CORRUPT: Final = 2
_CHECK_FAILED: Final = 1
_TIMEOUT: Final = 600.0


@dataclass(frozen=True)
class _Layer:
    """One image of a backing chain: its file, format and the file its offsets point into."""

    path: Path
    format: str
    data_file: Path
    doc: dict[str, Any]


def _run(args: list[str]) -> subprocess.CompletedProcess[str]:
    return run_qemu_img(args, timeout=_TIMEOUT)


def _first_error(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR")]
    line = (errors or lines or ["(no output)"])[0]
    return line.removeprefix("qemu-img: ").removeprefix("ERROR").lstrip(": ")


def _damaged(path: Path, detail: str) -> ImageError:
    return ImageError(
        f"disk image {path} is damaged ({detail}): qemu cannot read all of its data; "
        "repair or restore the image first"
    )


def _chain(path: Path, fmt: str) -> list[_Layer]:
    proc = _run(["info", "-U", "--backing-chain", "--output=json", "-f", fmt, str(path)])
    if proc.returncode != 0:
        raise ImageError(f"cannot read disk image {path}: {_first_error(proc.stderr)}")
    layers = []
    for doc in json.loads(proc.stdout):
        image = Path(doc["filename"])
        specific = doc.get("format-specific", {}).get("data", {})
        data_file = specific.get("data-file") if doc.get("format") == "qcow2" else None
        target = _data_file(image, data_file) if data_file else image
        layers.append(_Layer(image, str(doc.get("format", "raw")), target, doc))
    return layers


def _data_file(image: Path, name: str) -> Path:
    """A qcow2 external data file: qemu 7 opens a relative name from its working folder,
    later versions beside the image; whichever exists is the one it read."""
    beside = image.parent / name
    return beside if beside.exists() and not Path(name).exists() else Path(name)


def _qemu_check(layer: _Layer) -> None:
    proc = _run(["check", "-U", "--output=json", "-f", layer.format, str(layer.path)])
    if proc.returncode == _CHECK_CORRUPT:
        try:
            count = int(json.loads(proc.stdout).get("corruptions", 0))
        except (ValueError, AttributeError):
            count = 0
        first = _first_error(proc.stderr) if proc.stderr.strip() else ""
        found = f"{count} corruption(s)" if count else "corrupt"
        raise _damaged(layer.path, f"qemu-img check: {found}{', first: ' if first else ''}{first}")
    if proc.returncode == _CHECK_FAILED:
        raise _damaged(layer.path, f"qemu-img check failed: {_first_error(proc.stderr)}")


def _flat_extents(layer: _Layer) -> None:
    specific = layer.doc.get("format-specific", {}).get("data", {})
    for extent in specific.get("extents", []):
        if extent.get("format") != "FLAT":
            continue
        name = Path(extent["filename"])
        need = int(extent.get("virtual-size", 0))
        size = _size(name)
        if size < need:
            raise _damaged(layer.path, f"extent {name} holds {size} of its {need} bytes")


def _size(path: Path) -> int:
    try:
        return os.stat(path).st_size
    except OSError as exc:
        raise ImageError(f"cannot read disk image file {path}: {exc.strerror}") from None


def _map_entries(path: Path, fmt: str) -> Iterator[dict[str, Any]]:
    """``qemu-img map`` extents one at a time (the output has one per line)."""
    command = [qemu_img_path(), "map", "-U", "--output=json", "-f", fmt, str(path)]
    with subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        for line in proc.stdout:
            text = line.strip().lstrip("[").rstrip(",]").strip()
            if text:
                yield json.loads(text)
        error = proc.stderr.read()
        if proc.wait() != 0:
            raise ImageError(f"cannot map disk image {path}: {_first_error(error)}")


def _check_map(path: Path, fmt: str, chain: list[_Layer]) -> None:
    sizes: dict[Path, int] = {}
    for extent in _map_entries(path, fmt):
        if not extent.get("data") or "offset" not in extent:
            continue
        depth = int(extent.get("depth", 0))
        if depth >= len(chain) or chain[depth].format in _UNMAPPED:
            continue
        layer = chain[depth]
        file = layer.data_file
        if file not in sizes:
            sizes[file] = _size(file)
        end = int(extent["offset"]) + int(extent["length"])
        if end > sizes[file]:
            raise _damaged(
                layer.path,
                f"data at guest offset {extent['start']} lies past the end of {file} "
                f"({end} > {sizes[file]} bytes): the file is truncated",
            )


def check_image(path: Path, fmt: str) -> None:
    """ImageError unless qemu can read every allocated byte of ``path`` (see the module doc)."""
    if fmt == "raw":
        return
    chain = _chain(path, fmt)
    for layer in chain:
        if layer.format in _CHECKED:
            _qemu_check(layer)
        if layer.format == "vmdk":
            _flat_extents(layer)
    _check_map(path, fmt, chain)
