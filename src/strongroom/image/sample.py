"""A small sample VM for demos and tests: libvirt XML plus two disks with real filesystems.

* disk 1 (``vda``): a GPT disk with one Linux partition at 1 MiB holding ext4, built by
  ``mkfs.ext4 -d`` (with ``-E offset=``) and changed later with ``debugfs -w``;
* disk 2 (``vdb``): an MBR disk with one FAT partition at 1 MiB (FAT16 below 512 MiB),
  built by ``mkfs.vfat --offset`` and filled and changed with mtools (``-i disk@@1M``).

Images in formats other than raw are built raw and converted with ``qemu-img convert``; a
change converts to raw, edits, and converts back.  Needs ``qemu-utils``, ``e2fsprogs``,
``dosfstools``, ``mtools`` and ``fdisk`` (sfdisk).

    python -m strongroom.image.sample create DIR [--name demo] [--formats qcow2,raw]
    python -m strongroom.image.sample change DIR [--generation N]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Final

from strongroom.image.formats import extension_for
from strongroom.records import dataclass

__all__ = ["SampleDisk", "SampleVM", "change_sample_vm", "load_sample_vm", "make_sample_vm"]

MiB: Final = 1 << 20
PART_OFFSET: Final = MiB
_TOOLS: Final = ("qemu-img", "sfdisk", "mkfs.ext4", "debugfs", "mkfs.vfat", "mcopy")
_PACKAGES: Final = "qemu-utils e2fsprogs dosfstools mtools fdisk"
_LINUX_FS: Final = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
_STATE: Final = "sample-vm.json"


@dataclass
class SampleDisk:
    target: str
    path: str
    format: str
    filesystem: str


@dataclass
class SampleVM:
    name: str
    folder: str
    xml: str
    disks: list[SampleDisk]
    generation: int = 0


def _run(*args: str | Path, stdin: str | None = None) -> None:
    proc = subprocess.run(
        [str(a) for a in args], input=stdin, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{args[0]} failed ({proc.returncode}): {proc.stderr}{proc.stdout}")


def _check_tools() -> None:
    missing = [t for t in _TOOLS if shutil.which(t) is None]
    if missing:
        raise RuntimeError(f"missing {', '.join(missing)}: apt-get install -y {_PACKAGES}")


def _text(rng: random.Random, lines: int) -> str:
    words = ["backup", "vault", "chunk", "disk", "image", "qemu", "restore", "point", "data"]
    return "".join(
        f"{n:06d} " + " ".join(rng.choice(words) for _ in range(12)) + "\n" for n in range(lines)
    )


def _ext4_raw(path: Path, size: int, content: Path) -> None:
    part_sectors = (size - 2 * PART_OFFSET) // 512
    script = f'label: gpt\nstart=2048, size={part_sectors}, type={_LINUX_FS}, name="root"\n'
    _run("sfdisk", "-q", path, stdin=script)
    _run(
        "mkfs.ext4", "-q", "-F", "-b", "4096", "-L", "root", "-d", content,
        "-E", f"offset={PART_OFFSET},nodiscard", path, f"{part_sectors // 2}k",
    )  # fmt: skip


def _vfat_raw(path: Path, size: int, content: Path) -> None:
    part_sectors = (size - PART_OFFSET) // 512
    fat, kind = ("32", "c") if size >= 512 * MiB else ("16", "e")  # FAT32 needs ~256 MiB+
    _run("sfdisk", "-q", path, stdin=f"label: dos\nstart=2048, size={part_sectors}, type={kind}\n")
    _run("mkfs.vfat", "-F", fat, "--offset", "2048", "-n", "DATA", path, str(part_sectors // 2))
    image = f"{path}@@{PART_OFFSET}"
    for item in sorted(content.rglob("*")):
        dest = "::/" + str(item.relative_to(content))
        if item.is_dir():
            _run("mmd", "-i", image, dest)
        else:
            _run("mcopy", "-i", image, item, dest)


def _fill_root(root: Path, rng: random.Random) -> None:
    (root / "etc").mkdir(parents=True)
    (root / "etc/hostname").write_text("demo-vm\n")
    (root / "etc/motd").write_text("Welcome to the strongroom demo VM\n")
    (root / "home/demo").mkdir(parents=True)
    (root / "home/demo/notes.txt").write_text("generation 0\n" + _text(rng, 200))
    (root / "var/log").mkdir(parents=True)
    (root / "var/log/syslog").write_text(_text(rng, 20000))
    (root / "srv").mkdir()
    (root / "srv/blob.bin").write_bytes(rng.randbytes(3 * MiB))


def _fill_data(root: Path, rng: random.Random) -> None:
    (root / "DOCS").mkdir(parents=True)
    (root / "README.TXT").write_text("data disk of the strongroom demo VM\n")
    (root / "DOCS/REPORT.TXT").write_text(_text(rng, 5000))
    (root / "RANDOM.BIN").write_bytes(rng.randbytes(2 * MiB))


def _domain_xml(name: str, disks: list[SampleDisk]) -> str:
    disk_xml = "".join(
        f"""    <disk type='file' device='disk'>
      <driver name='qemu' type='{d.format}'/>
      <source file='{d.path}'/>
      <target dev='{d.target}' bus='virtio'/>
    </disk>
"""
        for d in disks
    )
    return f"""<domain type='qemu'>
  <name>{name}</name>
  <uuid>6f1e2a52-8a7b-4c1e-9d3f-000000000001</uuid>
  <memory unit='MiB'>256</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='q35'>hvm</type>
    <boot dev='hd'/>
  </os>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
{disk_xml}    <disk type='file' device='cdrom'>
      <driver name='qemu' type='raw'/>
      <target dev='sda' bus='sata'/>
      <readonly/>
    </disk>
    <interface type='network'>
      <mac address='52:54:00:12:34:56'/>
      <source network='default'/>
      <model type='virtio'/>
    </interface>
    <console type='pty'/>
  </devices>
</domain>
"""


def _to_format(raw: Path, path: Path, fmt: str) -> None:
    """Convert ``raw`` to ``path`` in ``fmt`` (through a temporary name), or move it."""
    if fmt == "raw":
        os.replace(raw, path)
        return
    temp = path.with_name(f".{path.name}.convert")
    options = ["-o", "force_size=on"] if fmt == "vpc" else []
    _run("qemu-img", "convert", "-f", "raw", "-O", fmt, *options, raw, temp)
    os.replace(temp, path)
    raw.unlink()


def make_sample_vm(
    folder: Path,
    *,
    name: str = "demo-vm",
    formats: tuple[str, str] = ("qcow2", "raw"),
    sizes: tuple[int, int] = (128 * MiB, 64 * MiB),
    seed: int = 0,
) -> SampleVM:
    """Create ``folder/NAME.xml`` and its two disks; returns the description (also saved)."""
    _check_tools()
    folder = folder.absolute()
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    disks = [
        SampleDisk(dev, str(folder / f"{name}-{dev}{extension_for(fmt)}"), fmt, fs)
        for dev, fmt, fs in (("vda", formats[0], "ext4"), ("vdb", formats[1], "vfat"))
    ]
    with tempfile.TemporaryDirectory(dir=folder, prefix=".build-") as tmp:
        for disk, size, fill, build in (
            (disks[0], sizes[0], _fill_root, _ext4_raw),
            (disks[1], sizes[1], _fill_data, _vfat_raw),
        ):
            content, raw = Path(tmp, disk.target), Path(tmp, f"{disk.target}.raw")
            fill(content, rng)
            with raw.open("wb") as f:
                f.truncate(size)
            build(raw, size, content)
            _to_format(raw, Path(disk.path), disk.format)
    xml = folder / f"{name}.xml"
    xml.write_text(_domain_xml(name, disks))
    vm = SampleVM(name, str(folder), str(xml), disks)
    _save(vm)
    return vm


def _save(vm: SampleVM) -> None:
    Path(vm.folder, _STATE).write_text(json.dumps(asdict(vm), indent=1))


def load_sample_vm(folder: Path) -> SampleVM:
    doc = json.loads(Path(folder, _STATE).read_text())
    doc["disks"] = [SampleDisk(**d) for d in doc["disks"]]
    return SampleVM(**doc)


def _edit_raw(disk: SampleDisk, work: Path, generation: int, rng: random.Random) -> None:
    with tempfile.TemporaryDirectory(dir=work.parent, prefix=".edit-") as tmp:
        notes, blob = Path(tmp, "notes.txt"), Path(tmp, "blob.bin")
        notes.write_text(f"generation {generation}\n" + _text(rng, 300))
        blob.write_bytes(rng.randbytes(MiB))
        if disk.filesystem == "ext4":
            device = f"{work}?offset={PART_OFFSET}"
            commands = (
                f"rm /home/demo/notes.txt\nwrite {notes} /home/demo/notes.txt\n"
                f"write {blob} /srv/gen-{generation}.bin\n"
            )
            _run("debugfs", "-w", "-f", "-", device, stdin=commands)
        else:
            image = f"{work}@@{PART_OFFSET}"
            _run("mcopy", "-o", "-i", image, notes, "::/README.TXT")
            _run("mcopy", "-o", "-i", image, blob, f"::/GEN{generation}.BIN")


def change_sample_vm(vm: SampleVM, generation: int | None = None) -> SampleVM:
    """Change files inside both disks (a rewritten text file and a new 1 MiB file each)."""
    _check_tools()
    gen = vm.generation + 1 if generation is None else generation
    rng = random.Random(1000 + gen)
    for disk in vm.disks:
        path = Path(disk.path)
        if disk.format == "raw":
            _edit_raw(disk, path, gen, rng)
            continue
        work = path.with_name(f".{path.name}.raw")
        _run("qemu-img", "convert", "-f", disk.format, "-O", "raw", path, work)
        _edit_raw(disk, work, gen, rng)
        _to_format(work, path, disk.format)
    vm.generation = gen
    _save(vm)
    return vm


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m strongroom.image.sample")
    sub = parser.add_subparsers(dest="command", required=True)
    create = sub.add_parser("create", help="create a sample VM (XML + two disks) in DIR")
    create.add_argument("folder", type=Path)
    create.add_argument("--name", default="demo-vm")
    create.add_argument("--formats", default="qcow2,raw", help="formats of vda,vdb")
    change = sub.add_parser("change", help="change files inside the sample VM's disks")
    change.add_argument("folder", type=Path)
    change.add_argument("--generation", type=int)
    args = parser.parse_args(argv)
    if args.command == "create":
        first, second = args.formats.split(",")
        vm = make_sample_vm(args.folder, name=args.name, formats=(first, second))
        print(vm.xml)
    else:
        vm = change_sample_vm(load_sample_vm(args.folder), args.generation)
        print(f"{vm.name}: generation {vm.generation}")


if __name__ == "__main__":
    main()
