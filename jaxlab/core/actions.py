"""Declaring a method's actions: the one way every method exposes what it can do.

    @actions.action
    def train(config: FooConfig, workdir: pathlib.Path) -> dict:
        '''Trains ... (the first line is what `jaxlab foo --help` shows).'''

    @actions.action(read_only=True)
    def evaluate(config: FooConfig, workdir: pathlib.Path) -> dict:
        '''Evaluates the latest checkpoint of a run.'''

    ACTIONS = actions.collect(train, evaluate)

An action is called the same way from the command line and from Python,
`train(config, workdir, force=False)`: a writing action first prepares the workdir
(creates it, refuses a different config, writes config.json; see `workdir.prepare`);
a read-only action takes the run's own config.json when `config` is None.

`Loaded` is what every method's `load(workdir)` returns.
"""

from __future__ import annotations

import functools
import pathlib
import types
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from jaxlab.core import workdir as workdir_lib

__all__ = ["action", "collect", "Loaded"]


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


def action(fn: Callable | None = None, *, read_only: bool = False, name: str | None = None):
    """Marks `fn(config, workdir) -> dict` as a CLI action of its method.

    Args:
      read_only: the action reads a finished or interrupted run and writes no config
        (evaluate, report); `config=None` loads the run's own config.json.
      name: the command-line name (default: the function's name with `_` as `-`).
    """
    if fn is None:
        return functools.partial(action, read_only=read_only, name=name)
    if not (fn.__doc__ or "").strip():
        raise TypeError(f"action {fn.__qualname__} needs a docstring (its first line is the CLI help)")
    config_cls = _config_class(fn)

    @functools.wraps(fn)
    def run(config: Any, workdir: str | pathlib.Path, *, force: bool = False) -> Any:
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
        return fn(config, workdir)

    run.read_only = read_only
    run.action_name = name or fn.__name__.replace("_", "-")
    run.config_class = config_cls
    return run


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
