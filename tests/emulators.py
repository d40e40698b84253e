"""Real emulator processes for the remote backends: Azurite (Azure Blob) and moto_server (S3).

Started once per session, only when a test needs them. A missing emulator FAILS the tests that
need it (never skips them): ``scripts/setup.sh`` installs both.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from strongroom.storage.azure import AZURITE_ACCOUNT, AZURITE_KEY

SETUP_HINT = "run the project's setup script, which installs the test emulators"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_for_port(proc: subprocess.Popen[bytes], port: int, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"emulator exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    stop(proc)
    pytest.fail(f"emulator did not listen on port {port} within {timeout}s: {log.read_text()}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def start_emulator(command: list[str], port: int, log: Path) -> subprocess.Popen[bytes]:
    exe = shutil.which(command[0])
    if exe is None:
        pytest.fail(f"{command[0]} is not on PATH: {SETUP_HINT}")
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [exe, *command[1:]], stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
    wait_for_port(proc, port, log, timeout=60)
    return proc


@dataclass(frozen=True)
class Emulator:
    """A running emulator: the environment that points strongroom at it, and its bucket."""

    env: dict[str, str]
    bucket: str


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    from azure.storage.blob import BlobServiceClient

    port = free_port()
    work = tmp_path_factory.mktemp("azurite")
    command = [
        "azurite-blob",
        *("--blobHost", "127.0.0.1", "--blobPort", str(port), "--location", str(work)),
        *("--skipApiVersionCheck", "--loose", "--silent", "--disableTelemetry"),
    ]
    proc = start_emulator(command, port, work / "azurite.log")
    endpoint = f"http://127.0.0.1:{port}/{AZURITE_ACCOUNT}"
    try:
        # obstore cannot create containers; the official SDK does it here, in the test only.
        connection = (
            f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};"
            f"AccountKey={AZURITE_KEY};BlobEndpoint={endpoint};"
        )
        BlobServiceClient.from_connection_string(connection).create_container("vault")
        env = {
            "AZURE_STORAGE_ACCOUNT": AZURITE_ACCOUNT,
            "AZURE_STORAGE_KEY": AZURITE_KEY,
            "AZURE_STORAGE_ENDPOINT": endpoint,
        }
        yield Emulator(env, "vault")
    finally:
        stop(proc)


@pytest.fixture(scope="session")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    import boto3  # type: ignore[import-untyped]

    port = free_port()
    work = tmp_path_factory.mktemp("moto")
    proc = start_emulator(["moto_server", "-H", "127.0.0.1", "-p", str(port)], port, work / "log")
    endpoint = f"http://127.0.0.1:{port}"
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_ENDPOINT_URL": endpoint,
    }
    try:
        client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        client.create_bucket(Bucket="vault")
        yield Emulator(env, "vault")
    finally:
        stop(proc)
