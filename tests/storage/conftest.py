"""Fixtures for the storage tests: one fixture per backend kind (emulators: tests/emulators.py).

Azurite and moto_server are started once per session, only when a test needs them, and a
missing emulator FAILS the tests that need it (never skips them): the setup script installs both.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from strongroom.storage import (
    Backend,
    CachingBackend,
    LocalBackend,
    MemoryBackend,
    ObjectStoreBackend,
    RetryingBackend,
)
from strongroom.storage.azure import open_azure
from strongroom.storage.s3 import open_s3
from tests.emulators import Emulator
from tests.faults import FaultRule, FaultyBackend


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
