"""Run directories: config.json, summary.json, figures/, and the `--force` rule.

Every action of every method writes into one workdir:

    config.json      the full config the run used
    metrics.jsonl    one JSON object per logged step (training actions)
    checkpoints/     orbax steps (training actions)
    figures/*.png    plots
    summary.json     final numbers and how they were made (versions, commit, devices, seed)

Starting a run on a workdir that holds a run of a *different* config is an error
(nothing is overwritten) unless `force=True`, which moves the old run aside into
`old-<time>/` inside the workdir.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import pathlib
import platform
import shutil
import subprocess
import tempfile
from typing import Any

from jaxlab.core import config as config_lib

__all__ = [
    "WorkdirError",
    "prepare",
    "write_json",
    "write_summary",
    "read_summary",
    "load_config",
    "save_figure",
    "git_commit",
    "environment",
]


class WorkdirError(RuntimeError):
    """A workdir holds something that conflicts with the requested run."""


def write_json(path: str | pathlib.Path, obj: Any) -> None:
    """Writes JSON atomically (temporary file + rename), so readers never see half a file."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=2, sort_keys=True, default=_json_default)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _json_default(x: Any) -> Any:
    import numpy as np

    if dataclasses.is_dataclass(x):
        return dataclasses.asdict(x)
    if isinstance(x, (np.generic,)):
        return x.item()
    if hasattr(x, "tolist"):
        return x.tolist()
    if isinstance(x, pathlib.Path):
        return str(x)
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")


def _move_aside(workdir: pathlib.Path) -> pathlib.Path:
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    dest = workdir / f"old-{stamp}"
    n = 0
    while dest.exists():
        n += 1
        dest = workdir / f"old-{stamp}-{n}"
    dest.mkdir()
    for p in workdir.iterdir():
        if p == dest or p.name.startswith("old-"):
            continue
        shutil.move(str(p), str(dest / p.name))
    return dest


def prepare(workdir: str | pathlib.Path, config: Any, force: bool = False) -> pathlib.Path:
    """Creates `workdir` for a run of `config`, or checks that it may resume there.

    Returns the workdir as a path. If `workdir/config.json` exists and differs from
    `config`, raises `WorkdirError` naming the first differing field, unless `force`,
    which moves the previous run into `workdir/old-<time>/` first.
    """
    workdir = pathlib.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "config.json"
    new = config_lib.to_dict(config)
    if path.exists():
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            old = {"<unreadable config.json>": str(e)}
        if old != new:
            if not force:
                diff = _first_difference(old, new)
                raise WorkdirError(
                    f"{workdir} holds a run of a different config ({diff}); use another "
                    "--workdir, or --force to move the old run aside into old-<time>/")
            moved = _move_aside(workdir)
            print(f"moved the previous run in {workdir} to {moved}")
    elif force and any(workdir.iterdir()):
        _move_aside(workdir)
    write_json(path, new)
    (workdir / "figures").mkdir(exist_ok=True)
    return workdir


def _first_difference(old: Any, new: Any, prefix: str = "") -> str:
    if isinstance(old, dict) and isinstance(new, dict):
        for k in sorted(set(old) | set(new)):
            if k not in old:
                return f"'{prefix}{k}' is new"
            if k not in new:
                return f"'{prefix}{k}' is not in this config"
            if old[k] != new[k]:
                return _first_difference(old[k], new[k], f"{prefix}{k}.")
        return "no difference"
    return f"'{prefix.rstrip('.')}' was {old!r}, now {new!r}"


def load_config(workdir: str | pathlib.Path, cls: type) -> Any:
    """The config a run in `workdir` used, as an instance of `cls`."""
    path = pathlib.Path(workdir) / "config.json"
    if not path.exists():
        raise WorkdirError(f"{path} does not exist: {workdir} is not a jaxlab run directory")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise WorkdirError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None
    try:
        return config_lib.from_dict(cls, data)
    except config_lib.ConfigError as e:
        raise WorkdirError(f"{path}: {e}") from None


def git_commit() -> str | None:
    """The commit of the jaxlab checkout, when it is one."""
    here = pathlib.Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
        capture_output=True, text=True, timeout=5).stdout.strip()
    return out.stdout.strip() + ("-dirty" if dirty else "")


def environment() -> dict:
    """Versions and devices, for summary.json."""
    import flax
    import jax
    import optax

    import jaxlab

    devices = jax.devices()
    return {
        "jaxlab_version": jaxlab.__version__,
        "git_commit": git_commit(),
        "jax_version": jax.__version__,
        "flax_version": flax.__version__,
        "optax_version": optax.__version__,
        "python": platform.python_version(),
        "platform": devices[0].platform,
        "device_kind": devices[0].device_kind,
        "num_devices": len(devices),
        "num_processes": jax.process_count(),
        "host": platform.node(),
        "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def write_summary(workdir: str | pathlib.Path, results: dict, config: Any = None, seed: int | None = None) -> dict:
    """Writes `workdir/summary.json`: the final numbers and how they were made."""
    summary = {"results": results, "environment": environment(), "seed": seed}
    if config is not None:
        summary["config"] = config_lib.to_dict(config) if dataclasses.is_dataclass(config) else config
    write_json(pathlib.Path(workdir) / "summary.json", summary)
    return summary


def read_summary(workdir: str | pathlib.Path) -> dict:
    path = pathlib.Path(workdir) / "summary.json"
    if not path.exists():
        raise WorkdirError(f"{path} does not exist (the run has not finished)")
    return json.loads(path.read_text(encoding="utf-8"))


def save_figure(fig: Any, workdir: str | pathlib.Path, name: str, dpi: int = 120) -> pathlib.Path:
    """Saves a matplotlib figure as `workdir/figures/<name>.png` and closes it."""
    import matplotlib.pyplot as plt

    path = pathlib.Path(workdir) / "figures" / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return path
