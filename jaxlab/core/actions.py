"""Declaring a method's actions: the one way every method exposes what it can do.

    @actions.action
    def train(config: FooConfig, workdir: pathlib.Path) -> dict:
        '''Trains ... (the first line is what `jaxlab foo --help` shows).'''

    @actions.action(read_only=True)
    def evaluate(config: FooConfig, workdir: pathlib.Path) -> dict:
        '''Evaluates the latest checkpoint of a run.'''

    @actions.action(read_only=True, options=[actions.Option("--scenario", metavar="FILE", help="...")])
    def predict(config: FooConfig, workdir: pathlib.Path, scenario: str | None = None) -> dict:
        '''Draws ... (`--scenario FILE` arrives as the keyword argument `scenario`).'''

    ACTIONS = actions.collect(train, evaluate, predict)

An action is called the same way from the command line and from Python,
`train(config, workdir, force=False)`: a writing action first prepares the workdir
(creates it, refuses a different config, writes config.json; see `workdir.prepare`);
a read-only action takes the run's own config.json when `config` is None. A read-only
action may declare extra command-line options (`Option`, the arguments of argparse's
`add_argument`); a given option reaches it as a keyword argument, `predict(None, workdir,
scenario="x.parquet")` from Python. Writing actions take none: what a run depends on
belongs in its config.

`Loaded` is what every method's `load(workdir)` returns.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import pathlib
import types
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

from jaxlab.core import workdir as workdir_lib

__all__ = ["action", "collect", "Loaded", "Option"]


class Loaded(NamedTuple):
    """A run read back from its workdir by `jaxlab.<method>.load(workdir)`.

    Attributes:
      config: the run's config (from config.json).
      model: the Linen module(s) of the run (a dict where a method has several).
      state: the restored state (a `TrainState`, or a dict of states for multi-stage runs).
      step: the checkpoint step restored (the newest intact one).
      extras: method-specific things (data, samplers, search results), by name.
    """

    config: Any
    model: Any
    state: Any
    step: int
    extras: Mapping[str, Any] = types.MappingProxyType({})


@dataclasses.dataclass(frozen=True, init=False)
class Option:
    """An extra command-line option of a read-only action: `Option(*flags, **kwargs)` takes the
    arguments of argparse's `add_argument` (e.g. `Option("--scenario", metavar="FILE", help=...)`).

    The value, when given, reaches the action as the keyword argument `dest` (argparse's name:
    the first long flag without its dashes, `-` as `_`); when not given, the action's own
    default applies.
    """

    flags: tuple[str, ...]
    kwargs: Mapping[str, Any]

    def __init__(self, *flags: str, **kwargs: Any):
        if not flags or not all(isinstance(f, str) and f.startswith("-") for f in flags):
            raise TypeError(f"Option needs one or more flags starting with '-', got {flags!r}")
        if "default" in kwargs:
            raise TypeError(f"Option {flags[0]}: give the default in the action's signature, not here")
        object.__setattr__(self, "flags", tuple(flags))
        object.__setattr__(self, "kwargs", types.MappingProxyType(dict(kwargs)))

    @property
    def dest(self) -> str:
        """The keyword argument the option's value is passed as."""
        if "dest" in self.kwargs:
            return self.kwargs["dest"]
        long = [f for f in self.flags if f.startswith("--")]
        return (long or self.flags)[0].lstrip("-").replace("-", "_")


def action(fn: Callable | None = None, *, read_only: bool = False, name: str | None = None,
           options: Sequence[Option] = ()):
    """Marks `fn(config, workdir, **options) -> dict` as a CLI action of its method.

    Args:
      read_only: the action reads a finished or interrupted run and writes no config
        (evaluate, report); `config=None` loads the run's own config.json.
      name: the command-line name (default: the function's name with `_` as `-`).
      options: extra command-line options (`Option`) of a read-only action; each one's `dest`
        must be a keyword parameter of `fn` with a default.
    """
    if fn is None:
        return functools.partial(action, read_only=read_only, name=name, options=options)
    if not (fn.__doc__ or "").strip():
        raise TypeError(f"action {fn.__qualname__} needs a docstring (its first line is the CLI help)")
    options = tuple(options)
    _check_options(fn, read_only, options)
    config_cls = _config_class(fn)
    accepted = {o.dest for o in options}

    @functools.wraps(fn)
    def run(config: Any, workdir: str | pathlib.Path, *, force: bool = False, **kwargs: Any) -> Any:
        unknown = sorted(set(kwargs) - accepted)
        if unknown:
            raise TypeError(f"action {run.action_name} takes no option {unknown[0]!r}"
                            + (f" (its options: {', '.join(sorted(accepted))})" if accepted else ""))
        workdir = pathlib.Path(workdir)
        if read_only:
            if config is None:
                if config_cls is None:
                    raise TypeError(f"{fn.__qualname__}: pass the run's config")
                config = workdir_lib.load_config(workdir, config_cls)
            if not (workdir / "config.json").exists():
                raise workdir_lib.WorkdirError(f"{workdir} is not a jaxlab run directory (no config.json)")
        else:
            workdir = _prepare(workdir, config, force)
        return fn(config, workdir, **kwargs)

    run.read_only = read_only
    run.action_name = name or fn.__name__.replace("_", "-")
    run.config_class = config_cls
    run.options = options
    return run


def _check_options(fn: Callable, read_only: bool, options: tuple[Option, ...]) -> None:
    """Declaration errors of `action(options=...)`, raised where the action is defined."""
    if not options:
        return
    where = f"action {fn.__qualname__}"
    if not read_only:
        raise TypeError(f"{where}: options are for read-only actions; a writing action's inputs "
                        "belong in its config (--config.<field>)")
    params = inspect.signature(fn).parameters
    seen = set()
    for opt in options:
        if not isinstance(opt, Option):
            raise TypeError(f"{where}: options must be actions.Option, got {opt!r}")
        if opt.dest in ("config", "workdir", "force"):
            raise TypeError(f"{where}: option {opt.flags[0]} may not pass {opt.dest!r} (an argument of every action)")
        p = params.get(opt.dest)
        if p is None or list(params).index(opt.dest) < 2 or p.default is p.empty:
            raise TypeError(f"{where}: option {opt.flags[0]} needs a keyword parameter {opt.dest!r} with a default")
        if opt.dest in seen:
            raise TypeError(f"{where}: two options pass {opt.dest!r}")
        seen.add(opt.dest)


def _prepare(workdir: pathlib.Path, config: Any, force: bool) -> pathlib.Path:
    """`workdir.prepare` on process 0; the other processes of a run wait for it and check
    its outcome (no process hangs when process 0 refuses the workdir)."""
    import jax

    from jaxlab.core import distributed
    from jaxlab.core.errors import JaxlabError

    if jax.process_count() == 1:
        return workdir_lib.prepare(workdir, config, force=force)
    error = None
    if distributed.is_primary():
        try:
            workdir_lib.prepare(workdir, config, force=force)
        except JaxlabError as e:
            error = e
    distributed.sync("jaxlab-prepare")
    if error is not None:
        raise error
    return workdir_lib.check_prepared(workdir, config)


def collect(*fns: Callable) -> dict[str, Callable]:
    """`{cli name: action}` for `ACTIONS`; every entry must come from `@action`."""
    out = {}
    for fn in fns:
        if not hasattr(fn, "action_name"):
            raise TypeError(f"{fn.__qualname__} is not decorated with @action")
        out[fn.action_name] = fn
    return out


def _config_class(fn: Callable) -> type | None:
    import typing

    try:
        hints = typing.get_type_hints(fn)
    except Exception:
        return None
    params = list(fn.__code__.co_varnames[: fn.__code__.co_argcount])
    tp = hints.get(params[0]) if params else None
    return tp if isinstance(tp, type) else None
