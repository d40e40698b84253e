"""Storage layer: where a vault's objects live (local folder, Azure Blob, S3) and wrappers.

:class:`ObjectStoreBackend` (obstore) loads on first use: local vaults never need it; nor
does a command need the in-memory backend (issue 19: each command pays for what it imports),
nor a files worker process, which writes to a local vault, the URLs, retries and cache of
remote ones (``tests/files/test_worker_imports.py``).
The fault-injecting wrapper the tests use lives with them (``tests/faults.py``).
"""

from typing import TYPE_CHECKING

from strongroom.lazyexports import lazy_exports
from strongroom.storage.backend import Backend, BackendCapabilities, ObjectInfo, capabilities_of
from strongroom.storage.local import LocalBackend
from strongroom.storage.names import check_name

if TYPE_CHECKING:
    from strongroom.storage.cache import CachingBackend
    from strongroom.storage.cacheroot import default_cache_root
    from strongroom.storage.memory import MemoryBackend
    from strongroom.storage.objectstore import ObjectStoreBackend
    from strongroom.storage.retry import RetryingBackend
    from strongroom.storage.url import open_backend

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
    "CachingBackend": "cache",
    "MemoryBackend": "memory",
    "ObjectStoreBackend": "objectstore",
    "RetryingBackend": "retry",
    "default_cache_root": "cacheroot",
    "open_backend": "url",
}
__getattr__, __dir__ = lazy_exports(__name__, _HOME, __all__)
