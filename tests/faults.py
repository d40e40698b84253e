"""A wrapping backend that injects faults by rule, for tests of the layers above storage.

Rules are matched in the order they were added; the first rule that fires decides the fault of a
call.  Randomness (which calls fire under a probability, where a read is cut, which bit flips)
comes from one RNG seeded at construction, so a failing test can be replayed exactly.

Example::

    faulty = FaultyBackend(MemoryBackend(), seed=1)
    faulty.add_rule(FaultRule(op="get", kind="bitflip", prefix="data/", times=1))
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Literal

from strongroom.errors import (
    ObjectNotFound,
    PermanentStorageError,
    StorageError,
    TransientStorageError,
)
from strongroom.storage.backend import Backend, BackendCapabilities, ObjectInfo, capabilities_of

FaultOp = Literal["get", "get_range", "put", "delete", "list", "stat", "*"]
FaultKind = Literal["transient", "permanent", "not_found", "short_read", "bitflip", "lost_write"]

_READ_OPS = frozenset({"get", "get_range", "*"})
_ERROR_KINDS: dict[str, type[StorageError]] = {
    "transient": TransientStorageError,
    "permanent": PermanentStorageError,
    "not_found": ObjectNotFound,
}


@dataclass
class FaultRule:
    """Inject ``kind`` into calls of ``op`` ("*" for any) on names starting with ``prefix``.

    The first ``after`` matching calls pass untouched; then up to ``times`` calls (``None``:
    without end) fire, each with the given ``probability``.  ``short_read`` and ``bitflip``
    apply to reads (``get``, ``get_range``), ``lost_write`` to ``put``; the error kinds apply to
    any operation.  For ``list`` the prefix matches when either prefix contains the other.
    """

    op: FaultOp
    kind: FaultKind
    prefix: str = ""
    times: int | None = None
    after: int = 0
    probability: float = 1.0
    matched: int = field(default=0, init=False)
    """Calls that matched op and prefix so far."""
    fired: int = field(default=0, init=False)
    """Faults this rule injected so far."""

    def __post_init__(self) -> None:
        if self.kind in ("short_read", "bitflip") and self.op not in _READ_OPS:
            raise ValueError(f"fault {self.kind!r} applies to reads, not to {self.op!r}")
        if self.kind == "lost_write" and self.op not in ("put", "*"):
            raise ValueError(f"fault 'lost_write' applies to put, not to {self.op!r}")
        if not 0.0 <= self.probability <= 1.0:
            raise ValueError(f"probability {self.probability} is not within [0, 1]")

    def applies_to(self, op: str, name: str) -> bool:
        """Whether a call of ``op`` on ``name`` is one this rule is about."""
        if self.op not in ("*", op):
            return False
        if self.kind in ("short_read", "bitflip") and op not in _READ_OPS:
            return False
        if self.kind == "lost_write" and op != "put":
            return False
        if op == "list":
            return name.startswith(self.prefix) or self.prefix.startswith(name)
        return name.startswith(self.prefix)


@dataclass(frozen=True, slots=True)
class InjectedFault:
    """A record of one injected fault."""

    op: str
    name: str
    kind: FaultKind


class FaultyBackend:
    """Wraps ``inner`` and injects faults according to its rules; thread-safe.

    ``calls`` counts every call by operation (whether or not a fault fired), ``injected`` counts
    faults by kind and ``events`` keeps them in order.
    """

    def __init__(self, inner: Backend, rules: Iterable[FaultRule] = (), *, seed: int = 0) -> None:
        self.inner = inner
        self._rules: list[FaultRule] = list(rules)
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self.calls: Counter[str] = Counter()
        self.injected: Counter[str] = Counter()
        self.events: list[InjectedFault] = []

    def add_rule(self, rule: FaultRule) -> FaultRule:
        """Add a rule (matched after the existing ones) and return it for later inspection."""
        with self._lock:
            self._rules.append(rule)
        return rule

    def clear_rules(self) -> None:
        """Remove every rule: later calls pass through untouched."""
        with self._lock:
            self._rules.clear()

    def reset_counters(self) -> None:
        """Forget calls and injected faults counted so far."""
        with self._lock:
            self.calls.clear()
            self.injected.clear()
            self.events.clear()

    def _fire(self, op: str, name: str) -> FaultRule | None:
        """Count the call and return the rule that fires for it, if any."""
        with self._lock:
            self.calls[op] += 1
            for rule in self._rules:
                if not rule.applies_to(op, name):
                    continue
                rule.matched += 1
                if rule.matched <= rule.after:
                    continue
                if rule.times is not None and rule.fired >= rule.times:
                    continue
                if rule.probability < 1.0 and self._rng.random() >= rule.probability:
                    continue
                rule.fired += 1
                self.injected[rule.kind] += 1
                self.events.append(InjectedFault(op, name, rule.kind))
                return rule
            return None

    def _check(self, op: str, name: str) -> FaultRule | None:
        """Raise an injected error, or return the rule whose fault the caller must apply."""
        rule = self._fire(op, name)
        if rule is not None and rule.kind in _ERROR_KINDS:
            error = _ERROR_KINDS[rule.kind]
            raise error(f"injected {rule.kind} fault on {op} {name}", name=name)
        return rule

    def _damage(self, rule: FaultRule | None, data: bytes) -> bytes:
        """Apply a read fault: cut the data short or flip one bit (no-op on empty data)."""
        if rule is None or not data:
            return data
        with self._lock:
            if rule.kind == "short_read":
                return data[: self._rng.randrange(len(data))]
            index = self._rng.randrange(len(data))
            bit = 1 << self._rng.randrange(8)
        damaged = bytearray(data)
        damaged[index] ^= bit
        return bytes(damaged)

    def get(self, name: str) -> bytes:
        rule = self._check("get", name)
        return self._damage(rule, self.inner.get(name))

    def get_range(self, name: str, offset: int, length: int) -> bytes:
        rule = self._check("get_range", name)
        return self._damage(rule, self.inner.get_range(name, offset, length))

    def put(self, name: str, data: bytes | bytearray | memoryview) -> None:
        rule = self._check("put", name)
        if rule is not None and rule.kind == "lost_write":
            return  # report success, store nothing
        self.inner.put(name, data)

    def delete(self, name: str) -> None:
        self._check("delete", name)
        self.inner.delete(name)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        self._check("list", prefix)
        return self.inner.list(prefix)

    def stat(self, name: str) -> ObjectInfo:
        self._check("stat", name)
        return self.inner.stat(name)

    @property
    def capabilities(self) -> BackendCapabilities:
        return capabilities_of(self.inner)

    def describe(self) -> str:
        return self.inner.describe()

    def close(self) -> None:
        self.inner.close()
