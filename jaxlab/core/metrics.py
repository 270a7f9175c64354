"""Metric logging: JSON lines always, TensorBoard through tensorboardX when installed."""

from __future__ import annotations

import json
import math
import os
import pathlib
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["MetricWriter", "read_metrics", "merge_by_step", "truncate_after", "append_jsonl", "jsonable"]


def jsonable(x: Any) -> Any:
    """`x` with NumPy/JAX values as Python ones and non-finite floats as None.

    JSON has no NaN or Infinity; Python's `json` writes them anyway (`NaN`), which strict
    parsers reject. Every JSON file jaxlab writes goes through this.
    """
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, (bool, int, str)) or x is None:
        return x
    if isinstance(x, np.generic) or hasattr(x, "__array__"):
        a = np.asarray(x)
        return jsonable(a.item() if a.ndim == 0 else a.tolist())
    return x


def _scalar(v: Any) -> Any:
    a = np.asarray(v)
    return jsonable(a.item() if a.size == 1 else a.tolist())


def append_jsonl(path: str | pathlib.Path, row: Mapping[str, Any]) -> None:
    """Appends one JSON object as a line (process 0 only)."""
    import jax

    if jax.process_index() != 0:
        return
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(jsonable(dict(row)), allow_nan=False) + "\n")


def truncate_after(path: str | pathlib.Path, step: int, key: str = "step") -> int:
    """Drops the rows of a JSONL file whose `key` is above `step`; returns how many.

    A run resumed from the checkpoint of step k logs steps after k again; dropping them
    first keeps one row per step. The file is replaced atomically.
    """
    import jax

    path = pathlib.Path(path)
    if not path.exists() or jax.process_index() != 0:
        return 0
    rows = read_metrics(path)
    keep = [r for r in rows if int(r.get(key, 0)) <= step]
    raw = path.read_text(encoding="utf-8")
    if len(keep) == len(rows) and (not raw or raw.endswith("\n")):
        return 0
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("".join(json.dumps(r, allow_nan=False) + "\n" for r in keep), encoding="utf-8")
    os.replace(tmp, path)
    return len(rows) - len(keep)


def merge_by_step(rows: list[dict]) -> list[dict]:
    """One row per step, in step order; later rows' keys win (train and eval rows of a
    step are written separately and merged here)."""
    by_step: dict[int, dict] = {}
    for r in rows:
        by_step.setdefault(int(r["step"]), {}).update(r)
    return [by_step[s] for s in sorted(by_step)]


class MetricWriter:
    """Appends `{"step": s, **metrics}` lines to `workdir/metrics.jsonl`.

    When `tensorboardX` is importable (the `tb` extra) scalars also go to
    `workdir/tb/`. Only process 0 writes.
    """

    def __init__(self, workdir: str | pathlib.Path, *, tensorboard: bool = True, filename: str = "metrics.jsonl"):
        import jax

        self.active = jax.process_index() == 0
        self.path = pathlib.Path(workdir) / filename
        self._tb = None
        if not self.active:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a", encoding="utf-8")
        if tensorboard:
            try:
                from tensorboardX import SummaryWriter
            except ImportError:
                SummaryWriter = None
            if SummaryWriter is not None:
                self._tb = SummaryWriter(str(pathlib.Path(workdir) / "tb"))

    def write(self, step: int, metrics: Mapping[str, Any]) -> None:
        if not self.active:
            return
        row = {"step": int(step)}
        row.update({k: _scalar(v) for k, v in metrics.items()})
        self._file.write(json.dumps(row, allow_nan=False) + "\n")
        self._file.flush()
        if self._tb is not None:
            for k, v in row.items():
                if k != "step" and isinstance(v, (int, float)):
                    self._tb.add_scalar(k, v, int(step))

    def close(self) -> None:
        if not self.active:
            return
        self._file.close()
        if self._tb is not None:
            self._tb.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def read_metrics(path: str | pathlib.Path) -> list[dict]:
    """Reads a metrics.jsonl file; a torn last line (killed run) is skipped."""
    path = pathlib.Path(path)
    if path.is_dir():
        path = path / "metrics.jsonl"
    rows = []
    if not path.exists():
        return rows
    lines = path.read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if i == len(lines) - 1:
                continue
            raise ValueError(f"{path}:{i + 1}: not a JSON object: {line[:80]!r}") from None
    return rows
