"""Storage layer: where a vault's objects live (local folder, Azure Blob, S3) and wrappers.

:class:`ObjectStoreBackend` (obstore) loads on first use: local vaults never need it.
"""

from typing import TYPE_CHECKING, Any

from strongroom.storage.backend import Backend, BackendCapabilities, ObjectInfo, capabilities_of
from strongroom.storage.cache import CachingBackend
from strongroom.storage.faults import FaultKind, FaultOp, FaultRule, FaultyBackend, InjectedFault
from strongroom.storage.local import LocalBackend
from strongroom.storage.memory import MemoryBackend
from strongroom.storage.names import check_name
from strongroom.storage.retry import RetryingBackend
from strongroom.storage.url import default_cache_root, open_backend

if TYPE_CHECKING:
    from strongroom.storage.objectstore import ObjectStoreBackend

__all__ = [
    "Backend",
    "BackendCapabilities",
    "CachingBackend",
    "FaultKind",
    "FaultOp",
    "FaultRule",
    "FaultyBackend",
    "InjectedFault",
    "LocalBackend",
    "MemoryBackend",
    "ObjectInfo",
    "ObjectStoreBackend",
    "RetryingBackend",
    "capabilities_of",
    "check_name",
    "default_cache_root",
    "open_backend",
]


def __getattr__(name: str) -> Any:
    if name == "ObjectStoreBackend":
        from strongroom.storage.objectstore import ObjectStoreBackend

        return ObjectStoreBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
