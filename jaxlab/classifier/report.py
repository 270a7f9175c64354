"""Figures of a classifier run, drawn from its metrics.jsonl."""

from __future__ import annotations

import pathlib

from jaxlab.core import plotting
from jaxlab.core.metrics import merge_by_step, read_metrics

__all__ = ["plot_training"]


def plot_training(workdir: pathlib.Path) -> pathlib.Path:
    """`figures/training.png`: train and test loss (log scale) and test accuracy by step."""
    rows = merge_by_step(read_metrics(workdir))
    train_rows = [r for r in rows if "loss" in r]
    eval_rows = [r for r in rows if "eval_accuracy" in r]
    fig, (a, b) = plotting.subplots(1, 2, figsize=(9, 3.2))
    a.plot([r["step"] for r in train_rows], [r["loss"] for r in train_rows], label="train loss")
    a.plot([r["step"] for r in eval_rows], [r["eval_loss"] for r in eval_rows], "o-", label="test loss")
    a.set_yscale("log")
    a.set_xlabel("step")
    a.legend()
    b.plot([r["step"] for r in eval_rows], [r["eval_accuracy"] for r in eval_rows], "o-")
    b.set_xlabel("step")
    b.set_ylabel("test accuracy")
    b.grid(alpha=0.3)
    return plotting.save_figure(fig, workdir, "training")
