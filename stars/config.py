"""Frozen dataclass configs with strict, typed overrides.

`apply_overrides(cfg, ["optim.lr=1e-3", "epochs=10"])` returns a new config; an unknown key or a
value that does not parse as the field's type raises `ConfigError` naming the key (with the
closest known keys). Values may arrive as strings (command line, papermill, YAML) or typed.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """An unknown key or a mistyped value in a configuration."""


def _field_types(cls) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _is_dataclass_type(tp) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def parse_value(tp, value: Any, key: str) -> Any:
    """Coerce `value` (possibly a string) to the annotated type `tp`, or raise ConfigError."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            if type(None) in args:
                return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return parse_value(arg, value, key)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(f"{key}: cannot read {value!r} as {tp}")
    if origin is typing.Literal:
        for choice in args:
            if value == choice or (isinstance(value, str) and str(choice) == value):
                return choice
        raise ConfigError(f"{key}: {value!r} is not one of {list(args)}")
    if origin in (tuple, list):
        if isinstance(value, str):
            text = value.strip()
            if text.startswith(("[", "(")):
                value = yaml.safe_load(text.replace("(", "[").replace(")", "]"))
            else:
                value = [v for v in text.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            value = [value]
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            return tuple(parse_value(args[0], v, key) for v in value)
        if origin is tuple and args:
            if len(args) != len(value):
                raise ConfigError(f"{key}: expected {len(args)} values, got {value!r}")
            return tuple(parse_value(a, v, key) for a, v in zip(args, value))
        item = args[0] if args else Any
        return origin(parse_value(item, v, key) for v in value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("false", "0", "no", "off"):
            return False
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise ConfigError(f"{key}: {value!r} is not a boolean")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"{key}: {value!r} is not an integer")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                number = float(value) if any(c in value for c in ".eE") else int(value)
            except ValueError:
                raise ConfigError(f"{key}: {value!r} is not an integer") from None
            if isinstance(number, float) and not number.is_integer():
                raise ConfigError(f"{key}: {value!r} is not an integer")
            return int(number)
        raise ConfigError(f"{key}: {value!r} is not an integer")
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"{key}: {value!r} is not a number")
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                raise ConfigError(f"{key}: {value!r} is not a number") from None
        raise ConfigError(f"{key}: {value!r} is not a number")
    if tp is str:
        if isinstance(value, (str, Path)):
            return str(value)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{key}: {value!r} is not a string")
    if _is_dataclass_type(tp):
        if isinstance(value, tp):
            return value
        if isinstance(value, Mapping):
            return from_dict(tp, value, prefix=key + ".")
        raise ConfigError(f"{key}: expected a mapping for {tp.__name__}, got {value!r}")
    if isinstance(value, tp):
        return value
    raise ConfigError(f"{key}: unsupported type {tp} for value {value!r}")


def all_keys(cls, prefix: str = "") -> list[str]:
    """Every dotted key of a config class (nested dataclasses expanded)."""
    keys = []
    for name, tp in _field_types(cls).items():
        keys.append(prefix + name)
        if _is_dataclass_type(tp):
            keys.extend(all_keys(tp, prefix + name + "."))
    return keys


def _unknown(key: str, cls) -> ConfigError:
    known = all_keys(cls)
    close = difflib.get_close_matches(key, known, n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else f"; known keys: {', '.join(known)}"
    return ConfigError(f"unknown config key {key!r} for {cls.__name__}{hint}")


def from_dict(cls: type[T], data: Mapping[str, Any], prefix: str = "") -> T:
    """Build a config from a (nested) mapping; unknown keys and mistyped values are errors."""
    types_ = _field_types(cls)
    kwargs = {}
    for key, value in data.items():
        if key not in types_:
            raise _unknown(prefix + key, cls)
        kwargs[key] = parse_value(types_[key], value, prefix + key)
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{cls.__name__}: {err}") from err


def parse_assignments(items: Iterable[str]) -> dict[str, str]:
    """["a.b=1", "c=x"] -> {"a.b": "1", "c": "x"}; a missing `=` is an error naming the item."""
    out = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value")
        key, value = item.split("=", 1)
        key = key.strip()
        if not key:
            raise ConfigError(f"override {item!r} has an empty key")
        out[key] = value.strip()
    return out


def apply_overrides(cfg: T, overrides: Mapping[str, Any] | Iterable[str] | None) -> T:
    """New config with dotted-key overrides applied (`{"optim.lr": "1e-3"}` or `["optim.lr=1e-3"]`)."""
    if not overrides:
        return cfg
    if not isinstance(overrides, Mapping):
        overrides = parse_assignments(overrides)
    for key, value in overrides.items():
        cfg = _set(cfg, key.split("."), value, key, type(cfg))
    return cfg


def _set(cfg, path: list[str], value, full_key: str, root_cls):
    types_ = _field_types(type(cfg))
    head = path[0]
    if head not in types_:
        raise _unknown(full_key, root_cls)
    if len(path) == 1:
        new_value = parse_value(types_[head], value, full_key)
    else:
        child = getattr(cfg, head)
        if not dataclasses.is_dataclass(child):
            raise _unknown(full_key, root_cls)
        new_value = _set(child, path[1:], value, full_key, root_cls)
    try:
        return dataclasses.replace(cfg, **{head: new_value})
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{full_key}: {err}") from err


def to_dict(cfg) -> dict[str, Any]:
    """Plain nested dict (tuples as lists) for YAML/JSON."""

    def convert(value):
        if dataclasses.is_dataclass(value):
            return {f.name: convert(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, (list, tuple)):
            return [convert(v) for v in value]
        if isinstance(value, Path):
            return str(value)
        return value

    return convert(cfg)


def save_config(cfg, path: str | Path) -> Path:
    """Write the resolved config as YAML (or JSON when the suffix is .json)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = to_dict(cfg) if dataclasses.is_dataclass(cfg) else dict(cfg)
    text = json.dumps(data, indent=2) if path.suffix == ".json" else yaml.safe_dump(data, sort_keys=False)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # an orphan for stars.io.remove_orphan_files
    try:
        tmp.write_text(text)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def load_config(cls: type[T], path: str | Path) -> T:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(f"{path}: cannot read config ({err})") from err
    return from_dict(cls, data)

