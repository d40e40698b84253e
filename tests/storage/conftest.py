"""Fixtures for the storage tests: real emulator processes and one fixture per backend kind.

Azurite and moto_server are started once per session, only when a test needs them, and a
missing emulator FAILS the tests that need it (never skips them): the setup script installs both.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from strongroom.storage import (
    Backend,
    CachingBackend,
    FaultRule,
    FaultyBackend,
    LocalBackend,
    MemoryBackend,
    ObjectStoreBackend,
    RetryingBackend,
)
from strongroom.storage.azure import AZURITE_ACCOUNT, AZURITE_KEY, open_azure
from strongroom.storage.s3 import open_s3

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


def unique_prefix() -> str:
    """Each test gets a fresh folder in the shared emulator bucket, so no cleanup is needed."""
    return f"t-{uuid.uuid4().hex[:12]}"


def azure_backend(emulator: Emulator) -> ObjectStoreBackend:
    return open_azure(f"azure://{emulator.bucket}/{unique_prefix()}", env=emulator.env)


def s3_backend(emulator: Emulator) -> ObjectStoreBackend:
    return open_s3(f"s3://{emulator.bucket}/{unique_prefix()}", env=emulator.env)


def flaky(inner: Backend, seed: int = 7) -> RetryingBackend:
    """Retries over a backend that fails 30% of all calls transiently: results must not show it."""
    faulty = FaultyBackend(inner, [FaultRule(op="*", kind="transient", probability=0.3)], seed=seed)
    return RetryingBackend(faulty, attempts=30, base_delay=0.0, sleep=lambda _: None, seed=seed)


BACKEND_KINDS = [
    "local",
    "memory",
    "obstore-memory",
    "caching",
    "retrying",
    pytest.param("azure", marks=pytest.mark.azurite),
    pytest.param("s3", marks=pytest.mark.s3),
]


@pytest.fixture(params=BACKEND_KINDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """Every backend kind behind the same protocol, empty at the start of each test."""
    from obstore.store import MemoryStore

    kind: str = request.param
    makers: dict[str, Callable[[], Backend]] = {
        "local": lambda: LocalBackend(tmp_path / "vault"),
        "memory": MemoryBackend,
        "obstore-memory": lambda: ObjectStoreBackend(MemoryStore(), "some/prefix", "memory"),
        "caching": lambda: CachingBackend(LocalBackend(tmp_path / "remote"), tmp_path / "cache"),
        "retrying": lambda: flaky(MemoryBackend()),
        "azure": lambda: azure_backend(request.getfixturevalue("azurite")),
        "s3": lambda: s3_backend(request.getfixturevalue("moto")),
    }
    made = makers[kind]()
    yield made
    made.close()
