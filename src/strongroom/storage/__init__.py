"""Storage layer: where a vault's objects live (local folder, Azure Blob, S3) and wrappers.

:class:`ObjectStoreBackend` (obstore) loads on first use: local vaults never need it; nor
does a command need the in-memory backend (issue 19: each command pays for what it imports).
The fault-injecting wrapper the tests use lives with them (``tests/faults.py``).
"""

from typing import TYPE_CHECKING

from strongroom.lazyexports import lazy_exports
from strongroom.storage.backend import Backend, BackendCapabilities, ObjectInfo, capabilities_of
from strongroom.storage.cache import CachingBackend
from strongroom.storage.local import LocalBackend
from strongroom.storage.names import check_name
from strongroom.storage.retry import RetryingBackend
from strongroom.storage.url import default_cache_root, open_backend

if TYPE_CHECKING:
    from strongroom.storage.memory import MemoryBackend
    from strongroom.storage.objectstore import ObjectStoreBackend

__all__ = [
    "Backend",
    "BackendCapabilities",
    "CachingBackend",
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


_HOME = {
    "MemoryBackend": "memory",
    "ObjectStoreBackend": "objectstore",
}
__getattr__, __dir__ = lazy_exports(__name__, _HOME, __all__)
