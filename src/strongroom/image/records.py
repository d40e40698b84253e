"""What an image recovery point holds: disk records and VM records, stored as tree chunks.

* A **disk tree**'s refs are its chunk map pieces, in order; its body is JSON
  (``"type": "strongroom.disk"``): target, bus, source path, format, virtual size, chunk size,
  chunk count, how it was read, and per-disk statistics.
* A **VM tree**'s refs are ``[domain XML chunk, disk tree, disk tree, ...]``; its body is JSON
  (``"type": "strongroom.vm"``): domain name, UUID, the path the XML was read from, the
  skipped devices, and for every disk its target and the ref index of its tree.

A ``vm`` point's single root is the VM tree; a ``disk`` point's is the disk tree.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Final

from strongroom.errors import ImageError, IntegrityError
from strongroom.image.chunkmap import ChunkMap, load_map
from strongroom.image.vaultview import TreeStore
from strongroom.vault import ChunkWriter, RecoveryPoint

__all__ = ["DiskRecord", "VMRecord", "load_point", "store_disk", "store_vm"]

DISK_TYPE: Final = "strongroom.disk"
VM_TYPE: Final = "strongroom.vm"


@dataclass
class DiskRecord:
    target: str
    bus: str
    source: str
    format: str
    virtual_size: int
    chunk_size: int
    chunks: int
    read_mode: str
    change_mode: str = "full-read-hash"
    stats: dict[str, Any] = field(default_factory=dict)
    # Change tracking (libvirt provider): checkpoint, chain state, fall-back reason.
    tracking: dict[str, Any] = field(default_factory=dict)
    # Permission bits of an image file (None: a block device, or a point from before them);
    # a new image restored from it gets them (else 0600).
    file_mode: int | None = None
    # The image file's device, inode, size, mtime_ns and ctime_ns when they vouch for its
    # content (offline backups; ``image/unchanged.py``): the next backup that finds them
    # equal reuses this map unread.  None: a block device, or a point from before them.
    file_state: dict[str, int] | None = None
    pieces: list[bytes] = field(default_factory=list)
    tree_id: bytes = b""

    def body(self) -> bytes:
        doc = {k: v for k, v in asdict(self).items() if k not in ("pieces", "tree_id")}
        if not self.tracking:
            del doc["tracking"]  # offline records keep their v1 shape
        if self.file_mode is None:
            del doc["file_mode"]
        if self.file_state is None:
            del doc["file_state"]
        return json.dumps({"v": 1, "type": DISK_TYPE, **doc}, sort_keys=True).encode()

    def summary(self) -> dict[str, Any]:
        keep = ("target", "source", "format", "virtual_size", "chunk_size", "read_mode")
        doc = {k: getattr(self, k) for k in keep} | {"change_mode": self.change_mode}
        return doc | ({"tracking": self.tracking} if self.tracking else {})

    def chunk_map(self, vault: TreeStore) -> ChunkMap:
        return load_map(vault, self.pieces, self.chunks, f"disk {self.target or self.source}")


@dataclass
class VMRecord:
    name: str
    uuid: str
    xml_path: str
    xml: bytes
    disks: list[DiskRecord]
    skipped: list[dict[str, str]] = field(default_factory=list)
    # Where the VM was read from when not an XML file: {"name": "libvirt", "uri": ...}.
    provider: dict[str, Any] = field(default_factory=dict)

    def disk(self, which: str | None) -> DiskRecord:
        """A disk by target (``vda``), source path or file name; the only one if None."""
        if which is None:
            if len(self.disks) == 1:
                return self.disks[0]
            names = ", ".join(d.target for d in self.disks)
            raise ImageError(f"the point holds {len(self.disks)} disks ({names}): name one")
        for d in self.disks:
            if which in (d.target, d.source) or which == d.source.rsplit("/", 1)[-1]:
                return d
        names = ", ".join(d.target or d.source for d in self.disks)
        raise ImageError(f"no disk {which!r} in the point (it has {names})")


def store_disk(vault: TreeStore, writer: ChunkWriter, record: DiskRecord) -> bytes:
    record.tree_id = vault.put_tree(writer, record.pieces, record.body())
    return record.tree_id


def store_vm(vault: TreeStore, writer: ChunkWriter, vm: VMRecord) -> bytes:
    xml_id = writer.put(vm.xml).chunk_id
    refs = [xml_id] + [d.tree_id for d in vm.disks]
    body = {
        "v": 1,
        "type": VM_TYPE,
        "name": vm.name,
        "uuid": vm.uuid,
        "xml_path": vm.xml_path,
        "xml": 0,
        "disks": [{"target": d.target, "tree": i + 1} for i, d in enumerate(vm.disks)],
        "skipped": vm.skipped,
    }
    if vm.provider:
        body["provider"] = vm.provider
    return vault.put_tree(writer, refs, json.dumps(body, sort_keys=True).encode())


def _json(body: bytes, want: str, where: str) -> dict[str, Any]:
    try:
        doc = json.loads(body)
    except ValueError:
        raise IntegrityError(f"{where}: tree body is not JSON") from None
    if not isinstance(doc, dict) or doc.get("type") != want or doc.get("v") != 1:
        raise IntegrityError(f"{where}: not a {want} v1 tree")
    return doc


def load_disk(vault: TreeStore, tree_id: bytes) -> DiskRecord:
    refs, body = vault.read_tree(tree_id)
    where = f"disk tree {tree_id.hex()[:16]}"
    doc = _json(body, DISK_TYPE, where)
    try:
        fields = {k: doc[k] for k in DiskRecord.__dataclass_fields__ if k in doc}
        if not isinstance(fields.get("file_mode", 0), int | None):
            raise TypeError("file_mode is not a number")
        fields["file_state"] = _file_state(fields.get("file_state"))
        return DiskRecord(**fields, pieces=refs, tree_id=tree_id)
    except TypeError as exc:
        raise IntegrityError(f"{where}: malformed disk record ({exc})") from None


def _file_state(value: object) -> dict[str, int] | None:
    """A recorded file state, or None for anything else (the disk is then read)."""
    if not isinstance(value, dict) or not value:
        return None
    if not all(isinstance(k, str) and type(v) is int for k, v in value.items()):
        return None
    return value


def _load_vm(vault: TreeStore, tree_id: bytes) -> VMRecord:
    refs, body = vault.read_tree(tree_id)
    doc = _json(body, VM_TYPE, f"VM tree {tree_id.hex()[:16]}")
    disks = [load_disk(vault, refs[d["tree"]]) for d in doc["disks"]]
    return VMRecord(
        name=doc["name"],
        uuid=doc["uuid"],
        xml_path=doc["xml_path"],
        xml=vault.read_chunk(refs[doc["xml"]]),
        disks=disks,
        skipped=doc.get("skipped", []),
        provider=doc.get("provider", {}),
    )


def load_point(vault: TreeStore, point: RecoveryPoint) -> VMRecord:
    """A point's content; a ``disk`` point comes back as a VM record without XML."""
    kind = point.manifest.kind
    if kind not in ("vm", "disk") or len(point.manifest.roots) != 1:
        raise ImageError(f"point {point.short_id} is a {kind} point, not a VM or disk backup")
    root = bytes.fromhex(point.manifest.roots[0])
    if kind == "vm":
        return _load_vm(vault, root)
    disk = load_disk(vault, root)
    return VMRecord(name="", uuid="", xml_path="", xml=b"", disks=[disk])
