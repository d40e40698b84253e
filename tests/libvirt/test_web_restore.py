"""Restores of a VM from the dashboard into libvirt, end to end: a real server, a real agent
holding the passphrase and the real test guest.  The guest's ext4 disk holds a marker file
at the point; the dashboard's restore routes (an operator's session with its CSRF token,
over HTTP) restore it as a new domain that boots, in place over a changed guest, and
instantly (as new, listed and finalized; in place, then aborted), and refuse what the CLI
refuses with one line, changing nothing.

Domains are named ``srweb-<pid>-...`` (not the other tests' ``srtest-`` prefix, whose
stale-domain sweep would take a shut-off domain of this module): removed here, even when a
test fails."""

from __future__ import annotations

import contextlib
import hashlib
import html
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from http.cookiejar import CookieJar
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

import libvirt
from strongroom.image.nbd.lifetime import pid_alive
from tests.control.conftest import Control, env, ok, wait_for
from tests.server.conftest import free_port, init_server
from tests.web.conftest import api, browser, user_add

from ._guest import DiskSpec, Guest, MiB, domain_xml, make_disk
from .guest import GuestImage

__all__ = ["browser"]  # the fixture this module uses from tests/web

WEB = f"srweb-{os.getpid():x}-"
USER, PASSWORD = "olga", "operator password"
MARKER = "cat /mnt/marker"


@dataclass
class Rig:
    control: Control
    guest: Guest
    point: str
    state: Path  # the agent's STRONGROOM_INSTANT_DIR
    opener: Any
    csrf: str

    @property
    def base(self) -> str:
        return f"{self.control.url}/ui/items/webvm/points/{self.point}"


def _guest(conn: Any, vm_root: Path, image: GuestImage) -> Guest:
    """One ext4 disk mounted at /mnt in the guest; no guest agent."""
    name = f"{WEB}vm"
    folder = vm_root / name
    (folder / "sockets").mkdir(parents=True)
    os.chmod(folder / "sockets", 0o777)  # qemu (user libvirt-qemu) binds the console here
    os.chmod(folder, 0o755)
    spec = DiskSpec("vda", size=16 * MiB, ext4=True)
    disks = [(spec, folder / f"{name}-vda.qcow2")]
    make_disk(disks[0][1], spec)
    conn.defineXML(domain_xml(name, folder, image, disks, False))
    return Guest(conn, name, folder, image, disks, False)


def _remove_domains(conn: Any) -> None:
    for dom in conn.listAllDomains(0):
        if dom.name().startswith(WEB):
            with contextlib.suppress(libvirt.libvirtError):
                dom.destroy()
            with contextlib.suppress(libvirt.libvirtError):
                dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA)


def _start_agent(c: Control, machine: str, folder: Path, state: Path) -> None:
    """``agent run`` with its instant recoveries' state in ``state``, supervised by a process."""
    c.agents[machine] = subprocess.Popen(
        [sys.executable, "-m", "strongroom.cli.main", "agent", "run", "--config", str(folder),
         "--wait", "2"],
        env=env(
            STRONGROOM_AGENT_PROGRESS="0.2", XDG_CACHE_HOME=str(folder / "xdg"),
            STRONGROOM_INSTANT_DIR=str(state), STRONGROOM_INSTANT_SUPERVISOR="process",
        ),
        stderr=open(folder.parent / f"{machine}.log", "ab"),  # noqa: SIM115
    )  # fmt: skip


def _session(url: str) -> tuple[Any, str]:
    """A logged-in dashboard session (cookie jar) and its CSRF token, over plain HTTP."""
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()))
    page = opener.open(url + "/ui/login").read().decode()
    nonce = re.search(r'name="csrf" value="([^"]+)"', page)
    assert nonce is not None
    body = urlencode({"user": USER, "password": PASSWORD, "csrf": nonce.group(1)})
    home = opener.open(url + "/ui/login", body.encode()).read().decode()
    csrf = re.search(r'name="csrf" value="([^"]+)"', home)
    assert csrf is not None
    return opener, csrf.group(1)


def _backup_now(c: Control, item: str) -> str:
    status, doc = api(c.url, c.admin, "POST", f"/v1/items/{item}/backup-now")
    assert status == 201, doc
    job = _settled(c, int(doc["job"]), 120)
    assert job["state"] == "succeeded", job
    return str(job["point"])


def _settled(c: Control, job: int, timeout: float = 120) -> dict[str, Any]:
    def done() -> Any:
        found = api(c.url, c.admin, "GET", f"/v1/jobs/{job}")[1]
        return found if found["state"] not in ("queued", "running") else None

    found: dict[str, Any] = wait_for(f"job {job}", done, timeout)
    return found


@pytest.fixture(scope="module")
def rig(
    conn: Any, vm_root: Path, image: GuestImage, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Rig]:
    """The guest with ``before`` in /mnt/marker, backed up by its agent (shut off)."""
    root = tmp_path_factory.mktemp("webvm")
    _remove_domains(conn)
    g = _guest(conn, vm_root, image)
    state = g.folder / "instant"
    c = Control(root / "data", free_port(), init_server(root / "data"), time.time())
    try:
        g.start()
        g.sh.check("echo before > /mnt/marker && sync")
        g.stop()
        c.start()
        pw = root / "olga.pw"
        pw.write_text(PASSWORD + "\n")
        assert user_add(c.url, c.admin, USER, "operator", pw).returncode == 0
        ok(c.admin, "init", "--vault", f"{c.url}/main", "--kdf-memory", "1", "--kdf-time", "1")
        c.register("kvm1", root / "kvm1")
        c.admin_json("policy", "create", "yearly", "--vault", "main", "--schedule", "yearly")
        c.admin_json("protect", "vm", "kvm1", g.name, "--name", "webvm", "--policy", "yearly")
        _start_agent(c, "kvm1", root / "kvm1", state)
        point = _backup_now(c, "webvm")
        yield Rig(c, g, point, state, *_session(c.url))
    finally:
        _abort_instants(state)
        for machine in list(c.agents):
            c.stop_agent(machine)
        c.stop()
        g.stop()
        _remove_domains(conn)
        shutil.rmtree(g.folder, ignore_errors=True)


def _abort_instants(state: Path) -> None:
    """What a failed test left running: its export, supervisor, overlays and domain."""
    from strongroom.errors import StrongroomError
    from strongroom.image.instant import recover
    from strongroom.image.instant.state import records

    for record in records(state) if state.is_dir() else []:
        with contextlib.suppress(StrongroomError):
            _with_state(state, lambda r=record: recover.abort(r.name))


def _with_state(state: Path, call: Any) -> Any:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("STRONGROOM_INSTANT_DIR", str(state))
        return call()


def _restore(rig: Rig, **fields: str) -> dict[str, Any]:
    """POST the restore form; the job it made, once it has ended."""
    body = urlencode({**fields, "csrf": rig.csrf}).encode()
    with rig.opener.open(f"{rig.base}/restore", body, timeout=60) as reply:
        landed = reply.geturl()
    found = re.search(r"/ui/jobs/(\d+)$", landed)
    assert found, landed
    return _settled(rig.control, int(found.group(1)), 180)


def _refused(rig: Rig, **fields: str) -> tuple[int, str]:
    body = urlencode({**fields, "csrf": rig.csrf}).encode()
    try:
        with rig.opener.open(f"{rig.base}/restore", body, timeout=60) as reply:
            return int(reply.status), reply.read().decode()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read().decode()


def _failed_with(rig: Rig, job: dict[str, Any], words: str) -> None:
    """The job failed with one line, which the browser sees on the job's page."""
    assert job["state"] == "failed" and words in job["reason"], job
    assert "\n" not in job["reason"] and "Traceback" not in job["reason"], job
    page = rig.opener.open(f"{rig.control.url}/ui/jobs/{job['id']}", timeout=60).read()
    assert html.escape(job["reason"]).encode() in page


def _clone(rig: Rig, name: str) -> Guest:
    """A restored domain, booted: its console is named after it, beside the guest's."""
    clone = Guest(rig.guest.conn, name, rig.guest.folder, rig.guest.image, [], False)
    clone.connect(f"{name}-console.sock")
    return clone


def _reconnect(g: Guest) -> None:
    """The console of the domain started anew under the same name."""
    if g.console is not None:
        g.console.close()
    g.connect()


def _nbd_backed(dom: Any, flags: int = 0) -> bool:
    root = ET.fromstring(dom.XMLDesc(flags))
    return root.find("./devices/disk/backingStore/source[@protocol='nbd']") is not None


def test_the_image_page_offers_the_cli_options(rig: Rig) -> None:
    page = rig.opener.open(f"{rig.base}/restore-image", timeout=60).read().decode()
    for form in ("restore-disk", "restore-vm", "restore-instant", "instant-finish"):
        assert f'id="{form}"' in page
    for name in ("mode", "name", "disk_dir", "format", "connect", "start", "force", "verify"):
        assert f'name="{name}"' in page
    assert 'value="instant-finalize"' in page and 'value="instant-abort"' in page
    assert f"/points/{rig.point}/instant?agent=kvm1" in page  # the host's instant list


def test_as_new_into_libvirt_boots_a_taken_name_is_refused_and_a_disk_attaches(
    rig: Rig,
) -> None:
    name = f"{WEB}new"
    folder = rig.guest.folder / "new"
    fields = {"what": "vm", "mode": "new", "name": name, "disk_dir": str(folder), "start": "1"}
    job = _restore(rig, **fields)
    clone = Guest(rig.guest.conn, name, rig.guest.folder, rig.guest.image, [], False)
    try:
        assert job["state"] == "succeeded", job
        assert job["payload"]["what"] == "vm" and job["agent"] == "kvm1"
        clone = _clone(rig, name)
        assert clone.dom.UUIDString() != rig.guest.dom.UUIDString()
        assert clone.sh.check(MARKER) == "before"
        uuid, files = clone.dom.UUIDString(), sorted(folder.iterdir())
        # the name is taken now: one line on the job, nothing changed
        _failed_with(rig, _restore(rig, **fields), f"a domain named {name!r} already exists")
        assert clone.dom.UUIDString() == uuid and clone.dom.isActive()
        assert sorted(folder.iterdir()) == files
        # a disk of the point, attached live to the running clone (next to its disks)
        job = _restore(rig, what="disk", disk="vda", attach_to=name)
        assert job["state"] == "succeeded", job
        assert (folder / f"{name}-vdb.qcow2").is_file()
        deadline = time.monotonic() + 30
        while clone.sh.run("test -b /dev/vdb")[0] != 0:
            assert time.monotonic() < deadline, "the guest never saw the hot-plugged disk"
            time.sleep(0.3)
        clone.sh.check("mkdir -p /m2 && mount -o ro /dev/vdb /m2")
        assert clone.sh.check("cat /m2/marker") == "before"
    finally:
        clone.remove()


def test_a_taken_name_refused_in_chromium(rig: Rig, browser: Any, tmp_path: Path) -> None:
    """The VM form in real Chromium: the refusal is the job page's one line, live."""
    from playwright.sync_api import expect

    g, url = rig.guest, rig.control.url
    disk = hashlib.sha256(g.disk_path("vda").read_bytes()).hexdigest()
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    try:
        page.goto(url + "/ui/login")
        page.get_by_label("User name").fill(USER)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        page.wait_for_url(url + "/")
        page.goto(f"{rig.base}/restore-image")
        form = page.locator("#restore-vm")
        form.get_by_label("New VM's name (as new)").fill(g.name)  # the original's own name
        form.get_by_label("Start it (libvirt)").check()
        form.get_by_role("button", name="Restore the VM").click()
        page.wait_for_url(f"{url}/ui/jobs/*")
        facts = page.locator(".facts")
        expect(facts).to_contain_text("failed", timeout=60_000)
        expect(facts).to_contain_text(f"a domain named '{g.name}' already exists")
        page.screenshot(path=str(tmp_path / "refused.png"), full_page=True)
        assert errors == []
    finally:
        context.close()
    assert (
        not g.dom.isActive() and hashlib.sha256(g.disk_path("vda").read_bytes()).hexdigest() == disk
    )


def test_in_place_refused_while_running_then_forced(rig: Rig) -> None:
    g = rig.guest
    g.start()
    try:
        g.sh.check("echo after > /mnt/marker && sync")
        # the form's own checks: one line, 400, no job
        status, body = _refused(rig, what="vm", mode="in-place", disk_dir="/srv")
        assert status == 400 and "go with a restore as new" in body
        _failed_with(
            rig, _restore(rig, what="vm", mode="in-place"), "is running: shut it down first"
        )
        assert g.dom.isActive() and g.sh.check(MARKER) == "after"  # untouched

        job = _restore(rig, what="vm", mode="in-place", force="1", start="1")
        assert job["state"] == "succeeded", job
        assert any("in-place" in line["line"] for line in job["log"]), job["log"]
        _reconnect(g)  # the forced power-off ended it; the restore started it again
        assert g.sh.check(MARKER) == "before"
    finally:
        g.stop()


def _instants(rig: Rig) -> list[dict[str, Any]]:
    from strongroom.image.instant import recover

    return [s.to_dict() for s in _with_state(rig.state, recover.status)]


def _instant_page(rig: Rig) -> str:
    page: bytes = rig.opener.open(f"{rig.base}/instant?agent=kvm1", timeout=60).read()
    return page.decode()


def test_instant_as_new_then_finalized_from_the_browser(rig: Rig) -> None:
    name = f"{WEB}inst"
    folder = rig.guest.folder / "inst"
    folder.mkdir()
    status, body = _refused(rig, what="instant", mode="new", name=name, force="1")
    assert status == 400 and "instant recovery takes" in body  # --force goes with --in-place
    taken = _restore(rig, what="instant", mode="new", name=rig.guest.name, disk_dir=str(folder))
    _failed_with(rig, taken, f"a domain named {rig.guest.name!r} already exists")
    assert _instants(rig) == [] and list(folder.iterdir()) == []  # nothing made
    job = _restore(rig, what="instant", mode="new", name=name, disk_dir=str(folder))
    clone = Guest(rig.guest.conn, name, rig.guest.folder, rig.guest.image, [], False)
    try:
        assert job["state"] == "succeeded", job
        rows = _instants(rig)
        assert [(r["name"], r["export"], r["domain"]) for r in rows] == [
            (name, "running", "running")
        ]
        pid, sup = rows[0]["pid"], rows[0]["supervisor_pid"]
        listed = _instant_page(rig)  # `instant list` of the agent's host, in the browser
        assert f'<tr data-name="{name}">' in listed and f"running (pid {pid})" in listed
        assert f'aria-label="Finalize {name}"' in listed
        clone = _clone(rig, name)
        assert _nbd_backed(clone.dom) and clone.sh.check(MARKER) == "before"  # from the vault
        clone.sh.check("echo instant > /mnt/marker && sync")

        job = _restore(rig, what="instant-finalize", name=name)
        assert job["state"] == "succeeded", job
        assert _instants(rig) == [] and not (rig.state / name).exists()
        assert "None running." in _instant_page(rig)
        assert not pid_alive(pid) and not pid_alive(sup)  # the export and its supervisor
        assert not _nbd_backed(clone.dom) and not _nbd_backed(clone.dom, 2)
        assert [p.name for p in folder.iterdir()] == [f"{name}-vda.qcow2"]
        clone.stop()  # boots from its local disk alone
        clone.dom.create()
        clone.connect(f"{name}-console.sock")
        assert clone.sh.check(MARKER) == "instant"
    finally:
        clone.remove()


def test_instant_in_place_refused_while_running_forced_then_aborted(rig: Rig) -> None:
    g = rig.guest
    g.start()
    try:
        g.sh.check("echo after > /mnt/marker && sync")
        _failed_with(
            rig, _restore(rig, what="instant", mode="in-place"), "is running: shut it down first"
        )
        assert g.dom.isActive() and _instants(rig) == []
        xml = g.dom.XMLDesc(2)
        job = _restore(rig, what="instant", mode="in-place", force="1")
        assert job["state"] == "succeeded", job
        disk = hashlib.sha256(g.disk_path("vda").read_bytes()).hexdigest()  # powered off
        _reconnect(g)
        assert _nbd_backed(g.dom) and g.sh.check(MARKER) == "before"
        g.sh.check("echo never > /mnt/marker && sync")  # into the overlay

        job = _restore(rig, what="instant-abort", name=g.name)  # powers it off
        assert job["state"] == "succeeded", job
        assert _instants(rig) == [] and not g.dom.isActive()
        assert g.dom.XMLDesc(2) == xml  # its definition as it was
        assert not list(g.folder.glob("*.instant.qcow2"))
        assert hashlib.sha256(g.disk_path("vda").read_bytes()).hexdigest() == disk  # untouched
    finally:
        g.stop()
