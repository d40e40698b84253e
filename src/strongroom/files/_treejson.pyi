from collections.abc import Callable
from typing import Any

def encode_items(
    nodes: list[Any],
    ref: dict[bytes, int],
    refs: list[bytes],
    slow: Callable[[Any, dict[bytes, int], list[bytes]], str],
    /,
) -> bytes: ...
