from collections.abc import Callable
from typing import Any

def decode_body(
    body: bytes, entry_type: type, decode_xattrs: Callable[[bytes], Any], /
) -> dict[bytes, Any]: ...
