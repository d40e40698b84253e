"""Instant recovery against a full restore (not a timed test; run by hand, as root).

    python bench/instant.py [--sizes 1,8,32] [--data-gib 1] [--read-gib 2] [--workdir DIR]

(a) For each disk size (GiB, sparse, ``--data-gib`` of random data spread over it): the test
    guest of ``tests/libvirt`` (Debian's kernel and a busybox initramfs, TCG) is backed up
    through libvirt, then timed from the command to its serial console answering (the
    "login prompt": the guest's command loop runs):
      - ``restore vm POINT --instant --as-new NAME`` (then ``instant abort``);
      - ``restore vm POINT --as-new NAME --start`` (full restore, then boot).
    The tiny guest boots from a kernel and initramfs outside its disks, so the boot itself
    reads little of the disk: the instant time is the export's start plus the overlays.
(b) A disk point of ``--read-gib`` of random data: ``restore disk`` to a file against
    ``nbdcopy`` from ``strongroom serve`` (with and without the server's start-up), page
    cache of the vault dropped before each.  Target: nbdcopy >= 70 % of restore's throughput.

Results are printed and written to WORKDIR/instant-bench.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "src")]

from measure import evict  # noqa: E402
from tests.libvirt._guest import Console, DiskSpec, copy_image, domain_xml  # noqa: E402
from tests.libvirt.guest import guest_image  # noqa: E402

PASSWORD = "bench-passphrase"
EXE = [sys.executable, "-m", "strongroom.cli.main"]
MiB, GiB = 1 << 20, 1 << 30
PIECE = 64 * MiB


def env_for(vault: Path, state: Path) -> dict[str, str]:
    env = {**os.environ, "STRONGROOM_PASSWORD": PASSWORD, "STRONGROOM_VAULT": str(vault)}
    env["PYTHONPATH"] = f"{ROOT / 'src'}:{ROOT}"
    env["STRONGROOM_INSTANT_DIR"] = str(state)
    return env


def sr(env: dict[str, str], *args: str | Path) -> str:
    done = subprocess.run([*EXE, *map(str, args)], env=env, capture_output=True, text=True,
                          check=False)  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"strongroom {' '.join(map(str, args))} failed: {done.stderr.strip()}")
    return done.stdout


def sparse_disk(path: Path, size: int, data: int) -> None:
    """A raw sparse file with ``data`` bytes of random data in pieces spread over it."""
    pieces = max(data // PIECE, 1)
    stride = size // pieces
    with open(path, "wb") as out:
        out.truncate(size)
        for i in range(pieces):
            os.pwrite(out.fileno(), os.urandom(PIECE), i * stride)


def until_console(socket: Path, started: float) -> float:
    Console(socket, timeout=900).close()
    return round(time.monotonic() - started, 2)


def virsh(*args: str) -> None:
    subprocess.run(["virsh", "-q", *args], capture_output=True, check=False)


def boot_times(work: Path, env: dict[str, str], size_gib: int, data: int) -> dict[str, Any]:
    import uuid

    folder = work / f"g{size_gib}"
    (folder / "sockets").mkdir(parents=True)
    os.chmod(folder / "sockets", 0o777)
    name = f"srb15inst-{uuid.uuid4().hex[:6]}"
    disk = folder / f"{name}-vda.img"
    sparse_disk(disk, size_gib * GiB, data)
    image = copy_image(guest_image(), work / "boot")
    xml = domain_xml(name, folder, image, [(DiskSpec("vda", fmt="raw"), disk)], False)
    (folder / "dom.xml").write_text(xml)
    subprocess.run(["virsh", "-q", "define", str(folder / "dom.xml")], check=True,
                   capture_output=True)  # fmt: skip
    try:
        started = time.monotonic()
        point = json.loads(sr(env, "backup", "vm", name, "--json"))["point"]
        backup_s = round(time.monotonic() - started, 2)
        out: dict[str, Any] = {"size_gib": size_gib, "data_bytes": data, "backup_s": backup_s}
        inst, full = f"{name}-i", f"{name}-f"
        for label, new, args in (
            ("instant_s", inst, ["--instant"]),
            ("full_restore_boot_s", full, ["--start"]),
        ):
            target = folder / label
            target.mkdir()
            started = time.monotonic()
            sr(env, "restore", "vm", point, "--as-new", new, "--disk-dir", target, *args)
            out[label + "_command"] = round(time.monotonic() - started, 2)
            out[label] = until_console(folder / "sockets" / f"{new}-console.sock", started)
            if label == "instant_s":
                sr(env, "instant", "abort", new)
            else:
                virsh("destroy", new)
                virsh("undefine", new)
        print(json.dumps(out), flush=True)
        return out
    finally:
        virsh("undefine", name)
        shutil.rmtree(folder, ignore_errors=True)


def read_times(work: Path, env: dict[str, str], size: int) -> dict[str, Any]:
    img = work / "read.img"
    sparse_disk(img, size, size)
    point = json.loads(sr(env, "backup", "disk", img, "--json"))["point"]
    img.unlink()
    vault = Path(env["STRONGROOM_VAULT"])
    evict(vault.rglob("*"))
    out_file = work / "restored.raw"
    started = time.monotonic()
    sr(env, "restore", "disk", point, img, "--to", out_file)
    restore_s = time.monotonic() - started
    out_file.unlink()
    evict(vault.rglob("*"))
    sock = work / "s.sock"
    started = time.monotonic()
    proc = subprocess.Popen([*EXE, "serve", point, "--socket", sock], env=env,
                            stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert proc.stdout is not None
    uri = proc.stdout.readline().split()[1]
    copy_started = time.monotonic()
    subprocess.run(["nbdcopy", uri, str(out_file)], check=True)
    done = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    proc.wait()
    out_file.unlink()
    result = {
        "bytes": size,
        "restore_disk_s": round(restore_s, 2),
        "nbdcopy_s": round(done - copy_started, 2),
        "nbdcopy_with_serve_start_s": round(done - started, 2),
    }
    result["ratio"] = round(restore_s / (done - copy_started), 2)
    result["ratio_with_start"] = round(restore_s / (done - started), 2)
    print(json.dumps(result), flush=True)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,8,32")
    parser.add_argument("--data-gib", type=float, default=1.0)
    parser.add_argument("--read-gib", type=float, default=2.0)
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--skip-boot", action="store_true")
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="srbench-", dir="/var/tmp"))
    work.mkdir(parents=True, exist_ok=True)
    os.chmod(work, 0o711)
    env = env_for(work / "vault", work / "state")
    sr(env, "init", "--kdf-memory", "8", "--kdf-time", "1")
    results: dict[str, Any] = {"load_before": os.getloadavg(), "boot": []}
    if not args.skip_boot:
        for size in (int(x) for x in args.sizes.split(",")):
            results["boot"].append(boot_times(work, env, size, int(args.data_gib * GiB)))
    results["read"] = read_times(work, env, int(args.read_gib * GiB))
    results["load_after"] = os.getloadavg()
    (work / "instant-bench.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
