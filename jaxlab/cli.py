"""The `jaxlab` command line.

    jaxlab list
    jaxlab <method> --help
    jaxlab <method> <action> [--config VARIANT|path.py[:VARIANT]] [--workdir DIR] [--force]
                             [--config.a.b=value ...]

Methods are discovered, not registered: every sub-package `jaxlab/<method>/` with a
`run.py` that defines `ACTIONS = {"name": fn(config, workdir)}` and a `configs.py` with
`get_config(variant)` is a method. Adding one never edits this file.
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
from typing import Sequence

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
                raise SystemExit(f"jaxlab: error: {arg} needs a value (--config.key=value)")
        else:
            rest.append(arg)
        i += 1
    return rest, overrides


def _method_parser(method: str, actions: dict) -> argparse.ArgumentParser:
    lines = []
    for name, fn in actions.items():
        doc = (fn.__doc__ or "").strip().splitlines()
        lines.append(f"  {name:<16} {doc[0] if doc else ''}")
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
                        "for read-only actions the run's own config.json by default")
    p.add_argument("--workdir", default=None, help="run directory (default: runs/<method>-<action>)")
    p.add_argument("--force", action="store_true",
                   help="move a previous run of a different config aside into old-<time>/")
    p.add_argument("--distributed", action="store_true",
                   help="call jax.distributed.initialize() first (multi-host)")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    return p


def run_method(method: str, argv: Sequence[str]) -> int:
    from jaxlab.core import config as config_lib
    from jaxlab.core import runtime
    from jaxlab.core import workdir as workdir_lib

    if os.environ.get("JAXLAB_TUNE_ALLOCATOR", "1") != "0":
        runtime.tune_host_allocator()
    try:
        run_mod = importlib.import_module(f"jaxlab.{method}.run")
        cfg_mod = importlib.import_module(f"jaxlab.{method}.configs")
    except ImportError as e:
        print(f"jaxlab: method {method!r} cannot be imported: {e}", file=sys.stderr)
        return 2
    actions = getattr(run_mod, "ACTIONS", {})
    rest, overrides = _split_overrides(argv)
    parser = _method_parser(method, actions)
    args = parser.parse_args(rest)
    fn = actions[args.action]
    read_only = getattr(fn, "read_only", False)
    if args.distributed:
        import jax

        jax.distributed.initialize()
    if args.workdir is None:
        if read_only:
            parser.error(f"'{args.action}' needs --workdir (the run to read)")
        args.workdir = f"runs/{method}-{args.action}"
    workdir = pathlib.Path(args.workdir)
    try:
        if args.config is None and read_only:
            default_cls = type(cfg_mod.get_config("default"))
            config = workdir_lib.load_config(workdir, default_cls)
        else:
            config = config_lib.resolve(args.config, cfg_mod.get_config)
        config = config_lib.override(config, overrides)
        if args.print_config:
            print(config_lib.to_json(config))
            return 0
        if not read_only:
            workdir_lib.prepare(workdir, config, force=args.force)
    except (config_lib.ConfigError, workdir_lib.WorkdirError) as e:
        print(f"jaxlab {method} {args.action}: error: {e}", file=sys.stderr)
        return 2
    from jaxlab.core.checkpoint import CheckpointError
    from jaxlab.core.train import NonFiniteError

    try:
        result = fn(config, workdir)
    except (config_lib.ConfigError, workdir_lib.WorkdirError, CheckpointError) as e:
        print(f"jaxlab {method} {args.action}: error: {e}", file=sys.stderr)
        return 2
    except NonFiniteError as e:
        print(f"jaxlab {method} {args.action}: stopped: {e}", file=sys.stderr)
        return 1
    if result is not None:
        print(json.dumps(result, indent=2, sort_keys=True, default=str))
    return 0


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
