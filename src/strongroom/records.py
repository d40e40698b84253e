"""``dataclass``: :func:`dataclasses.dataclass` built in a quarter of the time (start-up).

Python 3.11's :func:`dataclasses.dataclass` compiles every generated method apart
(``__init__``, ``__repr__``, ``__eq__``; ``__setattr__``, ``__delattr__`` and ``__hash__``
when frozen), about 0.15 ms each: 0.45-0.8 ms a class.  The 45 classes a files backup loads
cost 36-42 ms of its start-up and 25 ms of each worker process's, a tenth of a backup of
/etc (docs/benchmarks.md, "Session 27").  :func:`dataclass`
compiles only ``__init__`` (it runs per instance, so it is written out field by field as
dataclasses writes it) and makes the other methods closures over the field names: 0.2 ms a
class.

The result is a dataclass to :mod:`dataclasses` (``fields``, ``replace``, ``asdict``,
``is_dataclass`` work): it carries ``__dataclass_fields__`` made of ``dataclasses.Field``
objects marked as plain fields, the one private name used here (``_FIELD``), which
``tests/test_records.py`` pins together with the behaviour, method by method, against
:func:`dataclasses.dataclass` on Hypothesis-drawn classes.

What strongroom's records use, and nothing more: fields with a default or
``field(default=, default_factory=, repr=, compare=)``, ``__post_init__``, ``ClassVar``
annotations (skipped), inheritance from another record, and ``frozen``, ``slots``, ``eq``.
Anything else (``init=False``, ``InitVar``, ``kw_only``, ``order``) is a :class:`TypeError`
at import: use :func:`dataclasses.dataclass` for it.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from dataclasses import MISSING, Field, FrozenInstanceError, field
from operator import attrgetter
from types import SimpleNamespace
from typing import Any, TypeVar, dataclass_transform, overload

__all__ = ["dataclass"]

_T = TypeVar("_T")

_PLAIN = dataclasses._FIELD  # type: ignore[attr-defined]  # see the module docstring


class _Factory:
    """The default of a ``default_factory`` argument in ``__init__`` (as in dataclasses)."""

    def __repr__(self) -> str:
        return "<factory>"


_FACTORY = _Factory()


@overload
def dataclass(cls: type[_T], /) -> type[_T]: ...


@overload
def dataclass(
    *, frozen: bool = False, slots: bool = False, eq: bool = True
) -> Callable[[type[_T]], type[_T]]: ...


@dataclass_transform(field_specifiers=(field, Field))
def dataclass(
    cls: type[_T] | None = None, /, *, frozen: bool = False, slots: bool = False, eq: bool = True
) -> type[_T] | Callable[[type[_T]], type[_T]]:
    """``@dataclass`` or ``@dataclass(frozen=True, slots=True)``, as with :mod:`dataclasses`."""

    def wrap(c: type[_T]) -> type[_T]:
        return _build(c, frozen=frozen, slots=slots, eq=eq)

    return wrap if cls is None else wrap(cls)


def _build(cls: type[_T], *, frozen: bool, slots: bool, eq: bool) -> type[_T]:
    inherited = _inherited(cls, frozen)
    own = _own_fields(cls)
    fields = {**inherited, **own}
    _check_order(cls, fields)
    if slots:
        cls = _slotted(cls, own)
    else:
        for f in own.values():  # as dataclasses: the default stays a class attribute
            if isinstance(cls.__dict__.get(f.name), Field):
                if f.default is MISSING:
                    delattr(cls, f.name)
                else:
                    setattr(cls, f.name, f.default)
    _add_methods(cls, list(fields.values()), frozen=frozen, slots=slots, eq=eq)
    # what dataclasses reads of a base class's parameters (a stdlib dataclass may inherit)
    params = SimpleNamespace(
        init=True, repr=True, eq=eq, order=False, unsafe_hash=False, frozen=frozen
    )
    for name, value in (
        ("__dataclass_params__", params),
        ("__dataclass_fields__", fields),
        ("__match_args__", tuple(fields)),
    ):
        type.__setattr__(cls, name, value)  # attributes the class's type does not declare
    return cls


def _inherited(cls: type, frozen: bool) -> dict[str, Field[Any]]:
    fields: dict[str, Field[Any]] = {}
    for base in reversed(cls.__mro__[1:]):
        found = base.__dict__.get("__dataclass_fields__")
        if found is None:
            continue
        if base.__dict__["__dataclass_params__"].frozen != frozen:
            raise TypeError(f"{cls.__qualname__}: frozen and not frozen records mixed")
        fields.update(found)
    return fields


def _own_fields(cls: type) -> dict[str, Field[Any]]:
    fields: dict[str, Field[Any]] = {}
    for name, hint in inspect.get_annotations(cls).items():
        text = hint if isinstance(hint, str) else getattr(hint, "__name__", "")
        if text.startswith(("ClassVar", "typing.ClassVar")):
            continue
        if text.startswith(("InitVar", "KW_ONLY", "dataclasses.")):
            raise TypeError(f"{cls.__qualname__}.{name}: not supported by @dataclass")
        value = cls.__dict__.get(name, MISSING)
        f: Field[Any] = value if isinstance(value, Field) else field(default=value)
        if not f.init or f.kw_only is True or f.hash is not None:
            raise TypeError(f"{cls.__qualname__}.{name}: not supported by @dataclass")
        if f.default is not MISSING and type(f.default).__hash__ is None:
            raise ValueError(
                f"mutable default {type(f.default)} for field {name} is not allowed: "
                "use default_factory"
            )
        f.name, f.type = name, hint
        f._field_type = _PLAIN  # type: ignore[attr-defined]
        fields[name] = f
    return fields


def _check_order(cls: type, fields: dict[str, Field[Any]]) -> None:
    seen_default = False
    for f in fields.values():
        has = f.default is not MISSING or f.default_factory is not MISSING
        if seen_default and not has:
            raise TypeError(f"non-default argument {f.name!r} follows default argument")
        seen_default = seen_default or has


def _slotted(cls: type[_T], own: dict[str, Field[Any]]) -> type[_T]:
    """The class again with ``__slots__`` (a class's slots are fixed when it is made)."""
    body = dict(cls.__dict__)
    body["__slots__"] = tuple(own)
    for name in (*own, "__dict__", "__weakref__"):
        body.pop(name, None)
    meta: Any = type(cls)
    made: type[_T] = meta(cls.__name__, cls.__bases__, body)
    made.__qualname__ = cls.__qualname__
    return made


_RESERVED = frozenset({"self"})


def _add_methods(
    cls: type, fields: list[Field[Any]], *, frozen: bool, slots: bool, eq: bool
) -> None:
    """Give ``cls`` the methods it does not define itself.  Only ``__init__`` is compiled
    (it runs once per instance, so it is written out field by field, as dataclasses does);
    the others are shared closures over the field names, with :func:`operator.attrgetter`
    doing the per-field work in C."""
    names = tuple(f.name for f in fields)
    methods: dict[str, Callable[..., Any] | None] = {
        "__init__": _init(cls, fields, frozen),
        "__repr__": _repr([f.name for f in fields if f.repr]),
    }
    compared = [f.name for f in fields if f.compare]
    if eq:
        methods["__eq__"] = _eq(compared)
        methods.update(_hash(cls, compared, frozen))
    if frozen:
        methods.update(_frozen(cls, names))
        if slots:
            methods.update(_state(names))
    for name, method in methods.items():
        if name in cls.__dict__ and name != "__hash__":
            continue
        if method is not None:
            method.__name__, method.__qualname__ = name, f"{cls.__qualname__}.{name}"
        setattr(cls, name, method)


def _init(cls: type, fields: list[Field[Any]], frozen: bool) -> Callable[..., None]:
    if _RESERVED.intersection(f.name for f in fields) or any(
        f.name.startswith("_r_") for f in fields
    ):
        raise TypeError(f"{cls.__qualname__}: a field name @dataclass cannot use")
    ns: dict[str, Any] = {"_r_factory": _FACTORY, "_r_set": object.__setattr__}
    args, body = [], []
    for f in fields:
        n = f.name
        value = n
        if f.default_factory is not MISSING:
            ns[f"_r_f_{n}"] = f.default_factory
            args.append(f"{n}=_r_factory")
            value = f"_r_f_{n}() if {n} is _r_factory else {n}"
        elif f.default is not MISSING:
            ns[f"_r_d_{n}"] = f.default
            args.append(f"{n}=_r_d_{n}")
        else:
            args.append(n)
        body.append(f"_r_set(self, {n!r}, {value})" if frozen else f"self.{n} = {value}")
    if hasattr(cls, "__post_init__"):
        body.append("self.__post_init__()")
    lines = "\n    ".join(body or ["pass"])
    exec(f"def __init__(self, {', '.join(args)}):\n    {lines}", ns)
    init: Callable[..., None] = ns["__init__"]
    return init


def _repr(shown: list[str]) -> Callable[[Any], str]:
    def repr_(self: Any) -> str:
        inner = ", ".join(f"{n}={getattr(self, n)!r}" for n in shown)
        return f"{self.__class__.__qualname__}({inner})"

    return repr_


def _values(names: list[str]) -> Callable[[Any], tuple[Any, ...]]:
    """The named attributes as a tuple, read in C (``attrgetter`` of one name is no tuple)."""
    if len(names) == 1:
        one = attrgetter(names[0])
        return lambda obj: (one(obj),)
    return attrgetter(*names) if names else lambda obj: ()


def _eq(compared: list[str]) -> Callable[[Any, Any], Any]:
    values = _values(compared)

    def eq_(self: Any, other: Any) -> Any:
        if other.__class__ is self.__class__:
            return values(self) == values(other)
        return NotImplemented

    return eq_


def _hash(cls: type, compared: list[str], frozen: bool) -> dict[str, Callable[..., Any] | None]:
    """dataclasses' rule without ``unsafe_hash``: a class's own ``__hash__`` stays; else a
    frozen record hashes its compared fields and a mutable one is unhashable."""
    own = cls.__dict__.get("__hash__", MISSING)
    if not (own is MISSING or (own is None and "__eq__" in cls.__dict__)):
        return {}
    if not frozen:
        return {"__hash__": None}
    values = _values(compared)

    def hash_(self: Any) -> int:
        return hash(values(self))

    return {"__hash__": hash_}


def _frozen(cls: type, names: tuple[str, ...]) -> dict[str, Callable[..., Any]]:
    for name in ("__setattr__", "__delattr__"):
        if name in cls.__dict__:
            raise TypeError(f"Cannot overwrite attribute {name} in class {cls.__name__}")
    owner: Any = cls

    def setattr_(self: Any, name: str, value: Any) -> None:
        if type(self) is owner or name in names:
            raise FrozenInstanceError(f"cannot assign to field {name!r}")
        super(owner, self).__setattr__(name, value)

    def delattr_(self: Any, name: str) -> None:
        if type(self) is owner or name in names:
            raise FrozenInstanceError(f"cannot delete field {name!r}")
        super(owner, self).__delattr__(name)

    return {"__setattr__": setattr_, "__delattr__": delattr_}


def _state(names: tuple[str, ...]) -> dict[str, Callable[..., Any]]:
    """A frozen record with slots pickles its fields as a list (its ``__setattr__`` would
    refuse the default way), as dataclasses does."""

    def getstate_(self: Any) -> list[Any]:
        return [getattr(self, n) for n in names]

    def setstate_(self: Any, state: list[Any]) -> None:
        for n, v in zip(names, state, strict=False):
            object.__setattr__(self, n, v)

    return {"__getstate__": getstate_, "__setstate__": setstate_}
