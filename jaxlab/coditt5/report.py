"""Figures of a CoditT5 run: training and validation loss of every stage."""

from __future__ import annotations

import pathlib

from jaxlab.core import metrics as metrics_lib
from jaxlab.core import plotting

__all__ = ["plot_training"]


def plot_training(workdir: str | pathlib.Path) -> pathlib.Path | None:
    """`figures/training.png`: loss per step of each stage (train solid, validation dashed)."""
    workdir = pathlib.Path(workdir)
    stages = [s for s in ("pretrain", "finetune-plan", "finetune-plain") if (workdir / s / "metrics.jsonl").exists()]
    if not stages:
        return None
    fig, ax = plotting.subplots(1, 1, figsize=(6, 3.5))
    for s in stages:
        rows = metrics_lib.merge_by_step(metrics_lib.read_metrics(workdir / s / "metrics.jsonl"))
        tr = [(r["step"], r["loss"]) for r in rows if "loss" in r]
        ev = [(r["step"], r["eval_loss"]) for r in rows if "eval_loss" in r]
        if tr:
            line, = ax.plot(*zip(*tr), label=f"{s} train")
            if ev:
                ax.plot(*zip(*ev), "--", color=line.get_color(), label=f"{s} valid")
    ax.set_xlabel("step")
    ax.set_ylabel("token cross-entropy")
    ax.legend(fontsize=7)
    return plotting.save_figure(fig, workdir, "training")
