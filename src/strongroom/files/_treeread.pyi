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
