"""Figures of a CORAL run: the training curves from metrics.jsonl."""

from __future__ import annotations

import pathlib

from jaxlab.core import metrics as metrics_lib
from jaxlab.core import plotting


def plot_training(workdir: str | pathlib.Path) -> pathlib.Path:
    """figures/training.png: link-prediction loss and AUC per step, test top-3 and MRR at evaluations."""
    workdir = pathlib.Path(workdir)
    rows = metrics_lib.merge_by_step(metrics_lib.read_metrics(workdir / "metrics.jsonl"))
    fig, (a, b) = plotting.subplots(1, 2, figsize=(9, 3.2))
    tr = [r for r in rows if "loss" in r]
    a.plot([r["step"] for r in tr], [r["loss"] for r in tr], label="loss")
    a.plot([r["step"] for r in tr], [r.get("auc", float("nan")) for r in tr], label="train AUC")
    a.set_xlabel("step")
    a.legend()
    ev = [r for r in rows if "eval_top3" in r]
    b.plot([r["step"] for r in ev], [r["eval_top3"] for r in ev], "o-", label="test top-3")
    b.plot([r["step"] for r in ev], [r["eval_mrr"] for r in ev], "s-", label="test MRR")
    b.set_xlabel("step")
    b.legend()
    return plotting.save_figure(fig, workdir, "training")


def interval(values, confidence: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): the mean and its Student-t confidence interval over seeds."""
    import numpy as np
    from scipy import stats

    v = np.asarray(values, np.float64)
    m = float(v.mean())
    if len(v) < 2:
        return m, m, m
    half = float(stats.t.ppf(0.5 + confidence / 2, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v)))
    return m, m - half, m + half


def seed_table(rows: dict[str, list[dict]], metrics: tuple[str, ...] = ("top1", "top3", "top5", "mrr"),
               label: str = "recommender") -> str:
    """A markdown table, one row per name, each cell `mean [low, high]` (95% t-interval over the
    per-seed dicts of the row)."""
    n = {len(v) for v in rows.values()}
    lines = [f"| {label} | " + " | ".join(metrics) + " |", "|---" * (len(metrics) + 1) + "|"]
    for name, runs in rows.items():
        cells = []
        for m in metrics:
            mean, lo, hi = interval([r[m] for r in runs])
            cells.append(f"{mean:.3f} [{lo:.3f}, {hi:.3f}]")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append(f"\n(n = {'/'.join(str(x) for x in sorted(n))} seeds; mean [95% t-interval])")
    return "\n".join(lines)
