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
import inspect
import json
import pathlib
import types
import typing
from collections.abc import Callable, Sequence
from typing import Annotated, Any

from jaxlab.core.errors import JaxlabError

__all__ = [
    "ConfigError",
    "LoopConfig",
    "Range",
    "PositiveInt",
    "NonNegativeInt",
    "PositiveFloat",
    "NonNegativeFloat",
    "Probability",
    "validate",
    "variants",
    "override",
    "to_dict",
    "from_dict",
    "field_names",
    "load_file",
    "resolve",
    "to_json",
]


class ConfigError(JaxlabError, ValueError):
    """A config key or value is not what the config's dataclass declares."""


@dataclasses.dataclass(frozen=True)
class Range:
    """A bound on a number field, used as `Annotated[int, Range(min=1)]`.

    `validate` (run when a config is resolved, and on every override) checks it and
    names the field and the bound in its error.
    """

    min: float | None = None
    max: float | None = None
    min_exclusive: bool = False

    def check(self, value: Any, key: str) -> None:
        if value is None:
            return
        lo_bad = self.min is not None and (value <= self.min if self.min_exclusive else value < self.min)
        hi_bad = self.max is not None and value > self.max
        if lo_bad or hi_bad or (isinstance(value, float) and value != value):
            lo = "" if self.min is None else ("> " if self.min_exclusive else ">= ") + f"{self.min:g}"
            hi = "" if self.max is None else f"<= {self.max:g}"
            want = " and ".join(x for x in (lo, hi) if x)
            raise ConfigError(f"config field '{key}' must be {want}, got {value!r}")


PositiveInt = Annotated[int, Range(min=1)]
NonNegativeInt = Annotated[int, Range(min=0)]
PositiveFloat = Annotated[float, Range(min=0.0, min_exclusive=True)]
NonNegativeFloat = Annotated[float, Range(min=0.0)]
Probability = Annotated[float, Range(min=0.0, max=1.0)]


@dataclasses.dataclass
class LoopConfig:
    """The training loop's settings, embedded as `loop` in every method's config.

    Attributes:
      num_steps: optimizer updates of the finished run.
      log_every: fetch, check and write the training metrics every this many steps.
      eval_every: evaluate every this many steps (0: only at the end).
      checkpoint_every: save every this many steps (0: only at the end).
      keep: finished checkpoints kept on disk.
      num_devices: devices of the data-parallel mesh (0: all local devices; 1: no mesh).
      progress: show a progress bar (on process 0, when stderr is a terminal).
    """

    num_steps: NonNegativeInt = 1000
    log_every: PositiveInt = 50
    eval_every: NonNegativeInt = 0
    checkpoint_every: NonNegativeInt = 0
    keep: PositiveInt = 3
    num_devices: NonNegativeInt = 0
    progress: bool = True


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


def _split_top_level(body: str) -> list[str]:
    """Splits `body` at the commas outside brackets: "(1,2),(3,4)" -> ["(1,2)", "(3,4)"]."""
    items, depth, start = [], 0, 0
    for i, ch in enumerate(body):
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        elif ch == "," and depth == 0:
            items.append(body[start:i])
            start = i + 1
    items.append(body[start:])
    return items


def _parse(text: str, tp: Any, key: str) -> Any:
    """Parses the command-line string `text` as a value of type `tp`."""
    if typing.get_origin(tp) is Annotated:
        value = _parse(text, typing.get_args(tp)[0], key)
        _check_constraints(value, tp, key)
        return value
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
        items = [s.strip() for s in _split_top_level(body) if s.strip()]
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
    if typing.get_origin(tp) is Annotated:
        value = _check_value(value, typing.get_args(tp)[0], key)
        _check_constraints(value, tp, key)
        return value
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


def _check_constraints(value: Any, tp: Any, key: str) -> None:
    for meta in getattr(tp, "__metadata__", ()):
        if isinstance(meta, Range):
            meta.check(value, key)


def validate(cfg: Any, prefix: str = "") -> Any:
    """Checks every field of `cfg` against its annotation, recursively, and returns it.

    Types, `Literal` enumerations and `Range` bounds are checked field by field (the
    error names the dotted field and the valid values); then a config class may add
    cross-field rules in a `validate(self)` method, which runs last and raises
    `ConfigError`.
    """
    if not dataclasses.is_dataclass(cfg) or isinstance(cfg, type):
        raise ConfigError(f"expected a config dataclass, got {type(cfg).__name__}")
    hints = typing.get_type_hints(type(cfg), include_extras=True)
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        key = prefix + f.name
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            validate(value, key + ".")
        else:
            _check_value(value, hints[f.name], key)
    own = getattr(cfg, "validate", None)
    if callable(own):
        own()
    return cfg


def _set(cfg: Any, path: list[str], text: str, full_key: str, root: Any = None) -> Any:
    root = cfg if root is None else root
    cls = type(cfg)
    hints = typing.get_type_hints(cls, include_extras=True)
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
    return validate(cfg) if overrides else cfg


def to_dict(cfg: Any) -> dict:
    """A JSON-ready nested dict of the config (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def to_json(cfg: Any) -> str:
    return json.dumps(to_dict(cfg), indent=2, sort_keys=True)


def from_dict(cls: type, data: dict, prefix: str = "") -> Any:
    """Builds `cls` from a nested dict, checking keys and value types."""
    if not isinstance(data, dict):
        raise ConfigError(f"config section '{prefix.rstrip('.') or cls.__name__}' must be a mapping")
    hints = typing.get_type_hints(cls, include_extras=True)
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
    except Exception as e:
        raise ConfigError(f"config file {path} failed to load: {type(e).__name__}: {e}") from e
    get = getattr(module, "get_config", None)
    if not callable(get):
        raise ConfigError(f"config file {path} defines no get_config() function")
    if variant is None:
        required = [p for p in inspect.signature(get).parameters.values()
                    if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        if required:
            raise ConfigError(
                f"config file {path}: get_config({required[0].name}) needs a variant; "
                f"pass --config {path}:VARIANT")
    try:
        return get(variant) if variant is not None else get()
    except JaxlabError:
        raise
    except Exception as e:
        raise ConfigError(f"config file {path}: get_config({variant or ''}) failed: "
                          f"{type(e).__name__}: {e}") from e


def resolve(spec: str | None, get_config: Callable[[str], Any], default: str = "default",
            expected: type | None = None) -> Any:
    """A config from `VARIANT`, `path.py` or `path.py:VARIANT`, validated.

    Args:
      spec: the `--config` argument.
      get_config: the method's `get_config(variant)`.
      default: the variant used when `spec` is empty.
      expected: the method's config class; a file that returns anything else (a dict,
        another method's config) is an error naming both.
    """
    spec = spec or default
    file_part, _, variant = spec.partition(":")
    if file_part.endswith(".py"):
        cfg = load_file(file_part, variant or None)
        source = f"config file {file_part}"
    else:
        try:
            cfg = get_config(spec)
        except KeyError as e:
            raise ConfigError(str(e.args[0]) if e.args else f"unknown config variant {spec!r}") from None
        source = f"config variant {spec!r}"
    if expected is not None and not isinstance(cfg, expected):
        got = type(cfg).__name__ if dataclasses.is_dataclass(cfg) else f"a {type(cfg).__name__}"
        raise ConfigError(
            f"{source} gives {got}, but this method expects a {expected.__name__} "
            f"(from {expected.__module__}); start from `get_config` of that module")
    if not dataclasses.is_dataclass(cfg):
        raise ConfigError(f"{source} gives a {type(cfg).__name__}, not a config dataclass")
    return validate(cfg)


def variants(table: dict[str, Callable[[], Any]], variant: str) -> Any:
    """Helper for `get_config`: looks `variant` up in a table of factories."""
    if variant not in table:
        raise ConfigError(
            f"unknown config variant {variant!r}; choose one of {sorted(table)} "
            "or pass a file path.py[:variant]")
    return table[variant]()
