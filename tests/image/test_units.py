"""The image engine's pieces on their own: domain XML, chunk maps, sparse runs, vault walk."""

from __future__ import annotations

import ctypes
import itertools
import mmap
import os
import threading
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strongroom.errors import ImageError, IntegrityError
from strongroom.image import BackupOptions, backup_disk, load_point
from strongroom.image.chunkmap import ChunkMap, decode_piece, encode_piece, load_map, store_map
from strongroom.image.domain import attach_disk, parse_domain, rewrite_as_new
from strongroom.image.restore import _runs
from strongroom.image.scan import chunk_indexes, run_parallel
from strongroom.vault import CHUNK_TREE, Vault, check_vault
from strongroom.vault.trees import walk

DOMAIN = b"""<domain type='kvm'>
  <name>web</name>
  <uuid>11111111-2222-3333-4444-555555555555</uuid>
  <os><type>hvm</type><nvram template='/usr/share/OVMF/VARS.fd'>/var/lib/nvram/web.fd</nvram></os>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='/images/web.qcow2'/>
      <backingStore type='file'><format type='raw'/><source file='/images/base.img'/></backingStore>
      <target dev='vda' bus='virtio'/>
    </disk>
    <disk type='block' device='disk'>
      <driver name='qemu' type='raw'/>
      <source dev='/dev/vg/web-data'/>
      <target dev='sdb' bus='scsi'/>
    </disk>
    <disk type='file' device='disk'>
      <source file='relative.img'/>
      <target dev='vdc'/>
    </disk>
    <disk type='network' device='disk'>
      <source protocol='rbd' name='pool/img'/>
      <target dev='vdd' bus='virtio'/>
    </disk>
    <disk type='file' device='cdrom'>
      <source file='/iso/install.iso'/>
      <target dev='sda' bus='sata'/>
    </disk>
    <interface type='bridge'>
      <mac address='52:54:00:aa:bb:cc'/>
      <target dev='vnet3'/>
    </interface>
  </devices>
</domain>"""


def test_parse_domain() -> None:
    info = parse_domain(DOMAIN, base=Path("/vms"))
    assert (info.name, info.uuid) == ("web", "11111111-2222-3333-4444-555555555555")
    got = [(d.target, d.bus, str(d.source), d.format, d.source_type) for d in info.disks]
    assert got == [
        ("vda", "virtio", "/images/web.qcow2", "qcow2", "file"),
        ("sdb", "scsi", "/dev/vg/web-data", "raw", "block"),
        ("vdc", "virtio", "/vms/relative.img", "raw", "file"),
    ]
    assert [(s.target, s.device) for s in info.skipped] == [("vdd", "disk"), ("sda", "cdrom")]
    with pytest.raises(ImageError, match="not a libvirt domain"):
        parse_domain(b"<network/>")
    with pytest.raises(ImageError, match="no <name>"):
        parse_domain(b"<domain/>")


def test_rewrite_as_new() -> None:
    paths = {"vda": (Path("/new/web2-vda.vmdk"), "vmdk")}
    root = ET.fromstring(rewrite_as_new(DOMAIN, "web2", paths))
    assert root.findtext("name") == "web2"
    assert root.findtext("uuid") != "11111111-2222-3333-4444-555555555555"
    mac = root.find("./devices/interface/mac")
    assert mac is not None and mac.get("address") != "52:54:00:aa:bb:cc"
    assert root.find("./devices/interface/target") is None
    nvram = root.find("./os/nvram")
    assert nvram is not None and not nvram.text and nvram.get("template")
    vda = root.find("./devices/disk/target[@dev='vda']/..")
    assert vda is not None and vda.find("backingStore") is None
    source, driver = vda.find("source"), vda.find("driver")
    assert source is not None and source.get("file") == "/new/web2-vda.vmdk"
    assert driver is not None and driver.get("type") == "vmdk"


def test_attach_next_free_target() -> None:
    xml, target = attach_disk(DOMAIN, Path("/x.qcow2"), "qcow2", "virtio", "d")
    assert target == "vdb"  # vda, vdc, vdd taken
    xml, target = attach_disk(xml, Path("/y.qcow2"), "qcow2", "virtio", "d")
    assert target == "vde"
    _, target = attach_disk(xml, Path("/z.img"), "raw", "scsi", "d")
    assert target == "sdc"  # sda (cdrom), sdb taken
    many = (
        b"<domain><name>m</name><devices>"
        + b"".join(f"<disk><target dev='vd{chr(97 + i)}'/></disk>".encode() for i in range(26))
        + b"</devices></domain>"
    )
    assert attach_disk(many, Path("/w"), "raw", "virtio", "d")[1] == "vdaa"


def test_chunk_map_pieces() -> None:
    cmap = ChunkMap(10)
    ids = [os.urandom(32) for _ in range(3)]
    for index, cid in {0: ids[0], 3: ids[1], 4: ids[0], 9: ids[2]}.items():
        cmap.set(index, cid)
    refs, body = encode_piece(cmap, 2, 8)
    assert refs == [ids[1], ids[0], ids[2]]  # distinct, in first-use order
    back = ChunkMap(10)
    assert decode_piece(refs, body, back, "t") == 8
    assert [back.get(i) for i in range(10)] == [None, None, None, ids[1], ids[0]] + [None] * 4 + [
        ids[2]
    ]
    assert cmap.differs(back) == [0]
    with pytest.raises(IntegrityError):
        decode_piece(refs[:1], body, ChunkMap(10), "t")
    with pytest.raises(IntegrityError):
        decode_piece(refs, body, ChunkMap(5), "t")


_slots = st.lists(st.sampled_from([None, b"a" * 32, b"b" * 32, bytes(31) + b"c"]), max_size=80)


@given(_slots, _slots, st.integers(0, 80), st.integers(0, 80))
@settings(max_examples=100, deadline=None)
def test_chunk_map_properties(
    mine: list[bytes | None], theirs: list[bytes | None], a: int, b: int
) -> None:
    """A piece decodes to what was encoded, is little-endian u32 refs after the head, and
    ``differs`` (64 KiB at a time, then id by id) finds exactly the differing chunks."""
    n = max(len(mine), len(theirs))
    left, right = ChunkMap(n), ChunkMap(n)
    for cmap, slots in ((left, mine), (right, theirs)):
        for i, cid in enumerate(slots):
            cmap.set(i, cid)
    assert left.differs(right) == [i for i in range(n) if left.get(i) != right.get(i)]
    first, count = min(a, b, n), min(abs(a - b), n - min(a, b, n))
    refs, body = encode_piece(left, first, count)
    head = 17  # "SRCM", version u8, first u64, count u32
    table = [int.from_bytes(body[head + 4 * k : head + 4 + 4 * k], "little") for k in range(count)]
    assert [None if r == 0xFFFFFFFF else refs[r] for r in table] == [
        left.get(first + k) for k in range(count)
    ]
    back = ChunkMap(n)
    assert decode_piece(refs, body, back, "t") == count
    assert [back.get(first + k) for k in range(count)] == [
        left.get(first + k) for k in range(count)
    ]
    if count:
        with pytest.raises(IntegrityError, match="truncated"):
            decode_piece(refs, body[:-1], ChunkMap(n), "t")


def test_chunk_map_differs_across_compare_blocks() -> None:
    left, right = ChunkMap(5000), ChunkMap(5000)
    for i in (0, 2047, 2048, 4999):
        right.set(i, b"x" * 32)
    assert left.differs(right) == [0, 2047, 2048, 4999]
    assert right.differs(right.copy()) == []


def test_chunk_map_in_vault_spans_pieces(
    local_vault: Vault, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("strongroom.image.chunkmap.PIECE_ENTRIES", 4)
    cmap = ChunkMap(11)
    writer = local_vault.writer()
    for i in (0, 5, 10):
        cmap.set(i, writer.put(os.urandom(100)).chunk_id)
    pieces = store_map(local_vault, writer, cmap)
    writer.flush()
    writer.close()
    assert len(pieces) == 3
    back = load_map(local_vault, pieces, 11, "t")
    assert back.differs(cmap) == []
    with pytest.raises(IntegrityError, match="covers 8 of 11"):
        load_map(local_vault, pieces[:2], 11, "t")


def test_sparse_runs() -> None:
    block = 4096
    data = bytes(block) + b"x" * block * 2 + bytes(block) + b"y" * 100
    assert _runs(data) == [
        (0, block, False),
        (block, 3 * block, True),
        (3 * block, 4 * block, False),
        (4 * block, 4 * block + 100, True),
    ]
    assert _runs(bytes(100)) == [(0, 100, False)]
    assert _runs(b"a" * block) == [(0, block, True)]
    assert _runs(bytes(block) + bytes(5)) == [(0, block + 5, False)]  # a zero tail joins
    assert _runs(b"") == []


@given(
    st.lists(st.tuples(st.booleans(), st.integers(1, 3)), max_size=12),
    st.integers(0, 4095),
    st.booleans(),
)
@settings(max_examples=100, deadline=None)
def test_sparse_runs_cover_the_data_block_by_block(
    blocks: list[tuple[bool, int]], tail: int, tail_data: bool
) -> None:
    """Runs tile the data in order, alternate, and say of each 4 KiB block (and the short
    tail) whether it holds a non-zero byte, wherever in the block that byte is."""
    data = bytearray()
    for nonzero, where in blocks:
        block = bytearray(4096)
        if nonzero:
            block[(where * 1361) % 4096] = where
        data += block
    data += b"t" * tail if tail_data else bytes(tail)
    runs = _runs(bytes(data))
    assert [r[0] for r in runs] == ([0, *(r[1] for r in runs[:-1])] if data else [])
    assert (runs[-1][1] if runs else 0) == len(data)
    assert all(a[2] != b[2] for a, b in itertools.pairwise(runs))
    for start, end, nonzero in runs:
        for at in range(start, end, 4096):
            assert any(data[at : min(at + 4096, end)]) == nonzero


def test_chunk_indexes() -> None:
    assert list(chunk_indexes([(0, 1), (10, 5), (15, 20), (100, 0)], 10)) == [0, 1, 2, 3]
    assert list(chunk_indexes([(5, 10), (12, 1), (31, 1)], 10)) == [0, 1, 3]


def test_disk_reads_go_into_page_aligned_buffers() -> None:
    """Each reading thread's buffer starts on a page: the kernel copies a page-aligned read
    5x slower into one that starts 16 bytes in, as a bytearray this size does (anonmem.py)."""
    seen: dict[int, int] = {}
    lock = threading.Lock()

    def work(item: int, buf: memoryview | None) -> None:
        assert buf is not None and len(buf) == 1 << 20
        with lock:
            seen[item] = ctypes.addressof(ctypes.c_char.from_buffer(buf))

    run_parallel(range(8), work, workers=3, buf=1 << 20)
    assert sorted(seen) == list(range(8))
    assert all(address % mmap.PAGESIZE == 0 for address in seen.values())


def test_vault_walk_reaches_every_chunk(local_vault: Vault, tmp_path: Path) -> None:
    image = tmp_path / "disk.img"
    with image.open("wb") as f:
        f.truncate(8 << 20)
        f.seek(1 << 20)
        f.write(os.urandom(3 << 20))
        f.seek(6 << 20)
        f.write(b"text " * 100_000)
    summary = backup_disk(local_vault, image, BackupOptions(chunk_size=256 * 1024), fmt="raw")
    point = local_vault.resolve_point(summary.point_id)
    assert point.manifest.kind == "disk" and point.manifest.consistency == "offline"
    record = load_point(local_vault, point).disks[0]
    assert (record.chunk_size, record.virtual_size, record.read_mode) == (
        256 * 1024,
        8 << 20,
        "raw-seek-data",
    )
    data = record.chunk_map(local_vault).distinct_ids()
    assert len(data) == 12 + 2  # 3 MiB random in 256 KiB chunks, ~0.5 MB text
    roots = [bytes.fromhex(r) for r in point.manifest.roots]

    def is_tree(cid: bytes) -> bool | None:
        entry = local_vault.index.lookup(cid)
        return None if entry is None else entry.ctype == CHUNK_TREE

    reached = {cid for cid, _ in walk(roots, is_tree, local_vault.read_chunk, set())}
    assert data <= reached
    report = check_vault(local_vault, read_data=True)
    assert report.ok, report.problems
