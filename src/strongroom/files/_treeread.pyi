from collections.abc import Callable, Sequence
from typing import Any

def decode_items(
    objects: list[Any],
    refs: list[bytes],
    same: dict[object, Any],
    node_type: type,
    kinds: Sequence[str],
    slow: Callable[[Any, list[bytes], dict[object, Any]], Any],
    /,
) -> list[Any]: ...
def decode_body(
    body: bytes,
    head: bytes,
    refs: list[bytes],
    same: dict[object, Any],
    node_type: type,
    kinds: tuple[str, ...],
    slow: Callable[[bytes, list[bytes], dict[object, Any]], Any],
    /,
) -> list[Any] | None: ...
