"""One settings toolkit: a documented frozen dataclass becomes flags, environment variables and --help.

A service declares its settings once, as a frozen dataclass whose fields carry a default and a
docstring (the string literal under the field). Fields whose type is itself such a dataclass are
groups (as kopf's settings are): their fields are flattened, so ``serving.read_timeout`` is the flag
``--read-timeout`` and the variable ``<PREFIX>READ_TIMEOUT``; leaf names must be unique.

Layers, lowest first: the dataclass defaults, an optional ``base`` (the feed's YAML file), the
environment, the flags. A value that does not convert raises `ConfigError` naming where it came
from and the other spelling of the same key; a service's own checks of the combined settings run
last. `report` prints one line and gives exit code 2, the code every service uses for bad settings.

Field metadata, all optional: ``parse`` (a str -> value function tried on text before the type's
own conversion, e.g. durations), ``cli`` (False: not a flag nor a variable, e.g. a list of
providers that only the YAML can hold).
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import itertools
import os
import sys
import textwrap
import types
import typing
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

LOG_LEVELS = ("debug", "info", "warning", "error")
"""The levels every service's --log-level accepts (carbon_common.jsonlog maps them)."""

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})  # empty: false, as the extender always took it


class ConfigError(ValueError):
    """The settings are wrong; the message names the key (flag, variable or YAML key) and the problem."""


def parse_bool(text: str) -> bool:
    """true/false, yes/no, on/off, 1/0 in any case, empty for false; anything else is a ValueError."""
    value = text.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"expected true or false, got {text!r}")


@dataclasses.dataclass(frozen=True, slots=True)
class Option:
    """One leaf field of a settings dataclass, with its two spellings outside Python."""

    path: tuple[str, ...]
    """Field names from the top dataclass down to this field (one name unless inside a group)."""
    kind: Any
    """The annotation without `| None`: bool, int, float, str, Path or a Literal of strings."""
    optional: bool
    default: Any
    doc: str
    flag: str
    env: str
    parse: Callable[[str], Any] | None

    @property
    def name(self) -> str:
        return self.path[-1]

    @property
    def choices(self) -> tuple[str, ...] | None:
        if typing.get_origin(self.kind) is typing.Literal:
            return tuple(str(c) for c in typing.get_args(self.kind))
        return None


def field_docs(cls: type) -> dict[str, str]:
    """The docstring under each field of `cls`, whitespace folded (Python keeps none at runtime)."""
    return dict(_field_docs(cls))


@cache
def _field_docs(cls: type) -> tuple[tuple[str, str], ...]:
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = typing.cast(ast.ClassDef, tree.body[0]).body
    docs: list[tuple[str, str]] = []
    for node, following in itertools.pairwise(body):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        ):
            docs.append((node.target.id, " ".join(following.value.value.split())))
    return tuple(docs)


def _unwrap(tp: Any) -> tuple[Any, bool]:
    """(type, optional) for an annotation such as `Path | None`."""
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) != 1:
            raise TypeError(f"unsupported settings type {tp!r}")
        return args[0], True
    return tp, False


def options(cls: type, env_prefix: str) -> tuple[Option, ...]:
    """Every flag-able leaf of `cls`, groups flattened, in declaration order."""
    found = tuple(_walk(cls, env_prefix, ()))
    names = [o.name for o in found]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise TypeError(f"{cls.__name__}: settings names must be unique across groups, repeated: {dupes}")
    return found


def _field_default(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def _walk(cls: type, env_prefix: str, prefix: tuple[str, ...], defaults: Any = None) -> Iterator[Option]:
    """`defaults`: the group's default instance, whose values win over the group class's own defaults
    (a shared group such as carbon_common.leader.LeaderSettings with a service's own lease name)."""
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    for f in dataclasses.fields(cls):
        if not f.metadata.get("cli", True):
            continue
        kind, optional = _unwrap(hints[f.name])
        default = getattr(defaults, f.name) if defaults is not None else _field_default(f)
        if dataclasses.is_dataclass(kind):
            yield from _walk(typing.cast(type, kind), env_prefix, (*prefix, f.name), default)
            continue
        if kind not in (bool, int, float, str, Path) and typing.get_origin(kind) is not typing.Literal:
            raise TypeError(f"unsupported settings type {hints[f.name]!r} for {f.name}")
        yield Option(
            path=(*prefix, f.name),
            kind=kind,
            optional=optional,
            default=default,
            doc=docs.get(f.name, ""),
            flag="--" + f.name.replace("_", "-"),
            env=env_prefix + f.name.upper(),
            parse=f.metadata.get("parse"),
        )


def convert(option: Option, value: Any, source: str) -> Any:
    """`value` (text from a flag or variable, or a YAML scalar) as the option's type; `source` names
    where it came from in the ConfigError, which also names the option's other spellings."""
    try:
        return _convert(option, value)
    except ValueError as exc:
        others = [s for s in (option.flag, option.env) if s != source]
        raise ConfigError(f"{source}: {exc} ({', '.join(others)})") from None


def _convert(option: Option, value: Any) -> Any:
    kind = option.kind
    if option.optional and (value is None or value == ""):
        return None  # an empty variable unsets an optional setting (e.g. CARBON_EXTENDER_METRICS_PORT=)
    if isinstance(value, str) and option.parse is not None:
        return option.parse(value)
    choices = option.choices
    if choices is not None:
        if value not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}, got {value!r}")
        return value
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str):
            return parse_bool(value)
        raise ValueError(f"expected true or false, got {value!r}")
    if kind in (int, float):
        noun = "an integer" if kind is int else "a number"
        if isinstance(value, str):
            try:
                return kind(value)
            except ValueError:
                raise ValueError(f"expected {noun}, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"expected {noun}, got {value!r}")
        if kind is int and not float(value).is_integer():
            raise ValueError(f"expected an integer, got {value!r}")
        return kind(value)
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {value!r}")
    return Path(value) if kind is Path else value


def add_arguments(parser: argparse.ArgumentParser, opts: Sequence[Option]) -> None:
    """One flag per option, help from its docstring, variable and default; booleans get --no-<flag>.
    Flags default to None ("not given") so the environment and `base` layers show through."""
    for o in opts:
        doc = f"{o.doc} " if o.doc else ""
        shown = o.default if o.default != "" else '""'
        text = f"{doc}[env {o.env}] (default: {shown})".replace("%", "%%")
        dest = "__".join(o.path)
        if o.kind is bool:
            parser.add_argument(
                o.flag, dest=dest, action=argparse.BooleanOptionalAction, default=None, help=text
            )
        else:
            choices = o.choices
            metavar = "{" + ",".join(choices) + "}" if choices else o.name.upper()
            parser.add_argument(o.flag, dest=dest, default=None, metavar=metavar, help=text)


def parser_for(cls: type, env_prefix: str, prog: str, description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description)
    add_arguments(parser, options(cls, env_prefix))
    return parser


def flag_values(namespace: argparse.Namespace, opts: Sequence[Option]) -> dict[str, Any]:
    """The flags that were given, by leaf name (argparse's values, text or bool)."""
    given = {o.name: getattr(namespace, "__".join(o.path)) for o in opts}
    return {name: value for name, value in given.items() if value is not None}


def resolve(
    cls: type[T],
    env_prefix: str,
    flags: Mapping[str, Any],
    env: Mapping[str, str],
    base: T | None = None,
) -> T:
    """`base` (default: the dataclass defaults) under the environment under `flags` (leaf name ->
    raw value, only those given). Raises ConfigError for the first value that does not convert."""
    values: dict[str, Any] = {}
    for o in options(cls, env_prefix):
        if o.name in flags:
            values[o.name] = convert(o, flags[o.name], o.flag)
        elif o.env in env:
            values[o.name] = convert(o, env[o.env], o.env)
    return replace_leaves(base if base is not None else cls(), values)


def replace_leaves(settings: T, values: Mapping[str, Any]) -> T:
    """`settings` with the leaves named in `values` replaced, wherever in the groups they live."""
    changes: dict[str, Any] = {}
    for f in dataclasses.fields(typing.cast(Any, settings)):
        if not f.metadata.get("cli", True):
            continue  # not a setting of ours to replace, nor a group to search
        current = getattr(settings, f.name)
        if f.name in values:
            changes[f.name] = values[f.name]
        elif dataclasses.is_dataclass(current) and not isinstance(current, type):
            changed = replace_leaves(current, values)
            if changed != current:
                changes[f.name] = changed
    return dataclasses.replace(typing.cast(Any, settings), **changes) if changes else settings


def parse(
    cls: type[T],
    env_prefix: str,
    argv: Sequence[str] | None,
    env: Mapping[str, str],
    *,
    prog: str,
    description: str,
    validate: Callable[[T], Sequence[str]] = lambda _: (),
) -> T:
    """Flags over environment over defaults, then `validate` (every problem, phrased with flag
    names); raises ConfigError. --help and unknown flags are argparse's own (exit 0 and 2)."""
    opts = options(cls, env_prefix)
    parser = parser_for(cls, env_prefix, prog, description)
    settings = resolve(cls, env_prefix, flag_values(parser.parse_args(argv), opts), env)
    problems = validate(settings)
    if problems:
        raise ConfigError("; ".join(problems))
    return settings


def parse_or_exit(
    cls: type[T],
    env_prefix: str,
    argv: Sequence[str] | None,
    env: Mapping[str, str] | None,
    *,
    prog: str,
    description: str,
    validate: Callable[[T], Sequence[str]] = lambda _: (),
) -> T:
    """`parse` with `os.environ` by default, reporting bad settings the one way (SystemExit(2))."""
    try:
        return parse(
            cls,
            env_prefix,
            argv,
            os.environ if env is None else env,
            prog=prog,
            description=description,
            validate=validate,
        )
    except ConfigError as error:
        raise SystemExit(report(prog, error)) from None


def check_log_level(value: str, key: str) -> list[str]:
    """The one check of a log level, for a service's validate()."""
    if value.lower() in LOG_LEVELS:
        return []
    return [f"{key} must be one of {', '.join(LOG_LEVELS)}, got {value!r}"]


def report(prog: str, error: ConfigError) -> int:
    """The one way a service reports bad settings: one line on stderr; returns the exit code, 2."""
    print(f"{prog}: configuration error: {error}", file=sys.stderr)
    return 2
