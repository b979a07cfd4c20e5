"""The one validation mechanism of every settings object: YAML configs, the gadget's
XML properties, an MRD App's JSON parameters, command-line ``key=value`` options.

A settings object is a dataclass whose annotations are its types. :func:`from_dict`
builds one from a mapping: unknown keys are an error, not ignored (DIRECT style), with
the same message everywhere (:func:`check_keys`); nested dataclasses are built
recursively, a partial section overriding the fields of that section's default (so
``heldout_space: {matrix: [32, 32]}`` keeps the held-out space's other settings);
values are converted and type-checked against the annotations (int, float, bool, str,
tuples, ``X | None``, ``Literal``) with ``text=True`` parsing strings (``"true"``,
``"8"``, ``"6,6"``) as XML properties and command lines give them. A class that
derives from :class:`Settings` gets :meth:`Settings.validate` (the same type checks
on an object built in code, then its own :meth:`Settings.check` for ranges and
relations). Errors name the source and the key path (``model.fusion``).
"""

from __future__ import annotations

import dataclasses
import numbers
import types
import typing
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar, get_args, get_origin, get_type_hints

import numpy as np
import yaml

from recon.errors import InputError

T = TypeVar("T")


#: Words a text setting may use for a boolean.
TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")
#: Words a text setting may use for "none" (a field typed ``X | None``).
NONE_WORDS = ("", "none", "null")


def check_keys(where: str, given, valid) -> None:
    """An :class:`InputError` naming the keys of ``given`` that are not in ``valid`` (and the valid ones)."""
    unknown = sorted(set(given) - set(valid))
    if unknown:
        listed = ", ".join(sorted(valid)) or "none"
        raise InputError(f"{where}: unknown key(s) {', '.join(unknown)}; valid keys: {listed}")


def _from_text(value: str, tp: Any, where: str) -> Any:
    """A text value (XML property, command line) as the scalar type ``tp``."""
    v = value.strip()
    if tp is bool:
        if v.lower() in TRUE_WORDS:
            return True
        if v.lower() in FALSE_WORDS:
            return False
        raise InputError(f"{where}: expected true/false, got {value!r}")
    if tp is int:
        try:
            return int(v)
        except ValueError:
            raise InputError(f"{where}: expected an integer, got {value!r}") from None
    if tp is float:
        try:
            return float(v)
        except ValueError:
            raise InputError(f"{where}: expected a number, got {value!r}") from None
    return v


def convert(value: Any, tp: Any, where: str, text: bool = False) -> Any:
    """``value`` as annotation ``tp``, or an :class:`InputError` naming ``where``.

    ``text``: strings may spell other types (``"8"`` for an int, ``"6,6"`` for a pair).
    """
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        args = get_args(tp)
        if type(None) in args and (value is None or (text and isinstance(value, str)
                                                     and value.strip().lower() in NONE_WORDS)):
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return convert(value, a, where, text)
            except InputError as exc:
                errors.append(str(exc))
        names = ", ".join(getattr(a, "__name__", str(a)) for a in args if a is not type(None))
        raise InputError(errors[0] if len(errors) == 1 else f"{where}: expected one of {names}, got {value!r}")
    if origin is Literal:
        if text and isinstance(value, str):
            value = value.strip()
        if value not in get_args(tp):
            raise InputError(f"{where}: {value!r} is not one of {', '.join(map(str, get_args(tp)))}")
        return value
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return validated(value, where)
        return from_dict(tp, value, where, text=text)
    if origin in (tuple, list):
        if text and isinstance(value, str):
            value = [v for v in value.split(",")] if value.strip() else []
        if not isinstance(value, (list, tuple)):
            raise InputError(f"{where}: expected a list, got {value!r}")
        args = get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise InputError(f"{where}: expected {len(args)} values, got {len(value)}")
            return tuple(convert(v, a, f"{where}[{i}]", text) for i, (v, a) in enumerate(zip(value, args)))
        inner = args[0] if args else Any
        out = [convert(v, inner, f"{where}[{i}]", text) for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    if origin is dict:
        if not isinstance(value, dict):
            raise InputError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if text and isinstance(value, str) and tp in (bool, int, float, str):
        return _from_text(value, tp, where)
    if tp is bool:
        if not isinstance(value, (bool, np.bool_)):
            raise InputError(f"{where}: expected true/false, got {value!r}")
        return bool(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise InputError(f"{where}: expected an integer, got {value!r}")
        return int(value)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
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


def from_dict(cls: type[T], data: Any, where: str = "config", text: bool = False) -> T:
    """Build dataclass ``cls`` from a mapping, converted and validated (see the module docstring).

    ``text``: values may be strings to parse (XML properties, command-line ``key=value``).
    Unknown keys, ill-typed values and failed checks raise :class:`InputError` naming ``where``.
    """
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InputError(f"{where}: expected a mapping of settings, got {data!r}")
    hints = get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    check_keys(where, data, names)
    defaults = _dataclass_defaults(cls)
    kwargs = {}
    for k, v in data.items():
        if k in defaults and isinstance(v, dict):  # a partial section overrides its default's fields
            v = {**to_dict(defaults[k]), **v}
        kwargs[k] = convert(v, hints[k], f"{where}.{k}", text)
    try:
        obj = cls(**kwargs)
    except TypeError as exc:
        raise InputError(f"{where}: {exc}") from None
    return _checked(obj, where)


def _checked(obj: T, where: str) -> T:
    """``obj`` after its own :meth:`check` (or legacy ``validate``), errors prefixed with ``where``."""
    check = getattr(obj, "check", None) if isinstance(obj, Settings) else getattr(obj, "validate", None)
    if callable(check):
        try:
            check()
        except InputError as exc:
            if str(exc).startswith(where):  # already named (a nested check with the same source)
                raise
            raise InputError(f"{where}: {exc}") from None
    return obj


def check_types(obj: Any, where: str) -> None:
    """Every field of dataclass ``obj`` against its annotation (nested settings validated too)."""
    hints = get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        if f.name in hints:
            convert(getattr(obj, f.name), hints[f.name], f"{where}.{f.name}")


def validated(obj: T, where: str) -> T:
    """A settings object built in code, checked as :func:`from_dict` checks a mapping."""
    check_types(obj, where)
    return _checked(obj, where)


class Settings:
    """Base of the settings dataclasses: one :meth:`validate` for all of them.

    Subclasses declare their fields with types (the checks of :func:`convert`) and put
    range and cross-field checks in :meth:`check`; ``WHERE`` names them in errors.
    """

    WHERE: ClassVar[str] = "settings"

    def check(self) -> None:
        """Ranges and relations between fields (types are already checked); InputError when wrong."""

    def validate(self):
        """Types of every field, then :meth:`check`. Returns self."""
        return validated(self, self.WHERE)

    @classmethod
    def from_dict(cls: type[T], data: Any, where: str | None = None, text: bool = False) -> T:
        """Built from a mapping by the one mechanism (:func:`from_dict`)."""
        return from_dict(cls, data, where or cls.WHERE, text=text)


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
