"""Converting command-line values for typer without pydantic.

typer (0.29) converts each parameter's value through a pydantic ``TypeAdapter``; importing
pydantic and building the adapters costs about 12 MiB and 60-90 ms on every command, before
the command runs.  strongroom's parameters are all plain (``str``, ``Path``, ``int`` and
``float`` with bounds, ``bool``, lists of those), so :func:`install` gives each such
parameter a small converter with the same results and messages
(``tests/cli/test_coercion.py`` compares them with typer's own).  Any other parameter, and
any value a converter does not expect, goes to typer's own conversion as before.

This uses two typer internals: a parameter's ``type_descriptor`` and its lazily built
``_runtime_param`` (anything with ``coerce(value, param=, ctx=)``).  If a typer release
drops them, :func:`install` changes nothing and typer works as it always does.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, get_args, get_origin

import typer

Leaf = Callable[[Any, Any, Any], Any]
"""Converts one value: ``leaf(value, param, ctx)``."""

_INT = re.compile(r"[+-]?[0-9]+(?:_[0-9]+)*(?:\.0+)?")


class _Invalid(ValueError):
    """The value is not valid: typer reports ``str(exc)`` as a bad parameter."""


class _Unexpected(Exception):
    """A value of a kind this module does not handle: typer's own conversion decides."""


def _to_str(value: Any, param: Any, ctx: Any) -> str:
    if isinstance(value, str):
        return value
    raise _Unexpected


def _to_path(value: Any, param: Any, ctx: Any) -> Any:
    from typer._param_types import coerce_cli_path  # loaded by typer already

    if not isinstance(value, str | Path):
        raise _Unexpected
    info = param.type_descriptor.parameter_info
    return coerce_cli_path(Path(value), info, path_type=Path, param=param, ctx=ctx)


def _to_bool(value: Any, param: Any, ctx: Any) -> bool:
    if isinstance(value, bool):
        return value
    raise _Unexpected


def _number(kind: type[int] | type[float], low: float | None, high: float | None) -> Leaf:
    noun = "integer" if kind is int else "number"
    article = "an" if kind is int else "a"
    unparsable = f"Input should be a valid {noun}, unable to parse string as {article} {noun}"

    def convert(value: Any, param: Any, ctx: Any) -> int | float:
        if isinstance(value, str):
            text = value.strip()
            try:
                if not text.isascii():
                    raise ValueError(text)
                if kind is int:
                    if not _INT.fullmatch(text):
                        raise ValueError(text)
                    number: int | float = int(text.partition(".")[0])
                else:
                    number = float(text)
            except ValueError:
                raise _Invalid(unparsable) from None
        elif type(value) is kind:
            number = value
        else:
            raise _Unexpected
        # the upper bound first, as pydantic: NaN breaks both and is reported against it
        if high is not None and not number <= high:
            raise _Invalid(f"Input should be less than or equal to {_bound(high)}")
        if low is not None and not number >= low:
            raise _Invalid(f"Input should be greater than or equal to {_bound(low)}")
        return number

    return convert


def _bound(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _leaf(annotation: Any, info: Any) -> Leaf | None:
    """The converter for a plain annotation and its typer options, or None (typer's)."""
    if annotation is str:
        return _to_str
    if annotation is bool:
        return _to_bool
    if annotation in (int, float):
        if info.clamp:
            return None
        return _number(annotation, info.min, info.max)
    if annotation is Path:
        if info.path_type is not None or info.resolve_path or info.allow_dash:
            return None
        return _to_path
    return None


class _Converter:
    """What typer calls to convert one parameter's value (its ``RuntimeParam`` contract)."""

    def __init__(self, leaf: Leaf, many: bool, descriptor: Any) -> None:
        self.leaf = leaf
        self.many = many
        self.descriptor = descriptor
        self.fallback: Any = None

    def coerce(self, value: Any, param: Any, ctx: Any) -> Any:
        multi = param.multiple or param.nargs == -1
        if value is None:
            return () if multi else None
        if multi and isinstance(value, str):
            raise typer.BadParameter("Value must be an iterable.", ctx=ctx, param=param)
        try:
            if self.many:
                items = value if isinstance(value, list | tuple) else [value]
                return [self.leaf(item, param, ctx) for item in items]
            return self.leaf(value, param, ctx)
        except _Invalid as exc:
            raise typer.BadParameter(str(exc), ctx=ctx, param=param) from None
        except _Unexpected:
            return self._typer().coerce(value, param=param, ctx=ctx)

    def _typer(self) -> Any:
        if self.fallback is None:
            from typer._coercion import build_runtime_param  # loads pydantic

            self.fallback = build_runtime_param(self.descriptor)
        return self.fallback


def converter_for(param: Any) -> _Converter | None:
    """A converter for one typer parameter, or None where typer's own is needed."""
    descriptor = getattr(param, "type_descriptor", None)
    info = getattr(descriptor, "parameter_info", None)
    if descriptor is None or info is None or getattr(descriptor, "file_annotation", None):
        return None
    if getattr(info, "parser", None) is not None:
        return None
    annotation = descriptor.annotation
    many = get_origin(annotation) is list
    if many:
        (annotation,) = get_args(annotation)
    leaf = _leaf(annotation, info)
    return None if leaf is None else _Converter(leaf, many, descriptor)


def install(command: Any) -> int:
    """Give every plain parameter of ``command`` and its subcommands a converter; the count.
    Flags also get an empty metavar, so ``--help`` shows no ``<bool>`` next to them.

    Includes each command's ``--help`` option, which typer otherwise makes while parsing."""
    done = 0
    params = list(getattr(command, "params", ()))
    with contextlib.suppress(Exception):
        params.append(command.get_help_option(typer.Context(command)))
    for param in params:
        if getattr(param, "is_flag", False) and getattr(param, "metavar", "") is None:
            param.metavar = ""  # typer's help shows a flag's type ("<bool>") unless it has one
        if getattr(param, "_runtime_param", False) is not None:
            continue  # not a typer parameter, or typer internals changed, or already set
        converter = converter_for(param)
        if converter is not None:
            param._runtime_param = converter
            done += 1
    for sub in getattr(command, "commands", {}).values():
        done += install(sub)
    return done
