"""Metric logging: JSON lines always, TensorBoard through tensorboardX when installed."""

from __future__ import annotations

import json
import math
import pathlib
from typing import Any, Mapping

import numpy as np

__all__ = ["MetricWriter", "read_metrics"]


def _scalar(v: Any) -> Any:
    a = np.asarray(v)
    if a.size != 1:
        return a.tolist()
    x = a.item()
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    return x


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
        self._file.write(json.dumps(row) + "\n")
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
