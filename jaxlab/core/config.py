"""Dataclass configs with typed, dotted command-line overrides.

Each method declares one (possibly nested) `dataclasses.dataclass` in
`jaxlab/<method>/configs.py` and a `get_config(variant)` returning it for the variants
`smoke` (seconds on a CPU; used by tests), `default` (minutes on a CPU) and `paper`
(the paper's scale, for accelerators).

Overrides are strings `"a.b=value"`, as given on the command line after `--config.`.
The value is parsed against the field's annotation, so `--config.opt.lr=1e-3` becomes a
float and `--config.widths=16,32` a tuple of ints; an unknown key or a value of the
wrong type raises `ConfigError` naming the field and what was expected.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
import json
import pathlib
import types
import typing
from typing import Any, Callable, Sequence

__all__ = [
    "ConfigError",
    "override",
    "to_dict",
    "from_dict",
    "field_names",
    "load_file",
    "resolve",
    "to_json",
]


class ConfigError(ValueError):
    """A config key or value is not what the config's dataclass declares."""


def field_names(cls_or_cfg: Any, prefix: str = "") -> list[str]:
    """All dotted leaf field names of a config dataclass (class or instance)."""
    cls = cls_or_cfg if isinstance(cls_or_cfg, type) else type(cls_or_cfg)
    hints = typing.get_type_hints(cls)
    names = []
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            names.extend(field_names(tp, prefix + f.name + "."))
        else:
            names.append(prefix + f.name)
    return names


def _type_name(tp: Any) -> str:
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


def _parse(text: str, tp: Any, key: str) -> Any:
    """Parses the command-line string `text` as a value of type `tp`."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        try:
            return ast.literal_eval(text)
        except (ValueError, SyntaxError):
            return text
    if origin in (typing.Union, types.UnionType):
        if type(None) in args and text.strip().lower() in ("none", "null"):
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _parse(text, a, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(f"config field '{key}' expects {_type_name(tp)}, got {text!r}")
    if origin is typing.Literal:
        for a in args:
            if str(a) == text:
                return a
        raise ConfigError(
            f"config field '{key}' expects one of {list(args)}, got {text!r}")
    if tp is bool:
        low = text.strip().lower()
        if low in ("true", "1", "yes", "on"):
            return True
        if low in ("false", "0", "no", "off"):
            return False
        raise ConfigError(f"config field '{key}' expects a bool (true/false), got {text!r}")
    if tp is int:
        try:
            return int(text)
        except ValueError:
            raise ConfigError(f"config field '{key}' expects an int, got {text!r}") from None
    if tp is float:
        try:
            return float(text)
        except ValueError:
            raise ConfigError(f"config field '{key}' expects a float, got {text!r}") from None
    if tp is str:
        return text
    if origin in (tuple, list):
        body = text.strip()
        if body[:1] in "([" and body[-1:] in ")]":
            body = body[1:-1]
        items = [s.strip() for s in body.split(",") if s.strip()]
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            item_types = [args[0]] * len(items)
        elif origin is tuple and args:
            if len(items) != len(args):
                raise ConfigError(
                    f"config field '{key}' expects {len(args)} comma-separated values, got {text!r}")
            item_types = list(args)
        else:
            item_types = [args[0] if args else Any] * len(items)
        values = [_parse(s, t, key) for s, t in zip(items, item_types)]
        return tuple(values) if origin is tuple else values
    raise ConfigError(f"config field '{key}' has type {_type_name(tp)}, which cannot be set from the command line")


def _check_value(value: Any, tp: Any, key: str) -> Any:
    """Checks (and lightly coerces) a Python value against an annotation."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for a in args:
            if a is type(None):
                continue
            try:
                return _check_value(value, a, key)
            except ConfigError:
                pass
        raise ConfigError(f"config field '{key}' expects {_type_name(tp)}, got {value!r}")
    if origin is typing.Literal:
        if value in args:
            return value
        raise ConfigError(f"config field '{key}' expects one of {list(args)}, got {value!r}")
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if isinstance(value, dict):
            return from_dict(tp, value, prefix=key + ".")
        raise ConfigError(f"config field '{key}' expects a {tp.__name__} section, got {value!r}")
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"config field '{key}' expects a bool, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"config field '{key}' expects an int, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"config field '{key}' expects a float, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"config field '{key}' expects a string, got {value!r}")
    if origin in (tuple, list):
        if not isinstance(value, (tuple, list)):
            raise ConfigError(f"config field '{key}' expects a sequence, got {value!r}")
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            item_types = [args[0]] * len(value)
        elif origin is tuple and args:
            if len(value) != len(args):
                raise ConfigError(f"config field '{key}' expects {len(args)} values, got {value!r}")
            item_types = list(args)
        else:
            item_types = [args[0] if args else Any] * len(value)
        out = [_check_value(v, t, key) for v, t in zip(value, item_types)]
        return tuple(out) if origin is tuple else out
    return value


def _set(cfg: Any, path: list[str], text: str, full_key: str, root: Any = None) -> Any:
    root = cfg if root is None else root
    cls = type(cfg)
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    head = path[0]
    if head not in names:
        valid = ", ".join(field_names(root))
        raise ConfigError(
            f"unknown config key '{full_key}' for {type(root).__name__}; valid keys: {valid}")
    tp = hints[head]
    current = getattr(cfg, head)
    if len(path) > 1:
        if not dataclasses.is_dataclass(current):
            raise ConfigError(
                f"unknown config key '{full_key}': '{head}' is a {_type_name(tp)}, not a section")
        return dataclasses.replace(cfg, **{head: _set(current, path[1:], text, full_key, root)})
    if dataclasses.is_dataclass(current):
        raise ConfigError(
            f"config key '{full_key}' is a section; set one of its fields: "
            + ", ".join(field_names(current, full_key + ".")))
    return dataclasses.replace(cfg, **{head: _parse(text, tp, full_key)})


def override(cfg: Any, overrides: Sequence[str]) -> Any:
    """Returns a copy of `cfg` with each `"a.b=value"` override applied.

    Raises:
      ConfigError: a key is not a field (the message lists the valid keys), or a
        value does not parse as the field's declared type.
    """
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"config override {item!r} is not of the form key=value")
        key, text = item.split("=", 1)
        key = key.strip()
        if key.startswith("config."):
            key = key[len("config."):]
        if not key:
            raise ConfigError(f"config override {item!r} has an empty key")
        cfg = _set(cfg, key.split("."), text, key)
    return cfg


def to_dict(cfg: Any) -> dict:
    """A JSON-ready nested dict of the config (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def to_json(cfg: Any) -> str:
    return json.dumps(to_dict(cfg), indent=2, sort_keys=True)


def from_dict(cls: type, data: dict, prefix: str = "") -> Any:
    """Builds `cls` from a nested dict, checking keys and value types."""
    if not isinstance(data, dict):
        raise ConfigError(f"config section '{prefix.rstrip('.') or cls.__name__}' must be a mapping")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(
            f"unknown config key '{prefix}{unknown[0]}' for {cls.__name__}; valid keys: "
            + ", ".join(field_names(cls, prefix)))
    kwargs = {k: _check_value(v, hints[k], prefix + k) for k, v in data.items()}
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise ConfigError(f"cannot build {cls.__name__}: {e}") from None


def load_file(path: str | pathlib.Path, variant: str | None = None) -> Any:
    """Loads a user's config file: a Python file defining `get_config([variant])`."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    spec = importlib.util.spec_from_file_location(f"jaxlab_user_config_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as e:  # noqa: BLE001 - report any failure of the user's file
        raise ConfigError(f"config file {path} failed to load: {type(e).__name__}: {e}") from e
    get = getattr(module, "get_config", None)
    if get is None:
        raise ConfigError(f"config file {path} defines no get_config() function")
    return get(variant) if variant is not None else get()


def resolve(spec: str | None, get_config: Callable[[str], Any], default: str = "default") -> Any:
    """A config from `VARIANT`, `path.py` or `path.py:VARIANT`."""
    spec = spec or default
    file_part, _, variant = spec.partition(":")
    if file_part.endswith(".py"):
        return load_file(file_part, variant or None)
    try:
        return get_config(spec)
    except KeyError as e:
        raise ConfigError(str(e.args[0]) if e.args else f"unknown config variant {spec!r}") from None


def variants(table: dict[str, Callable[[], Any]], variant: str) -> Any:
    """Helper for `get_config`: looks `variant` up in a table of factories."""
    if variant not in table:
        raise ConfigError(
            f"unknown config variant {variant!r}; choose one of {sorted(table)} "
            "or pass a file path.py[:variant]")
    return table[variant]()
