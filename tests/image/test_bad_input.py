"""Bad input gives a clear error and a non-zero exit, and leaves nothing half-done."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from strongroom.image.sample import SampleVM, make_sample_vm

from ._vm import CLIResult, MiB, cli, identical, run, snapshot

pytestmark = pytest.mark.usefixtures("image_tools")


@pytest.fixture
def vm(vault_env: Path, tmp_path: Path) -> SampleVM:
    return make_sample_vm(tmp_path / "vm", sizes=(64 * MiB, 32 * MiB))


@pytest.fixture
def backed_up(vm: SampleVM) -> tuple[SampleVM, str]:
    result = cli("backup", "vm", "--xml", vm.xml, "--json")
    assert result.code == 0, result.err
    return vm, result.json()["point"]


def _fails(result: CLIResult, *words: str, code: int = 1) -> None:
    assert result.code == code, (result.code, result.out, result.err)
    text = " ".join(result.err.split())
    for word in words:
        assert word in text, text


def _xml(tmp_path: Path, devices: str) -> Path:
    path = tmp_path / "dom.xml"
    path.write_text(f"<domain type='qemu'><name>bad</name><devices>{devices}</devices></domain>")
    return path


def _disk(source: str, fmt: str = "raw", dev: str = "vda") -> str:
    return (
        f"<disk type='file' device='disk'><driver name='qemu' type='{fmt}'/>"
        f"<source file='{source}'/><target dev='{dev}' bus='virtio'/></disk>"
    )


def test_missing_and_unreadable_images(vault_env: Path, tmp_path: Path) -> None:
    _fails(cli("backup", "disk", tmp_path / "nope.qcow2"), "not found", "nope.qcow2")
    garbage = tmp_path / "garbage.qcow2"
    garbage.write_bytes(os.urandom(64 * 1024))
    _fails(cli("backup", "disk", garbage, "--format", "qcow2"), "garbage.qcow2")
    _fails(cli("backup", "disk", tmp_path), "folder")
    _fails(cli("backup", "disk", garbage, "--format", "iso"), "unsupported disk format 'iso'")
    _fails(cli("backup", "disk", garbage, "--chunk-size", "3M"), "power of two")
    _fails(cli("backup", "disk", garbage, "--chunk-size", "lots"), code=2)


def test_bad_domain_xml(vault_env: Path, tmp_path: Path) -> None:
    _fails(cli("backup", "vm", "--xml", tmp_path / "none.xml"), "domain XML not found")
    bad = tmp_path / "bad.xml"
    bad.write_text("<domain><name>x</name>")
    _fails(cli("backup", "vm", "--xml", bad), "not valid XML")
    only_cdrom = _xml(tmp_path, "<disk type='file' device='cdrom'><target dev='sda'/></disk>")
    _fails(cli("backup", "vm", "--xml", only_cdrom), "names no disk", "cdrom")
    network = (
        "<disk type='network' device='disk'><source protocol='nbd'/><target dev='vda'/></disk>"
    )
    _fails(cli("backup", "vm", "--xml", _xml(tmp_path, network)), "names no disk", "network")
    missing = _xml(tmp_path, _disk(str(tmp_path / "gone.img")))
    _fails(cli("backup", "vm", "--xml", missing), "disk vda", "not found", "gone.img")
    image = tmp_path / "d.img"
    image.write_bytes(b"\0" * MiB)
    _fails(cli("backup", "vm", "--xml", _xml(tmp_path, _disk(str(image), "foo"))), "'foo'")
    assert cli("points", "--json").json() == []


def test_usage_errors(backed_up: tuple[SampleVM, str], tmp_path: Path) -> None:
    _, point = backed_up
    _fails(cli("restore", "vm", point, "--in-place", "--as-new", "x"), code=2)
    _fails(cli("restore", "vm", point), code=2)
    _fails(cli("restore", "disk", point, "--to", tmp_path / "x.img"), "2 disks", "name one")
    _fails(cli("restore", "disk", point, "vdz", "--to", tmp_path / "x.img"), "no disk 'vdz'")
    args: list[str | Path] = ["--to", tmp_path / "x.img", "--format", "qed"]
    _fails(cli("restore", "disk", point, "vda", *args), "unsupported target format 'qed'")
    _fails(cli("restore", "vm", "0000", "--in-place"), "no recovery point")
    assert not list(tmp_path.glob("x.*"))


def test_disk_point_restores(vm: SampleVM, tmp_path: Path) -> None:
    image = Path(vm.disks[1].path)
    result = cli("backup", "disk", image, "--source", "data-disk", "--json")
    assert result.code == 0, result.err
    doc = result.json()
    assert doc["kind"] == "disk" and doc["source"] == "data-disk"
    _fails(cli("restore", "vm", "latest", "--as-new", "x"), "no vm recovery point")
    human = cli("backup", "disk", image, "--source", "data-disk", "--chunk-size", "256K")
    assert human.code == 0, human.err
    lines = human.out.strip().splitlines()
    assert "raw-seek-data" in lines[0] and len(lines[-1]) == 64
    dest = tmp_path / "copy.qcow2"
    result = cli("restore", "disk", "latest", "--source", "data-disk", "--to", dest)
    assert result.code == 0, result.err
    assert identical(dest, "qcow2", image, "raw")


def test_existing_targets_need_force(backed_up: tuple[SampleVM, str], tmp_path: Path) -> None:
    vm, point = backed_up
    dest = tmp_path / "exists.img"
    dest.write_bytes(b"keep me")
    _fails(cli("restore", "disk", point, "vda", "--to", dest), "already exists", "--force")
    assert dest.read_bytes() == b"keep me"
    assert cli("restore", "disk", point, "vda", "--to", dest, "--force").code == 0
    assert identical(dest, "raw", Path(vm.disks[0].path), "qcow2")
    out = tmp_path / "out"
    out.mkdir()
    (out / "twin.xml").write_text("x")
    _fails(cli("restore", "vm", point, "--as-new", "twin", "--disk-dir", out), "twin.xml")
    assert sorted(p.name for p in out.iterdir()) == ["twin.xml"]  # no disk written either
    # a --disk-dir that does not exist yet is created (issue 18), as restic restore --target
    assert cli("restore", "vm", point, "--as-new", "t", "--disk-dir", tmp_path / "no").code == 0


def test_in_place_size_mismatch(backed_up: tuple[SampleVM, str], tmp_path: Path) -> None:
    vm, point = backed_up
    copies = snapshot(vm, tmp_path / "copy")
    vda, vdb = (Path(d.path) for d in vm.disks)
    run("qemu-img", "resize", "-q", "-f", "raw", vdb, "+1M")
    before = vda.read_bytes()
    _fails(cli("restore", "vm", point, "--in-place"), "vdb", "bytes", "--force")
    assert vda.read_bytes() == before  # checked every disk before writing any
    result = cli("restore", "vm", point, "--in-place", "--force", "--json")
    assert result.code == 0, result.err
    assert [d["mode"] for d in result.json()["disks"]] == ["in-place", "new"]
    assert identical(vdb, "raw", copies["vdb"], "raw")
    assert os.path.getsize(vdb) == 32 * MiB


def _hold(image: Path, fmt: str, *extra: str) -> subprocess.Popen[bytes]:
    sock = Path(tempfile.mkdtemp(prefix="srhold-", dir="/tmp")) / "h.sock"
    command = ["qemu-nbd", "--persistent", f"--socket={sock}", "-f", fmt, *extra, str(image)]
    proc = subprocess.Popen(command, stderr=subprocess.DEVNULL)
    for _ in range(500):
        if sock.exists():
            return proc
        if proc.poll() is not None:
            raise AssertionError("qemu-nbd holder exited")
        subprocess.run(["sleep", "0.01"], check=True)
    raise AssertionError("qemu-nbd holder did not start")


def test_disk_in_use(backed_up: tuple[SampleVM, str], tmp_path: Path) -> None:
    vm, point = backed_up
    copies = snapshot(vm, tmp_path / "copy")
    vda = Path(vm.disks[0].path)
    run("qemu-io", "-f", "qcow2", "-c", "write -P 0x5a 0 1M", vda)  # differs from the point
    proc = _hold(vda, "qcow2")  # a writer, like a running VM
    try:
        _fails(cli("backup", "vm", "--xml", vm.xml), "in use", "offline backup")
        _fails(cli("restore", "vm", point, "--in-place"), "in use", "--force")
    finally:
        proc.terminate()
        proc.wait()
    proc = _hold(vda, "qcow2", "--read-only")  # a reader still blocks writes
    try:
        _fails(cli("restore", "vm", point, "--in-place"), "in use")
        assert not identical(vda, "qcow2", copies["vda"], "qcow2")
        result = cli("restore", "vm", point, "--in-place", "--force", "--json")
        assert result.code == 0, result.err
        assert result.json()["disks"][0]["chunks_written"] == 1
    finally:
        proc.terminate()
        proc.wait()
    assert identical(vda, "qcow2", copies["vda"], "qcow2")


def test_damaged_point_writes_nothing(
    vm: SampleVM, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STRONGROOM_VAULT", str(tmp_path / "small-packs"))
    assert cli("init", "--kdf-memory", "1", "--kdf-time", "1", "--pack-size", "1").code == 0
    result = cli("backup", "vm", "--xml", vm.xml, "--json")
    assert result.code == 0, result.err
    point = result.json()["point"]
    from strongroom.image.records import load_point
    from strongroom.storage import LocalBackend
    from strongroom.vault import Vault
    from strongroom.vault.pack import pack_name

    location = Path(os.environ["STRONGROOM_VAULT"])
    vault = Vault.open(LocalBackend(location), os.environ["STRONGROOM_PASSWORD"])
    p = vault.resolve_point(point)
    records = load_point(vault, p).disks
    metadata = [bytes.fromhex(p.manifest.roots[0])]
    for r in records:
        metadata += [*r.pieces, r.tree_id]
    tree_packs = {vault.reader.entry(cid).pack for cid in metadata}
    data_packs = {
        vault.reader.entry(cid).pack for r in records for _, cid in r.chunk_map(vault).data()
    }
    victim = sorted(data_packs - tree_packs)[0]
    (location / pack_name(victim)).unlink()
    out = tmp_path / "out"
    out.mkdir()
    _fails(cli("restore", "vm", point, "--as-new", "n", "--disk-dir", out), "damaged", "nothing")
    assert list(out.iterdir()) == []
    before = Path(vm.disks[0].path).read_bytes()
    _fails(cli("restore", "vm", point, "--in-place"), "damaged")
    assert Path(vm.disks[0].path).read_bytes() == before


def _limited(limit: int, *argv: str | Path) -> subprocess.CompletedProcess[str]:
    """The CLI in a child process whose files may not grow past ``limit`` bytes."""
    code = (
        "import resource, sys\n"
        f"resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))\n"
        "from strongroom.cli.main import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code, *(str(a) for a in argv)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


@pytest.mark.parametrize("fmt", ["qcow2", "raw"])
def test_out_of_space_leaves_no_file(
    backed_up: tuple[SampleVM, str], tmp_path: Path, fmt: str
) -> None:
    _, point = backed_up
    dest = tmp_path / "out" / f"disk.{fmt}"
    dest.parent.mkdir()
    proc = _limited(2 * MiB, "restore", "disk", point, "vda", "--to", dest, "--format", fmt)
    assert proc.returncode == 1, proc.stderr
    assert "no space left on device writing" in " ".join(proc.stderr.split())
    assert list(dest.parent.iterdir()) == []


def test_out_of_space_mid_write(
    backed_up: tuple[SampleVM, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A raw target whose disk fills after a few writes."""
    _, point = backed_up
    real = os.pwrite
    calls = [0]

    def pwrite(fd: int, data: Any, offset: int) -> int:
        calls[0] += 1
        if calls[0] > 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", pwrite)
    dest = tmp_path / "out" / "disk.img"
    dest.parent.mkdir()
    _fails(cli("restore", "disk", point, "vda", "--to", dest), "no space left", str(dest))
    assert calls[0] > 3
    assert list(dest.parent.iterdir()) == []


def test_qemu_tools_missing(
    backed_up: tuple[SampleVM, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    vm, _ = backed_up
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("qemu-img", "qemu-io"):
        (bin_dir / tool).symlink_to(subprocess.check_output(["which", tool], text=True).strip())
    monkeypatch.setenv("PATH", str(bin_dir))
    _fails(cli("backup", "vm", "--xml", vm.xml), "qemu-nbd not found", "apt-get install qemu-utils")
    (bin_dir / "qemu-img").unlink()
    _fails(cli("backup", "vm", "--xml", vm.xml), "qemu-img not found", "qemu-utils")


def test_not_images(backed_up: tuple[SampleVM, str], tmp_path: Path) -> None:
    """FIFOs (which would hang qemu-img), files that are not the named format, and points
    that are not disk points: one-line errors, nothing committed or written."""
    vm, _ = backed_up
    fifo = tmp_path / "pipe.img"
    os.mkfifo(fifo)
    points = cli("points", "--json").json()
    _fails(cli("backup", "disk", fifo), "pipe.img", "neither a regular file")
    _fails(cli("backup", "disk", fifo, "--format", "qcow2"), "neither a regular file")
    _fails(cli("backup", "vm", "--xml", _xml(tmp_path, _disk(str(fifo)))), "disk vda", "neither")
    text = tmp_path / "notes.txt"
    text.write_text("not a disk image\n")
    bad = _xml(tmp_path, _disk(str(text), "qcow2", "vdb"))
    _fails(cli("backup", "vm", "--xml", bad), "dom.xml: disk vdb", "not in qcow2 format")
    assert cli("points", "--json").json() == points
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "a.txt").write_text("a")
    files = cli("backup", "files", tree, "--json")
    assert files.code == 0, files.err
    point = files.json()["point"]
    _fails(cli("restore", "disk", point, "--to", tmp_path / "x.img"), "files point")
    _fails(cli("restore", "vm", point, "--as-new", "x"), "files point", "not a VM")
    disk = cli("backup", "disk", vm.disks[1].path, "--json").json()["point"]
    _fails(cli("restore", "vm", disk, "--in-place"), "disk point", "not a VM")
    _fails(cli("restore", "disk", disk, "--to", fifo, "--force"), "neither a regular file")
    missing = cli("restore", "disk", disk, "--to", tmp_path / "missing" / "x.img")
    _fails(missing, "target folder", "missing does not exist")
    _fails(cli("restore", "disk", disk, "--to", tmp_path), "is a folder")
    assert len(missing.err.strip().splitlines()) == 1
    assert fifo.exists() and not list(tmp_path.glob("x.*"))
