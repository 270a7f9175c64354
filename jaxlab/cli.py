"""The `jaxlab` command line.

    jaxlab list
    jaxlab <method> --help
    jaxlab <method> <action> [--config VARIANT|path.py[:VARIANT]] [--workdir DIR] [--force]
                             [--config.a.b=value ...] [options of the action]

Methods are discovered, not registered: every sub-package `jaxlab/<method>/` with a
`run.py` that defines `ACTIONS = actions.collect(...)` (functions declared with
`jaxlab.core.actions.action`) and a `configs.py` with `get_config(variant)` is a method.
Adding one never edits this file. A read-only action may declare its own options
(`actions.Option`); `jaxlab <method> --help` lists them under the action's name.

Expected errors (`jaxlab.core.errors.JaxlabError`: configs, data formats, workdirs,
checkpoints; and OS errors) are one line on stderr with exit status 2, a diverged run
exits 1; `--debug` shows the traceback. Results alone go to stdout, as strict JSON.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import pathlib
import pkgutil
import sys
import traceback
from collections.abc import Sequence

import jaxlab

__all__ = ["main", "discover_methods"]

_NOT_METHODS = {"core", "nn", "data", "graph", "nas"}


def discover_methods() -> dict[str, str]:
    """`{method: description}` for every package of jaxlab that has a run.py."""
    found = {}
    for info in pkgutil.iter_modules(jaxlab.__path__):
        if not info.ispkg or info.name in _NOT_METHODS:
            continue
        # Look for the file rather than importing: a method that fails to import must
        # not take the whole command line down with it.
        if any((pathlib.Path(p) / info.name / "run.py").is_file() for p in jaxlab.__path__):
            found[info.name] = jaxlab.METHODS.get(info.name, "reference method")
    return found


def _list() -> int:
    available = discover_methods()
    rows = [("classifier", "reference", "Small CNN on scikit-learn digits (the template)")]
    for name, paper in jaxlab.METHODS.items():
        rows.append((name, "available" if name in available else "planned", paper))
    for name in sorted(set(available) - set(jaxlab.METHODS) - {"classifier"}):
        rows.append((name, "available", available[name]))
    width = max(len(r[0]) for r in rows)
    print(f"{'method':<{width}}  {'status':<9}  paper")
    for name, status, paper in rows:
        print(f"{name:<{width}}  {status:<9}  {paper}")
    return 0


def _split_overrides(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """Separates `--config.a.b=v` / `--config.a.b v` from the other arguments."""
    rest, overrides = [], []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg.startswith("--config."):
            body = arg[len("--config."):]
            if "=" in body:
                overrides.append(body)
            elif i + 1 < len(argv):
                overrides.append(f"{body}={argv[i + 1]}")
                i += 1
            else:
                raise ValueError(f"{arg} needs a value (--config.key=value)")
        else:
            rest.append(arg)
        i += 1
    return rest, overrides


def _method_parser(method: str, actions: dict) -> argparse.ArgumentParser:
    lines = []
    for name, fn in actions.items():
        doc = (fn.__doc__ or "").strip().splitlines()
        tag = " (reads a run)" if getattr(fn, "read_only", False) else ""
        lines.append(f"  {name:<16} {doc[0] if doc else ''}{tag}")
    p = argparse.ArgumentParser(
        prog=f"jaxlab {method}",
        description=jaxlab.METHODS.get(method, "reference method"),
        epilog="actions:\n" + "\n".join(lines) + "\n\nOverride any config field with "
        "--config.<field>=<value> (e.g. --config.seed=1).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("action", choices=sorted(actions), help="what to run")
    p.add_argument("--config", default=None,
                   help="a variant (smoke, default, paper) or a file path.py[:variant]; "
                        "read-only actions (evaluate) always use the run's own config.json")
    p.add_argument("--workdir", default=None, help="run directory (default: runs/<method>-<action>)")
    p.add_argument("--force", action="store_true",
                   help="move a previous run of a different config aside into old-<time>/")
    p.add_argument("--distributed", action="store_true",
                   help="one of several processes of a run (multi-host): connect them with "
                        "jax.distributed.initialize() first; on a cluster JAX detects the settings")
    p.add_argument("--coordinator", default=None, metavar="HOST:PORT",
                   help="with --distributed: process 0's address (default: JAX_COORDINATOR_ADDRESS or detected)")
    p.add_argument("--num-processes", type=int, default=None, help="with --distributed: how many processes")
    p.add_argument("--process-id", type=int, default=None, help="with --distributed: this process's index")
    p.add_argument("--distributed-timeout", type=float, default=120.0, metavar="SECONDS",
                   help="with --distributed: how long to wait for every process to join (default 120)")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    p.add_argument("--debug", action="store_true", help="show the traceback of an error")
    _add_action_options(p, actions)
    return p


def _add_action_options(p: argparse.ArgumentParser, actions: dict) -> None:
    """One group of options per action that declares some (`actions.Option`). Their default is
    left out of the namespace, so that an option not given takes the action's own default and
    an option of another action can be told apart from one not given."""
    reserved = {a.dest for a in p._actions}
    for name, fn in actions.items():
        opts = getattr(fn, "options", ())
        if not opts:
            continue
        group = p.add_argument_group(f"options of {name}")
        for opt in opts:
            if opt.dest in reserved:
                raise TypeError(f"action {name}: option {opt.flags[0]} passes {opt.dest!r}, which the "
                                "command line already uses")
            kwargs = dict(opt.kwargs, default=argparse.SUPPRESS)
            try:
                group.add_argument(*opt.flags, **kwargs)
            except argparse.ArgumentError as e:
                raise TypeError(f"action {name}: option {opt.flags[0]}: {e}") from None
            reserved.add(opt.dest)


def _action_options(parser: argparse.ArgumentParser, args: argparse.Namespace, actions: dict) -> dict:
    """The options of `args.action` that were given, as keyword arguments; an option of
    another action is a usage error."""
    own = {o.dest for o in getattr(actions[args.action], "options", ())}
    for name, fn in actions.items():
        for opt in getattr(fn, "options", ()):
            if opt.dest not in own and hasattr(args, opt.dest):
                parser.error(f"{opt.flags[0]} is an option of '{name}', not of '{args.action}'")
    return {d: getattr(args, d) for d in sorted(own) if hasattr(args, d)}


def _fail(prefix: str, e: BaseException, debug: bool, status: int = 2) -> int:
    if debug:
        traceback.print_exception(e)
    print(f"{prefix}: {' '.join(str(e).split()) or type(e).__name__}", file=sys.stderr)
    return status


def run_method(method: str, argv: Sequence[str]) -> int:
    from jaxlab.core import config as config_lib
    from jaxlab.core import runtime
    from jaxlab.core import workdir as workdir_lib
    from jaxlab.core.errors import JaxlabError
    from jaxlab.core.metrics import jsonable

    if os.environ.get("JAXLAB_TUNE_ALLOCATOR", "1") != "0":
        runtime.tune_host_allocator()
    runtime.enable_compilation_cache()
    try:
        run_mod = importlib.import_module(f"jaxlab.{method}.run")
        cfg_mod = importlib.import_module(f"jaxlab.{method}.configs")
    except ImportError as e:
        print(f"jaxlab: method {method!r} cannot be imported: {e}", file=sys.stderr)
        return 2
    actions = getattr(run_mod, "ACTIONS", {})
    try:
        rest, overrides = _split_overrides(argv)
    except ValueError as e:
        print(f"jaxlab {method}: error: {e}", file=sys.stderr)
        return 2
    parser = _method_parser(method, actions)
    args = parser.parse_args(rest)
    fn = actions[args.action]
    options = _action_options(parser, args, actions)
    read_only = getattr(fn, "read_only", False)
    prefix = f"jaxlab {method} {args.action}"
    if not args.distributed and (args.coordinator or args.num_processes is not None or args.process_id is not None):
        parser.error("--coordinator, --num-processes and --process-id need --distributed")
    if args.distributed:
        from jaxlab.core import distributed

        try:
            distributed.initialize(args.coordinator, args.num_processes, args.process_id,
                                   timeout_s=args.distributed_timeout)
        except JaxlabError as e:
            return _fail(f"{prefix}: error", e, args.debug)
    if args.workdir is None:
        if read_only:
            parser.error(f"'{args.action}' needs --workdir (the run to read)")
        args.workdir = f"runs/{method}-{args.action}"
    workdir = pathlib.Path(args.workdir)
    config_cls = getattr(fn, "config_class", None) or type(cfg_mod.get_config("smoke"))
    try:
        if read_only:
            if args.config is not None or overrides:
                raise config_lib.ConfigError(
                    f"'{args.action}' reads the run's own {workdir / 'config.json'}; "
                    "--config and --config.<field> are not accepted here")
            config = workdir_lib.load_config(workdir, config_cls)
        else:
            config = config_lib.resolve(args.config, cfg_mod.get_config, expected=config_cls)
            config = config_lib.override(config, overrides)
        if args.print_config:
            print(config_lib.to_json(config))
            return 0
    except JaxlabError as e:
        return _fail(f"{prefix}: error", e, args.debug)
    from jaxlab.core.train import NonFiniteError

    try:
        result = fn(config, workdir, force=args.force, **options)
    except NonFiniteError as e:
        return _fail(f"{prefix}: stopped", e, args.debug, status=1)
    except JaxlabError as e:
        return _fail(f"{prefix}: error", e, args.debug)
    except OSError as e:
        where = f" ({e.filename})" if getattr(e, "filename", None) else ""
        return _fail(f"{prefix}: error{where}", e, args.debug)
    if result is not None and _is_primary():
        print(json.dumps(jsonable(result), indent=2, sort_keys=True, allow_nan=False, default=str))
    return 0


def _is_primary() -> bool:
    import jax

    return jax.process_index() == 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    methods = discover_methods()
    top = argparse.ArgumentParser(
        prog="jaxlab",
        description="jaxlab: JAX/Flax reimplementations of ten research methods.",
        epilog="commands:\n  list               the methods and their status\n"
               "  <method> <action>  run an action of a method; `jaxlab <method> --help` lists them\n\n"
               "methods: " + ", ".join(sorted(methods)),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    top.add_argument("--version", action="version", version=f"jaxlab {jaxlab.__version__}")
    top.add_argument("command", nargs="?", help="list, or a method name")
    if argv and argv[0] == "--version":
        print(f"jaxlab {jaxlab.__version__}")
        return 0
    if not argv or argv[0] in ("-h", "--help"):
        top.print_help()
        return 0
    command = argv[0]
    if command == "list":
        return _list()
    if command in methods:
        return run_method(command, argv[1:])
    if command in jaxlab.METHODS:
        print(f"jaxlab: {command} is planned but not implemented yet (see `jaxlab list`)", file=sys.stderr)
        return 2
    top.error(f"unknown command {command!r}; choose list or one of: {', '.join(sorted(methods))}")
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
