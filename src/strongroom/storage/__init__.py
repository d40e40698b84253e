"""Storage layer: where a vault's objects live (local folder, Azure Blob, S3) and wrappers."""

from strongroom.storage.backend import Backend, ObjectInfo
from strongroom.storage.cache import CachingBackend
from strongroom.storage.faults import FaultKind, FaultOp, FaultRule, FaultyBackend, InjectedFault
from strongroom.storage.local import LocalBackend
from strongroom.storage.memory import MemoryBackend
from strongroom.storage.names import check_name
from strongroom.storage.objectstore import ObjectStoreBackend
from strongroom.storage.retry import RetryingBackend
from strongroom.storage.url import default_cache_root, open_backend

__all__ = [
    "Backend",
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
    "check_name",
    "default_cache_root",
    "open_backend",
]
