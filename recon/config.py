"""Dataclass configs loaded from YAML (pyyaml) and validated on load.

Unknown keys are an error, not ignored (DIRECT style); nested dataclasses are
built recursively, a partial section overriding the fields of that section's default
(so ``heldout_space: {matrix: [32, 32]}`` keeps the held-out space's other settings); values are type-checked against the annotations
(int, float, bool, str, tuples, ``X | None``, ``Literal``) and every dataclass
may define ``validate(self)`` for range checks. Errors name the file and the key
path (``model.fusion``).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin, get_type_hints

import yaml

from recon.errors import InputError

T = TypeVar("T")


def _convert(value: Any, tp: Any, where: str) -> Any:
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _convert(value, a, where)
            except InputError as exc:
                errors.append(str(exc))
        raise InputError(errors[0] if len(errors) == 1 else f"{where}: {value!r} matches none of {args}")
    if origin is Literal:
        if value not in get_args(tp):
            raise InputError(f"{where}: {value!r} is not one of {list(get_args(tp))}")
        return value
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where)
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise InputError(f"{where}: expected a list, got {value!r}")
        args = get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise InputError(f"{where}: expected {len(args)} values, got {len(value)}")
            return tuple(_convert(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        inner = args[0] if args else Any
        out = [_convert(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    if origin is dict:
        if not isinstance(value, dict):
            raise InputError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise InputError(f"{where}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise InputError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InputError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise InputError(f"{where}: expected a string, got {value!r}")
        return value
    return value


def _dataclass_defaults(cls: type) -> dict[str, Any]:
    """Fields of ``cls`` whose default is itself a dataclass instance (nested sections)."""
    out = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            value = f.default
        elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            value = f.default_factory()  # type: ignore[misc]
        else:
            continue
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            out[f.name] = value
    return out


def from_dict(cls: type[T], data: Any, where: str = "config") -> T:
    """Build dataclass ``cls`` from a mapping; unknown or ill-typed keys raise InputError."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InputError(f"{where}: expected a mapping of settings, got {data!r}")
    hints = get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - names)
    if unknown:
        raise InputError(f"{where}: unknown key(s) {unknown}; valid keys: {sorted(names)}")
    defaults = _dataclass_defaults(cls)
    kwargs = {}
    for k, v in data.items():
        if k in defaults and isinstance(v, dict):  # a partial section overrides its default's fields
            v = {**to_dict(defaults[k]), **v}
        kwargs[k] = _convert(v, hints[k], f"{where}.{k}")
    try:
        obj = cls(**kwargs)
    except TypeError as exc:
        raise InputError(f"{where}: {exc}") from None
    validate = getattr(obj, "validate", None)
    if callable(validate):
        try:
            validate()
        except InputError as exc:
            raise InputError(f"{where}: {exc}") from None
    return obj


def to_dict(obj: Any) -> Any:
    """A dataclass (nested) as plain YAML-able dicts/lists."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def load_yaml(path: str | Path) -> dict:
    """Read a YAML mapping; a missing file or bad YAML raises InputError."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: invalid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: a config must be a mapping at the top level")
    return data


def load_config(cls: type[T], path: str | Path) -> T:
    """Load and validate a dataclass config from a YAML file."""
    return from_dict(cls, load_yaml(path), where=str(path))


def dump_yaml(obj: Any, path: str | Path) -> Path:
    """Write a dataclass config as YAML."""
    path = Path(path)
    path.write_text(yaml.safe_dump(to_dict(obj), sort_keys=False))
    return path
