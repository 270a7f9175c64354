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
import sys
import tempfile
from typing import Any

from jaxlab.core import config as config_lib
from jaxlab.core.errors import JaxlabError

__all__ = [
    "WorkdirError",
    "prepare",
    "write_json",
    "write_summary",
    "update_summary",
    "stage_dir",
    "read_summary",
    "load_config",
    "save_figure",
    "git_commit",
    "environment",
]


class WorkdirError(JaxlabError, RuntimeError):
    """A workdir holds something that conflicts with the requested run."""


def _umask() -> int:
    """The process's umask, read without changing it where the OS allows (Linux)."""
    try:
        for line in pathlib.Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_json(path: str | pathlib.Path, obj: Any) -> None:
    """Writes strict JSON atomically (temporary file + rename), so readers never see half
    a file. Non-finite floats become `null` (JSON has no NaN); the file gets the mode the
    user's umask gives new files. In a multi-process run only process 0 writes."""
    from jaxlab.core import distributed
    from jaxlab.core.metrics import jsonable

    if not distributed.is_primary():
        return
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(jsonable(json.loads(json.dumps(obj, default=_json_default))),
                      indent=2, sort_keys=True, allow_nan=False)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text + "\n")
        os.chmod(tmp, 0o666 & ~_umask())
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


def _started(workdir: pathlib.Path) -> bool:
    """Whether a run in `workdir` got past its setup (wrote anything but its config)."""
    for p in workdir.iterdir():
        if p.name in ("config.json", "figures") or p.name.startswith(("old-", ".")):
            continue
        return True
    figures = workdir / "figures"
    return figures.is_dir() and any(figures.iterdir())


def prepare(workdir: str | pathlib.Path, config: Any, force: bool = False) -> pathlib.Path:
    """Creates `workdir` for a run of `config`, or checks that it may resume there.

    Returns the workdir as a path. If `workdir/config.json` exists and differs from
    `config`, raises `WorkdirError` naming the first differing field, unless `force`,
    which moves the previous run into `workdir/old-<time>/` first, or unless the previous
    attempt never started (nothing but its config.json was written: e.g. its data path
    was wrong), whose config is then simply replaced. Messages go to stderr.
    """
    workdir = pathlib.Path(workdir)
    try:
        if workdir.exists() and not workdir.is_dir():
            raise WorkdirError(f"--workdir {workdir} exists and is not a directory")
        workdir.mkdir(parents=True, exist_ok=True)
        path = workdir / "config.json"
        new = config_lib.to_dict(config)
        if path.exists():
            try:
                old = json.loads(path.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                old = {"<unreadable config.json>": str(e)}
            if old != new:
                if force:
                    moved = _move_aside(workdir)
                    print(f"moved the previous run in {workdir} to {moved}", file=sys.stderr)
                elif _started(workdir):
                    diff = _first_difference(old, new)
                    raise WorkdirError(
                        f"{workdir} holds a run of a different config ({diff}); use another "
                        "--workdir, or --force to move the old run aside into old-<time>/")
                else:
                    print(f"replacing the config of {workdir}: its previous run never started "
                          f"({_first_difference(old, new)})", file=sys.stderr)
        elif force and any(workdir.iterdir()):
            moved = _move_aside(workdir)
            print(f"moved the previous contents of {workdir} to {moved}", file=sys.stderr)
        write_json(path, new)
        (workdir / "figures").mkdir(exist_ok=True)
    except OSError as e:
        raise WorkdirError(f"cannot use --workdir {workdir}: {e.strerror or e}") from None
    return workdir


def check_prepared(workdir: str | pathlib.Path, config: Any) -> pathlib.Path:
    """For the other processes of a multi-process run, after process 0's `prepare`:
    `workdir/config.json` must hold `config` (else process 0 refused the workdir)."""
    workdir = pathlib.Path(workdir)
    path = workdir / "config.json"
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise WorkdirError(f"process 0 did not prepare {workdir} ({path}: {e})") from None
    if old != config_lib.to_dict(config):
        raise WorkdirError(f"{path} holds another config than this process's "
                           f"({_first_difference(old, config_lib.to_dict(config))}); see process 0's error")
    return workdir


def stage_dir(workdir: str | pathlib.Path, name: str) -> pathlib.Path:
    """`workdir/<name>/`, the run directory of one stage of a multi-stage method.

    Each stage (a supernet, a retraining, a detector) keeps its own `checkpoints/` and
    `metrics.jsonl` there, so `fit` resumes every stage independently.
    """
    path = pathlib.Path(workdir) / name
    path.mkdir(parents=True, exist_ok=True)
    return path


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
        "time": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


def write_summary(workdir: str | pathlib.Path, results: dict, config: Any = None, seed: int | None = None) -> dict:
    """Writes `workdir/summary.json`: the final numbers and how they were made."""
    summary = {"results": results, "environment": environment(), "seed": seed}
    if config is not None:
        summary["config"] = config_lib.to_dict(config) if dataclasses.is_dataclass(config) else config
    write_json(pathlib.Path(workdir) / "summary.json", summary)
    return summary


def update_summary(workdir: str | pathlib.Path, section: str, results: dict, config: Any = None,
                   seed: int | None = None) -> dict:
    """Sets `results[section]` of `workdir/summary.json`, keeping the other sections.

    For methods with several actions on one workdir (train, attack, evaluate): each
    action writes its own section. Returns `results`.
    """
    path = pathlib.Path(workdir) / "summary.json"
    old = {}
    if path.exists():
        try:
            old = json.loads(path.read_text(encoding="utf-8")).get("results", {})
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
            old = {}
    old = old if isinstance(old, dict) else {}
    old[section] = results
    write_summary(workdir, old, config, seed=seed)
    return results


def read_summary(workdir: str | pathlib.Path) -> dict:
    path = pathlib.Path(workdir) / "summary.json"
    if not path.exists():
        raise WorkdirError(f"{path} does not exist (the run has not finished)")
    return json.loads(path.read_text(encoding="utf-8"))


def save_figure(fig: Any, workdir: str | pathlib.Path, name: str, dpi: int = 120) -> pathlib.Path:
    """Saves a matplotlib figure as `workdir/figures/<name>.png` and closes it."""
    from jaxlab.core import plotting

    return plotting.save_figure(fig, workdir, name, dpi=dpi)
