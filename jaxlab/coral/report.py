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
