"""strongroom.records.dataclass against dataclasses.dataclass: the same class body under both
decorators must behave the same, method by method, on Hypothesis-drawn classes."""

from __future__ import annotations

import copy
import dataclasses
import pickle
import sys
from typing import Any, ClassVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strongroom import records

# A field: its name, its kind (plain, default, factory), and its repr/compare flags.
_NAMES = st.lists(
    st.sampled_from(["a", "b", "size", "name", "chunks", "mode", "x1", "kind"]),
    min_size=0,
    max_size=6,
    unique=True,
)
_KINDS = st.sampled_from(["plain", "default", "factory", "field_default"])
_OPTIONS = st.fixed_dictionaries(
    {"frozen": st.booleans(), "slots": st.booleans(), "eq": st.booleans()}
)


def _body(spec: list[tuple[str, str, bool, bool]]) -> str:
    """A class body: plain fields first (dataclasses' order rule), then defaulted ones."""
    lines = ['    """doc"""', "    limit: ClassVar[int] = 7"]
    ordered = sorted(spec, key=lambda s: s[1] != "plain")
    for name, kind, show, compare in ordered:
        flags = f"repr={show}, compare={compare}"
        if kind == "plain":
            value = f" = field({flags})" if not (show and compare) else ""
        elif kind == "default":
            value = f" = {len(name)}" if show and compare else f" = field(default=3, {flags})"
        elif kind == "field_default":
            value = f" = field(default={name!r}, {flags})"
        else:
            value = f" = field(default_factory=list, {flags})"
        lines.append(f"    {name}: Any{value}")
    return "\n".join(lines)


def _make(decorator: Any, options: dict[str, bool], body: str, tag: str) -> Any:
    """The class, importable by name (pickle finds it in this module)."""
    source = f"@decorator(**options)\nclass C_{tag}:\n{body}\n"
    ns: dict[str, Any] = {
        "decorator": decorator,
        "options": options,
        "field": dataclasses.field,
        "Any": Any,
        "ClassVar": ClassVar,
        "__name__": __name__,
    }
    exec(source, ns)
    cls: Any = ns[f"C_{tag}"]
    cls.__qualname__ = cls.__name__ = f"C_{tag}"
    setattr(sys.modules[__name__], cls.__name__, cls)
    return cls


def _args(spec: list[tuple[str, str, bool, bool]], data: st.DataObject) -> dict[str, Any]:
    values = st.one_of(st.integers(-3, 3), st.binary(max_size=3), st.tuples(st.integers(0, 2)))
    given_ = {}
    for name, kind, _, _ in spec:
        if kind == "plain" or data.draw(st.booleans()):
            given_[name] = data.draw(values)
    return given_


def _same_outcome(f: Any, g: Any) -> None:
    """f() and g() return equal values or raise the same exception type."""
    try:
        want = ("ok", f())
    except Exception as exc:
        want = ("raised", type(exc))
    try:
        got = ("ok", g())
    except Exception as exc:
        got = ("raised", type(exc))
    assert got == want


@settings(max_examples=150, deadline=None)
@given(
    spec=_NAMES.flatmap(
        lambda names: st.tuples(
            *[st.tuples(st.just(n), _KINDS, st.booleans(), st.booleans()) for n in names]
        ).map(list)
    ),
    options=_OPTIONS,
    data=st.data(),
)
def test_the_same_as_dataclasses(
    spec: list[tuple[str, str, bool, bool]], options: dict[str, bool], data: st.DataObject
) -> None:
    body = _body(spec)
    theirs = _make(dataclasses.dataclass, options, body, "std")
    mine = _make(records.dataclass, options, body, "rec")
    kwargs, other = _args(spec, data), _args(spec, data)
    a, b = theirs(**kwargs), mine(**kwargs)
    a2, b2 = theirs(**other), mine(**other)

    assert repr(b).replace("C_rec", "C_std") == repr(a)
    assert (b == mine(**kwargs)) == (a == theirs(**kwargs))
    assert (b == b2) == (a == a2)
    assert (b == a) is False  # another class is never equal
    assert mine.__hash__ is None if theirs.__hash__ is None else mine.__hash__ is not None
    _same_outcome(
        lambda: hash(a) == hash(theirs(**kwargs)), lambda: hash(b) == hash(mine(**kwargs))
    )
    assert [f.name for f in dataclasses.fields(mine)] == [
        f.name for f in dataclasses.fields(theirs)
    ]
    assert dataclasses.asdict(b) == dataclasses.asdict(a)
    assert dataclasses.astuple(b) == dataclasses.astuple(a)
    assert dataclasses.asdict(dataclasses.replace(b, **other)) == dataclasses.asdict(
        dataclasses.replace(a, **other)
    )
    assert mine.__match_args__ == theirs.__match_args__
    assert mine.limit == 7 and "limit" not in mine.__dataclass_fields__
    assert hasattr(b, "__dict__") == hasattr(a, "__dict__")
    for name in kwargs:  # frozen or not, as dataclasses decides
        _same_outcome(lambda: setattr(a, name, 1), lambda: setattr(b, name, 1))  # noqa: B023
        _same_outcome(lambda: delattr(a, name), lambda: delattr(b, name))  # noqa: B023
    if options["frozen"]:  # 3.11's dataclasses raise TypeError here with slots (its bug)
        with pytest.raises(dataclasses.FrozenInstanceError):
            b.extra = 1
    else:
        _same_outcome(lambda: setattr(a, "extra", 1), lambda: setattr(b, "extra", 1))
    fresh = mine(**kwargs)
    assert pickle.loads(pickle.dumps(fresh)) == fresh or not options["eq"]
    assert copy.deepcopy(fresh).__dict__ == fresh.__dict__ if hasattr(fresh, "__dict__") else True


def test_defaults_factories_and_post_init() -> None:
    @records.dataclass
    class Counted:
        n: int
        seen: list[int] = dataclasses.field(default_factory=list)
        label: str = "x"

        def __post_init__(self) -> None:
            self.seen.append(self.n)

    one, two = Counted(1), Counted(2)
    assert one.seen == [1] and two.seen == [2]  # a fresh list each
    assert Counted.label == "x"  # a plain default stays a class attribute, as in dataclasses
    assert "seen" not in Counted.__dict__  # a factory's Field does not
    with pytest.raises(TypeError):
        Counted()  # type: ignore[call-arg]


def test_inheritance_adds_fields_after_the_base() -> None:
    @records.dataclass(frozen=True)
    class Base:
        a: int
        b: int = 0

    @records.dataclass(frozen=True)
    class Child(Base):
        c: int = 5

    assert Child(1, 2, 3) == Child(a=1, b=2, c=3)
    assert (
        repr(Child(1))
        == "test_inheritance_adds_fields_after_the_base.<locals>.Child(a=1, b=0, c=5)"
    )
    with pytest.raises(TypeError, match="frozen"):

        @records.dataclass
        class Thawed(Base):  # type: ignore[misc]
            d: int = 0


def test_what_it_does_not_do_is_refused_at_import() -> None:
    with pytest.raises(TypeError, match="not supported"):

        @records.dataclass
        class NoInit:
            a: int = dataclasses.field(init=False)

    with pytest.raises(ValueError, match="mutable default"):

        @records.dataclass
        class Shared:
            a: list[int] = []

    with pytest.raises(TypeError, match="follows default"):

        @records.dataclass
        class Order:
            a: int = 0
            b: int  # type: ignore[misc]

    with pytest.raises(TypeError, match="cannot use"):

        @records.dataclass
        class Selfish:
            self: int


def test_own_methods_stay() -> None:
    @records.dataclass(frozen=True)
    class Shown:
        a: int

        def __repr__(self) -> str:
            return "shown"

        def __hash__(self) -> int:
            return 42

    assert repr(Shown(1)) == "shown" and hash(Shown(9)) == 42
    with pytest.raises(TypeError, match="Cannot overwrite"):

        @records.dataclass(frozen=True)
        class Guarded:
            a: int

            def __setattr__(self, name: str, value: object) -> None:
                object.__setattr__(self, name, value)
