"""Figures and tables of CoditT5 runs.

* `plot_training(workdir)`: training and validation loss of every stage of one run.
* Experiments 1-3 over the runs of `experiments/coditt5/run_experiments.sh`: `collect_runs`,
  `experiment_tables` (means with 95% intervals, paired differences by seed) and
  `plot_experiments`.
"""

from __future__ import annotations

import json
import pathlib

import numpy as np

from jaxlab.core import metrics as metrics_lib
from jaxlab.core import plotting
from jaxlab.core.stats import fmt_ci, mean_ci, paired_diff

__all__ = ["plot_training", "collect_runs", "experiment_tables", "plot_experiments"]


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


METRICS = ("xmatch", "bleu", "sari", "gleu", "copy", "oracle_xmatch")
MODELS = ("plan", "plain", "rerank_plan", "rerank_plain")


def collect_runs(out: str | pathlib.Path) -> list[dict]:
    """The evaluations of the runs `OUT/<task>-<objective>-s<seed>` of
    `experiments/coditt5/run_experiments.sh`: one row per run with task, objective, seed and
    its `evaluation.json`."""
    rows = []
    for d in sorted(pathlib.Path(out).iterdir()):
        ev = d / "evaluation.json"
        parts = d.name.rsplit("-", 2)
        if not ev.exists() or len(parts) != 3 or not parts[2].startswith("s"):
            continue
        rows.append({"task": parts[0], "objective": parts[1], "seed": int(parts[2][1:]),
                     "evaluation": json.loads(ev.read_text())})
    return rows


def _values(rows: list[dict], objective: str, model: str, metric: str) -> dict[int, float]:
    return {r["seed"]: r["evaluation"][model][metric] for r in rows
            if r["objective"] == objective and metric in r["evaluation"].get(model, {})}


def experiment_tables(rows: list[dict]) -> str:
    """Markdown tables of experiments 1-3: every metric of every (pretraining, model) as a mean
    over seeds with its 95% t-interval, then the paired differences (same seed, same test set):
    edit plan - plain generation, edit-aware - span pretraining, and reranked - the better
    single model of the pair."""
    objectives = sorted({r["objective"] for r in rows}, key=lambda o: ("edit", "span", "none").index(o))
    seeds = sorted({r["seed"] for r in rows})
    out = [f"Seeds: {', '.join(map(str, seeds))}; test examples per seed: "
           f"{', '.join(str(r['evaluation']['test_examples']) for r in rows if r['objective'] == objectives[0])}.", "",
           "| pretraining | model | " + " | ".join(METRICS) + " |", "|---|---|" + "---|" * len(METRICS)]
    for o in objectives:
        for m in MODELS:
            cells = [fmt_ci(*mean_ci(list(_values(rows, o, m, k).values()))[:2], digits=1) for k in METRICS]
            out.append(f"| {o} | {m} | " + " | ".join(cells) + " |")

    def paired(a: dict, b: dict) -> str:
        common = sorted(set(a) & set(b))
        return fmt_ci(*paired_diff([a[s] for s in common], [b[s] for s in common])[:2], digits=1)

    keys = ("xmatch", "bleu", "sari", "gleu", "copy")
    out += ["", "Paired differences (95% t-interval over seeds):", "",
            "| comparison | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]
    for o in objectives:
        out.append(f"| {o}: plan - plain | " + " | ".join(
            paired(_values(rows, o, "plan", k), _values(rows, o, "plain", k)) for k in keys) + " |")
    for m in ("plan", "plain", "rerank_plan"):
        if {"edit", "span"} <= set(objectives):
            out.append(f"| {m}: edit - span pretraining | " + " | ".join(
                paired(_values(rows, "edit", m, k), _values(rows, "span", m, k)) for k in keys) + " |")
    for o in objectives:
        for m in ("plan", "plain"):
            out.append(f"| {o}: rerank_{m} - {m} | " + " | ".join(
                paired(_values(rows, o, f"rerank_{m}", k), _values(rows, o, m, k)) for k in keys) + " |")
    return "\n".join(out)


def plot_experiments(rows: list[dict], workdir: str | pathlib.Path, name: str = "experiments") -> pathlib.Path:
    """`figures/<name>.png`: xMatch and SARI of each (pretraining, model), seed means with
    95% intervals and the seeds as dots."""
    objectives = sorted({r["objective"] for r in rows}, key=lambda o: ("edit", "span", "none").index(o))
    fig, axes = plotting.subplots(1, 2, figsize=(9, 3.2))
    width = 0.8 / len(objectives)
    for ax, metric in zip(axes, ("xmatch", "sari")):
        for j, o in enumerate(objectives):
            for i, m in enumerate(MODELS):
                vals = list(_values(rows, o, m, metric).values())
                mean, half, _ = mean_ci(vals)
                x = i + (j - (len(objectives) - 1) / 2) * width
                ax.bar(x, mean, width, yerr=0 if np.isnan(half) else half, color=f"C{j}", alpha=0.7,
                       label=f"{o} pretraining" if i == 0 else None)
                ax.plot([x] * len(vals), vals, "k.", ms=3)
        ax.set_xticks(range(len(MODELS)), [m.replace("_", "\n") for m in MODELS], fontsize=8)
        ax.set_ylabel(metric)
    axes[0].legend(fontsize=7)
    return plotting.save_figure(fig, workdir, name)
