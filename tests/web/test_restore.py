"""Restores from the browser, end to end: a real server, a real agent holding the passphrase,
files and disk points, and real headless Chromium (browse, download, restore to the agent)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import tarfile
import time
import urllib.error
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from strongroom.image.sample import SampleVM, make_sample_vm
from tests.control.conftest import Control, ok, wait_for
from tests.server.conftest import free_port, init_server
from tests.web.conftest import PASSWORDS, ROLES, Tab, api, user_add

MiB = 1 << 20


@dataclass
class Rig:
    control: Control
    data: Path
    files_point: str
    disk_point: str
    image: Path
    root: Path
    vm: SampleVM
    vm_point: str

    @property
    def url(self) -> str:
        return self.control.url


def _tree(root: Path) -> Path:
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "top.txt").write_text("top file\n")
    (root / "sub" / "a.bin").write_bytes(os.urandom(3 * 1024 * 1024 + 17))  # several chunks
    (root / "sub" / "b.txt").write_text("b" * 5000)
    (root / "sub" / "deeper" / "c.txt").write_text("deep\n")
    os.chmod(root / "sub" / "b.txt", 0o640)
    return root


def _disk_image(root: Path) -> Path:
    """A qcow2 image holding one ext4 filesystem with a few files."""
    content = root / "fs"
    (content / "etc").mkdir(parents=True)
    (content / "etc" / "hostname").write_text("guest01\n")
    (content / "big.bin").write_bytes(os.urandom(600_000))
    raw = root / "disk.raw"
    subprocess.run(["truncate", "-s", "16M", str(raw)], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-d", str(content), str(raw)], check=True)
    image = root / "disk.qcow2"
    subprocess.run(["qemu-img", "convert", "-O", "qcow2", str(raw), str(image)], check=True)
    return image


def _backup_now(c: Control, item: str) -> str:
    status, doc = api(c.url, c.admin, "POST", f"/v1/items/{item}/backup-now")
    assert status == 201, doc
    job = int(doc["job"])

    def done() -> Any:
        found = api(c.url, c.admin, "GET", f"/v1/jobs/{job}")[1]
        return found if found["state"] not in ("queued", "running") else None

    found = wait_for(f"backup of {item}", done, 90)
    assert found["state"] == "succeeded", found
    return str(found["point"])


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    root = tmp_path_factory.mktemp("restore")
    admin = init_server(root / "data")
    c = Control(root / "data", free_port(), admin, time.time())
    c.start()
    try:
        for name, role in ROLES.items():
            pw = root / f"{name}.pw"
            pw.write_text(PASSWORDS[name] + "\n")
            assert user_add(c.url, admin, name, role, pw).returncode == 0
        vault = f"{c.url}/main"
        ok(admin, "init", "--vault", vault, "--kdf-memory", "1", "--kdf-time", "1")
        c.register("web01", root / "web01")
        c.admin_json("policy", "create", "yearly", "--vault", "main", "--schedule", "yearly")
        data = _tree(root / "site")
        c.admin_json("protect", "files", "web01", str(data), "--name", "site", "--policy", "yearly")
        image = _disk_image(root)
        c.admin_json(
            "protect", "disk", "web01", str(image), "--name", "disk1", "--policy", "yearly"
        )
        # packs of a scoped token's source are what the item's agent can read
        made = c.admin_json("token", "create", "--role", "backup", "--source", "disk1")
        out = ok(
            made["token"],
            "backup",
            "disk",
            str(image),
            "--vault",
            vault,
            "--source",
            "disk1",
            "--json",
        )
        doc = json.loads(out)
        disk_point = str(doc.get("point") or doc.get("point_id"))
        vm = make_sample_vm(root / "vm", sizes=(48 * MiB, 32 * MiB))
        c.admin_json("protect", "vm", "web01", vm.name, "--name", vm.name, "--policy", "yearly")
        made = c.admin_json("token", "create", "--role", "backup", "--source", vm.name)
        out = ok(made["token"], "backup", "vm", "--xml", vm.xml, "--vault", vault, "--json")
        vm_point = str(json.loads(out)["point"])
        c.start_agent("web01", root / "web01")
        yield Rig(c, data, _backup_now(c, "site"), disk_point, image, root, vm, vm_point)
    finally:
        for machine in list(c.agents):
            c.stop_agent(machine)
        c.stop()


@pytest.fixture
def tab(browser: Any, rig: Rig, tmp_path: Path) -> Iterator[Tab]:
    context = browser.new_context(viewport={"width": 1280, "height": 800}, accept_downloads=True)
    page = context.new_page()
    made = Tab(page, rig.url, tmp_path / "screenshots")
    made.shots.mkdir()
    page.on("console", lambda m: made.errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda exc: made.errors.append(str(exc)))
    yield made
    context.close()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _browse(tab: Tab, rig: Rig, point: str, path: str, item: str = "site") -> None:
    tab.go(f"/ui/items/{item}/points/{point}/browse?path={path}")
    expect(tab.page.locator("h1")).to_have_text(f"Browse {item}")


def _download(tab: Tab, button: Any) -> bytes:
    with tab.page.expect_download() as info:
        button.click()
    return Path(info.value.path()).read_bytes()


def test_browse_like_a_file_manager_and_download_a_file_and_folders(tab: Tab, rig: Rig) -> None:
    tab.login("olga")
    tab.go("/ui/items")
    tab.page.locator("tr[data-item=site]").get_by_role("link", name="Points").click()
    tab.page.get_by_role("link", name=rig.files_point[:12]).click()
    expect(tab.page.locator("h1")).to_have_text("Browse site")
    _browse(tab, rig, rig.files_point, str(rig.data))
    rows = tab.page.locator("tbody tr")
    expect(rows).to_have_count(2)  # sub/ and top.txt
    tab.page.get_by_role("link", name="sub/").click()
    b_row = tab.page.locator("tr[data-name='b.txt']")
    expect(b_row).to_contain_text("4.9 KiB")
    expect(b_row).to_contain_text("-rw-r-----")  # the mode, as ls shows it
    for width, suffix in ((1280, ""), (390, "-phone")):
        tab.page.set_viewport_size({"width": width, "height": 800})
        assert tab.page.evaluate("document.documentElement.scrollWidth") <= width
        tab.shot("browse" + suffix)
    tab.page.set_viewport_size({"width": 1280, "height": 800})
    original = (rig.data / "sub" / "a.bin").read_bytes()
    got = _download(tab, tab.page.get_by_role("button", name="Download a.bin"))
    assert sha(got) == sha(original)
    # the folder as a zip and as a tar: every file's bytes match
    _browse(tab, rig, rig.files_point, str(rig.data))
    zipped = _download(tab, tab.page.get_by_role("button", name="Download sub as zip"))
    with zipfile.ZipFile(io.BytesIO(zipped)) as zf:
        assert zf.read("sub/a.bin") == original
        assert zf.read("sub/deeper/c.txt") == b"deep\n"
    tarred = _download(tab, tab.page.get_by_role("button", name="Download sub as tar"))
    with tarfile.open(fileobj=io.BytesIO(tarred)) as tf:
        member = tf.extractfile("sub/a.bin")
        assert member is not None and sha(member.read()) == sha(original)
        assert tf.getmember("sub/b.txt").mode == 0o640
    tab.go("/ui/items/site/points")
    for width, suffix in ((1280, ""), (390, "-phone")):
        tab.page.set_viewport_size({"width": width, "height": 800})
        assert tab.page.evaluate("document.documentElement.scrollWidth") <= width
        tab.shot("points" + suffix)
    assert tab.errors == []


def test_restore_a_folder_to_the_agent(tab: Tab, rig: Rig) -> None:
    tab.login("olga")
    _browse(tab, rig, rig.files_point, f"{rig.data}/sub")
    target = rig.root / "restored-here"
    tab.page.get_by_label("Target folder on that agent").fill(str(target))
    tab.page.get_by_label("When a file exists").select_option("keep-both")
    tab.shot("restore-form")
    tab.page.get_by_role("button", name="Restore", exact=True).click()
    tab.page.wait_for_url(f"{rig.url}/ui/jobs/*")
    expect(tab.page.locator(".facts")).to_contain_text("succeeded", timeout=60_000)
    expect(tab.page.locator(".pct")).to_have_text("100 %")
    tab.shot("restore-job")
    job = api(rig.url, rig.control.admin, "GET", "/v1/jobs/" + tab.page.url.rsplit("/", 1)[1])[1]
    assert (job["kind"], job["files"], job["agent"]) == ("restore", 3, "web01")
    assert job["payload"]["paths"] == [f"{rig.data}/sub"]
    assert job["payload"]["on_conflict"] == "keep-both"
    restored = target / str(rig.data / "sub").lstrip("/")
    for rel in ("a.bin", "b.txt", "deeper/c.txt"):
        assert sha((restored / rel).read_bytes()) == sha((rig.data / "sub" / rel).read_bytes())
    assert not (target / str(rig.data).lstrip("/") / "top.txt").exists()  # only the folder
    assert tab.errors == []


def test_image_point_disks_volumes_files_and_restore_disk(tab: Tab, rig: Rig) -> None:
    tab.login("alice")
    _browse(tab, rig, rig.disk_point, "/", item="disk1")
    tab.page.locator("tbody tr a").first.click()  # the disk
    expect(tab.page.locator("tbody")).to_contain_text("ext4")  # its volume's filesystem
    tab.shot("image-volumes")
    tab.page.locator("tbody tr a").first.click()  # the volume
    tab.page.get_by_role("link", name="etc/").click()
    got = _download(tab, tab.page.get_by_role("button", name="Download hostname"))
    assert got == b"guest01\n"
    tab.page.get_by_role("link", name="Restore the VM or a disk of this point…").click()
    for width, suffix in ((390, "-phone"), (1280, "")):
        tab.page.set_viewport_size({"width": width, "height": 800})
        assert tab.page.evaluate("document.documentElement.scrollWidth") <= width
        tab.shot("restore-image" + suffix)
    to = rig.root / "restored-disk.qcow2"
    form = tab.page.locator("#restore-disk")
    form.get_by_label("To (image file or block device)").fill(str(to))
    form.get_by_role("button", name="Restore a disk").click()
    tab.page.wait_for_url(f"{rig.url}/ui/jobs/*")
    expect(tab.page.locator(".facts")).to_contain_text("succeeded", timeout=60_000)
    done = subprocess.run(
        ["qemu-img", "compare", str(rig.image), str(to)],
        check=False,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert tab.errors == []


def _session(rig: Rig, user: str) -> tuple[Any, str]:
    """A logged-in HTTP session (cookie jar) and its CSRF token, without the browser."""
    import re
    import urllib.request
    from http.cookiejar import CookieJar
    from urllib.parse import urlencode

    jar = CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    page = opener.open(rig.url + "/ui/login").read().decode()
    nonce = re.search(r'name="csrf" value="([^"]+)"', page)
    assert nonce is not None
    body = urlencode({"user": user, "password": PASSWORDS[user], "csrf": nonce.group(1)})
    home = opener.open(rig.url + "/ui/login", body.encode()).read().decode()
    csrf = re.search(r'name="csrf" value="([^"]+)"', home)
    assert csrf is not None
    return opener, csrf.group(1)


def _post(opener: Any, url: str, fields: dict[str, str]) -> tuple[int, bytes]:
    import urllib.error
    from urllib.parse import urlencode

    try:
        with opener.open(url, urlencode(fields).encode(), timeout=60) as reply:
            return int(reply.status), bytes(reply.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), bytes(exc.read())


def test_roles_and_csrf(rig: Rig) -> None:
    base = f"{rig.url}/ui/items/site/points/{rig.files_point}"
    viewer, vcsrf = _session(rig, "vic")
    page = viewer.open(f"{base}/browse?path={rig.data}/sub", timeout=60).read().decode()
    assert "a.bin" in page and "Download" not in page and "Restore files" not in page
    fetch = {"path": f"{rig.data}/sub/b.txt", "format": "file", "csrf": vcsrf}
    assert _post(viewer, f"{base}/download", fetch)[0] == 403
    restore = {"what": "files", "paths": "/", "target": "/tmp/x", "csrf": vcsrf}
    assert _post(viewer, f"{base}/restore", restore)[0] == 403
    operator, csrf = _session(rig, "olga")
    status, body = _post(operator, f"{base}/download", {**fetch, "csrf": "wrong"})
    assert status == 403 and b"CSRF" in body
    status, body = _post(operator, f"{base}/download", {**fetch, "csrf": csrf})
    assert status == 200 and body == (rig.data / "sub" / "b.txt").read_bytes()
    # bad input: one clear line, no job
    status, body = _post(operator, f"{base}/download", {**fetch, "csrf": csrf, "path": "/nope"})
    assert status == 502 and b"not in recovery point" in body
    status, body = _post(operator, f"{base}/restore", {"what": "files", "csrf": csrf, "target": ""})
    assert status == 400 and b"target folder" in body
    status, body = _post(operator, f"{base}/restore", {"what": "vm", "csrf": csrf})
    assert status == 400 and b"needs a name" in body


def test_vm_forms_create_the_restore_job_for_the_host_agent(rig: Rig) -> None:
    """The VM forms' jobs carry the CLI's options; the agent runs them (here refused: the
    point is a disk point, not a VM's -- a libvirt guest is too slow for this suite)."""
    operator, csrf = _session(rig, "olga")
    base = f"{rig.url}/ui/items/disk1/points/{rig.disk_point}"
    fields = {"what": "vm", "mode": "new", "name": "copy01", "disk_dir": "/srv/vms", "start": "1"}
    status, _ = _post(operator, f"{base}/restore", {**fields, "format": "qcow2", "csrf": csrf})
    assert status == 200  # followed the redirect to the job's page
    jobs = api(rig.url, rig.control.admin, "GET", "/v1/jobs?item=disk1")[1]["jobs"]
    job = next(j for j in jobs if j["kind"] == "restore" and j["payload"]["what"] == "vm")
    assert job["payload"] == {
        "what": "vm",
        "point": rig.disk_point,
        "mode": "new",
        "name": "copy01",
        "disk_dir": "/srv/vms",
        "format": "qcow2",
        "start": True,
        "agent": "web01",
    }

    def settled() -> Any:
        found = api(rig.url, rig.control.admin, "GET", f"/v1/jobs/{job['id']}")[1]
        return found if found["state"] not in ("queued", "running") else None

    found = wait_for("the VM restore job", settled, 60)
    assert found["state"] == "failed" and "needs a VM point" in found["reason"]
    item = api(rig.url, rig.control.admin, "GET", "/v1/items")[1]["items"]
    assert next(i for i in item if i["name"] == "disk1")["alerts"] == []  # no backup alert


def test_restore_a_vm_as_new_through_the_agent(tab: Tab, rig: Rig) -> None:
    """A VM point taken from its XML files goes back to files (no libvirt), as ``restore vm
    POINT --as-new NAME --disk-dir DIR`` does it, run by the agent."""
    tab.login("olga")
    tab.go(f"/ui/items/{rig.vm.name}/points/{rig.vm_point}/restore-image")
    form = tab.page.locator("#restore-vm")
    form.get_by_label("New VM's name (as new)").fill("copy01")
    form.get_by_label("Folder for its disks and XML (optional)").fill(str(rig.root / "vmcopy"))
    form.get_by_role("button", name="Restore the VM").click()
    tab.page.wait_for_url(f"{rig.url}/ui/jobs/*")
    expect(tab.page.locator(".facts")).to_contain_text("succeeded", timeout=90_000)
    xml = (rig.root / "vmcopy" / "copy01.xml").read_text()
    assert "<name>copy01</name>" in xml
    for disk in rig.vm.disks:
        copies = list((rig.root / "vmcopy").glob(f"copy01-{disk.target}.*"))
        assert len(copies) == 1, copies
        done = subprocess.run(
            ["qemu-img", "compare", disk.path, str(copies[0])],
            check=False,
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stdout + done.stderr
    assert tab.errors == []


def test_instant_and_in_place_forms_refuse_what_the_cli_refuses(rig: Rig) -> None:
    """One line and no job for the combinations ``restore vm`` refuses; finishing an instant
    recovery the agent does not run fails its job with one line."""
    operator, csrf = _session(rig, "olga")
    base = f"{rig.url}/ui/items/{rig.vm.name}/points/{rig.vm_point}"
    refusals = [
        ({"what": "vm", "mode": "in-place", "format": "raw"}, b"go with a restore as new"),
        ({"what": "vm", "mode": "sideways", "name": "x"}, b"mode: new or in-place"),
        ({"what": "instant", "mode": "new"}, b"instantly as new needs a name"),
        ({"what": "instant", "mode": "new", "name": "x", "force": "1"}, b"not format"),
        ({"what": "instant", "mode": "in-place", "start": "1"}, b"not format, verify or start"),
        ({"what": "instant-finalize", "name": " "}, b"which instant recovery? give its VM"),
    ]
    jobs_url = f"/v1/jobs?item={rig.vm.name}"
    before = len(api(rig.url, rig.control.admin, "GET", jobs_url)[1]["jobs"])
    for fields, words in refusals:
        status, body = _post(operator, f"{base}/restore", {**fields, "csrf": csrf})
        assert status == 400 and words in body, (fields, body)
    assert len(api(rig.url, rig.control.admin, "GET", jobs_url)[1]["jobs"]) == before
    status, _ = _post(
        operator, f"{base}/restore", {"what": "instant-abort", "name": "nope", "csrf": csrf}
    )
    assert status == 200
    jobs = api(rig.url, rig.control.admin, "GET", jobs_url)[1]["jobs"]
    job = next(j for j in jobs if j["payload"]["what"] == "instant-abort")
    assert job["payload"] == {
        "what": "instant-abort",
        "point": rig.vm_point,
        "name": "nope",
        "agent": "web01",
    }

    def settled() -> Any:
        found = api(rig.url, rig.control.admin, "GET", f"/v1/jobs/{job['id']}")[1]
        return found if found["state"] not in ("queued", "running") else None

    found = wait_for("the abort job", settled, 60)
    assert found["state"] == "failed" and "no instant recovery named 'nope'" in found["reason"]
    page = operator.open(f"{rig.url}/ui/jobs/{job['id']}", timeout=30).read()
    assert b"no instant recovery named" in page  # the browser sees the one line
    fields = {"what": "instant-finalize", "name": "../../etc", "csrf": csrf}
    assert _post(operator, f"{base}/restore", fields)[0] == 200
    jobs = api(rig.url, rig.control.admin, "GET", jobs_url)[1]["jobs"]
    job = next(j for j in jobs if j["payload"]["what"] == "instant-finalize")
    found = wait_for("the finalize job", settled, 60)
    assert found["state"] == "failed" and "invalid VM name" in found["reason"]  # not a path
    listed = operator.open(f"{base}/instant?agent=web01", timeout=30).read()
    assert b"Instant recoveries on web01" in listed and b"None running." in listed
    viewer, _ = _session(rig, "vic")
    with pytest.raises(urllib.error.HTTPError) as refused:
        viewer.open(f"{base}/instant?agent=web01", timeout=30)
    assert refused.value.code == 403
