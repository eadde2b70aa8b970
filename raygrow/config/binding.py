"""YAML → dataclasses: the binding every config of raygrow goes through.

`from_dict` builds a dataclass from a plain mapping, rejects unknown keys and coerces values to
the fields' type hints; a nested error names the dotted field (`train.zero_stage: must be 0..3,
got 5`). `apply_override` applies one `a.b=c` assignment; `read_yaml` reads a file. Every error
is a `ConfigError`: one line naming the field or file.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml

from raygrow.errors import ConfigError


def require(ok: bool, name: str, message: str) -> None:
    """Raise ConfigError(name, message) unless `ok`."""
    if not ok:
        raise ConfigError(name, message)


def _coerce(value: Any, hint: Any, name: str) -> Any:
    """Check `value` against a field's type hint; numbers written as strings ('3e-3') become
    numbers."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in (o for o in options if o is not type(None)):
            try:
                return _coerce(value, option, name)
            except ConfigError as error:
                # A mapping was meant for the dataclass option: its error is the useful one.
                errors.insert(0 if isinstance(value, dict) and dataclasses.is_dataclass(option)
                              else len(errors), error)
        raise errors[0]
    if origin is list:
        require(isinstance(value, list), name, f"must be a list, got {value!r}")
        (item_hint,) = typing.get_args(hint)
        items = []
        for index, item in enumerate(value):
            try:
                items.append(_coerce(item, item_hint, ""))
            except ConfigError as error:
                raise error.under(f"[{index}]") from None
        return items
    if origin is Literal:
        allowed = typing.get_args(hint)
        require(value in allowed, name,
                f"must be one of {', '.join(map(str, allowed))}, got {value!r}")
        return value
    if dataclasses.is_dataclass(hint):
        require(isinstance(value, dict), name, f"must be a mapping, got {value!r}")
        return from_dict(hint, value)
    if hint is bool:
        require(isinstance(value, bool), name, f"must be true or false, got {value!r}")
        return value
    if hint in (int, float):
        if isinstance(value, str):
            value = _number(value)
        if hint is int and isinstance(value, float) and value.is_integer():
            value = int(value)
        ok = (isinstance(value, (int, float) if hint is float else int)
              and not isinstance(value, bool))
        require(ok, name, f"must be {'a number' if hint is float else 'an integer'}, got {value!r}")
        # No field of raygrow means anything at infinity or NaN (`--set train.lr=.inf` once
        # trained a whole plan to NaN): refuse them here, once for every numeric field.
        require(math.isfinite(value), name, f"must be a finite number, got {value!r}")
        return hint(value)
    if hint is str:
        require(isinstance(value, str), name, f"must be a string, got {value!r}")
        return value
    return value


def _number(text: str) -> Any:
    """'3e-3' or '2_000_000' as a number; anything else unchanged (YAML 1.1 reads 3e-3 as a
    string)."""
    try:
        return float(text.replace("_", ""))
    except ValueError:
        return text


def from_dict(cls: type, data: dict[str, Any]) -> Any:
    """Build dataclass `cls` from `data`, refusing unknown keys; errors name the dotted field."""
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    for key in data:
        if key not in known:
            raise ConfigError(str(key), f"unknown key (known: {', '.join(sorted(known))})")
    missing = [f.name for f in dataclasses.fields(cls)
               if f.name not in data and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ConfigError(missing[0], "is required")
    kwargs = {}
    for key, value in data.items():
        try:
            kwargs[key] = _coerce(value, hints[key], "")
        except ConfigError as error:
            raise error.under(key) from None
    return cls(**kwargs)


def apply_override(raw: dict[str, Any], assignment: str) -> None:
    """Apply one `a.b=c` override to a raw config dict (`stages.1.tokens=…` indexes a list);
    the value is parsed as YAML."""
    if "=" not in assignment:
        raise ConfigError(assignment, "override must look like section.key=value")
    path, text = assignment.split("=", 1)
    keys = path.strip().split(".")
    value = _override_value(path, text)
    node: Any = raw
    for depth, key in enumerate(keys):
        last = depth == len(keys) - 1
        if isinstance(node, list):
            if not key.isdigit() or int(key) >= len(node):
                raise ConfigError(path, f"no list item {key!r} (the list has {len(node)})")
            key = int(key)
        elif not isinstance(node, dict):
            raise ConfigError(path, "cannot set a key inside a non-mapping value")
        if last:
            node[key] = value
        else:
            if isinstance(node, dict) and node.get(key) is None:
                node[key] = {}
            node = node[key]


def _override_value(path: str, text: str) -> Any:
    """The value of `path=text`, read as YAML (so `2`, `1e-3`, `null`, `[1, 2]` and `{a: 1}`
    work)."""
    if not text.strip():
        return None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        raise ConfigError(path, f"cannot read the value {text!r} as YAML; quote it "
                          f"(--set '{path}=\"{text}\"') or fix its syntax") from None


def read_yaml(path: str | Path, what: str = "config") -> dict:
    """The mapping a YAML file holds; ConfigError naming the file (and line) otherwise."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError("", f"{what} file {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        raise ConfigError("", f"{path}{where} is not valid YAML") from None
    if not isinstance(raw, dict):
        raise ConfigError("", f"{path} must hold a mapping of fields")
    return raw


