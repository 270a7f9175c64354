"""Figures of a VectorNet run: training curves and predicted vs true trajectories over the map."""

from __future__ import annotations

import pathlib

import numpy as np

from jaxlab.core import metrics as metrics_lib
from jaxlab.core import plotting
from jaxlab.vectornet.polylines import AGENT, LANE, TARGET

__all__ = ["plot_training", "plot_predictions"]


def plot_training(workdir: str | pathlib.Path) -> pathlib.Path:
    """`figures/training.png`: training loss terms and validation ADE/FDE against steps."""
    rows = metrics_lib.merge_by_step(metrics_lib.read_metrics(pathlib.Path(workdir) / "metrics.jsonl"))
    fig, (ax1, ax2) = plotting.subplots(1, 2, figsize=(9, 3.5))
    for key in ("traj_loss", "node_loss"):
        pts = [(r["step"], r[key]) for r in rows if key in r]
        if pts:
            ax1.plot(*zip(*pts), label=key)
    ax1.set_xlabel("step")
    ax1.set_yscale("log")
    ax1.legend()
    for key in ("eval_ade", "eval_fde", "ade"):
        pts = [(r["step"], r[key]) for r in rows if key in r]
        if pts:
            ax2.plot(*zip(*pts), marker="o" if key.startswith("eval") else None, label=key)
    ax2.set_xlabel("step")
    ax2.set_ylabel("metres")
    ax2.legend()
    return plotting.save_figure(fig, workdir, "training")


def plot_predictions(workdir: str | pathlib.Path, data: dict, pred: np.ndarray, baseline: np.ndarray,
                     num: int, name: str = "predictions") -> pathlib.Path:
    """`figures/<name>.png`: the first `num` scenes in the target frame: lanes, other agents'
    histories, the target's history, its true future, VectorNet's and constant velocity's."""
    num = min(num, len(pred))
    fig, axes = plotting.subplots(1, num, figsize=(4 * num, 4), squeeze=False)
    for i, ax in enumerate(axes[0]):
        v, m, kind = data["vectors"][i], data["vec_mask"][i], data["kind"][i]
        for p in range(len(kind)):
            rows = v[p][m[p]]
            if not len(rows):
                continue
            xy = np.concatenate([rows[:, 0:2], rows[-1:, 2:4]])
            style = {LANE: dict(color="0.75", lw=1), AGENT: dict(color="tab:purple", lw=1),
                     TARGET: dict(color="k", lw=2)}[int(kind[p])]
            ax.plot(xy[:, 0], xy[:, 1], **style)
        fut = data["future"][i][data["future_mask"][i]]
        ax.plot(fut[:, 0], fut[:, 1], color="tab:green", lw=2, label="truth")
        ax.plot(pred[i, :, 0], pred[i, :, 1], color="tab:red", lw=2, label="VectorNet")
        ax.plot(baseline[i, :, 0], baseline[i, :, 1], color="tab:blue", ls="--", label="constant velocity")
        ax.set_xlim(-40, 50)
        ax.set_ylim(-45, 45)
        ax.set_aspect("equal")
        ax.set_title(f"scene {i}")
    axes[0][0].legend(loc="lower left", fontsize=7)
    return plotting.save_figure(fig, workdir, name)


def ablation_table(runs: dict[str, list[str | pathlib.Path]]) -> str:
    """Markdown table of test metrics, mean +- std over the seeds of each named group of runs
    (from their summary.json), with the constant-velocity baseline of the first group."""
    import json

    keys = ("de1", "de2", "de3", "ade", "miss_rate", "turn_de3", "turn_ade")
    lines = ["| run | seeds | " + " | ".join(keys) + " |", "|---" * (len(keys) + 2) + "|"]

    def row(name, results):
        cells = []
        for k in keys:
            vals = np.array([r[k] for r in results if k in r])
            cells.append(f"{vals.mean():.2f} +- {vals.std(ddof=1) if len(vals) > 1 else 0:.2f}" if len(vals) else "-")
        return f"| {name} | {len(results)} | " + " | ".join(cells) + " |"

    first = None
    for name, dirs in runs.items():
        summaries = [json.loads((pathlib.Path(d) / "summary.json").read_text())["results"] for d in dirs]
        first = first or summaries
        lines.append(row(name, [s["test"] for s in summaries]))
    lines.append(row("constant velocity", [s["test_constant_velocity"] for s in first]))
    for key, name in (("test_nearest_neighbour", "nearest training scene"),
                      ("test_nearest_neighbour_k6", "nearest 6 training scenes (min over 6)")):
        if all(key in s for s in first):
            lines.append(row(name, [s[key] for s in first]))
    k6 = [s.get("test_nearest_neighbour_k6", {}) for s in first]
    if all("p_fde" in r for r in k6):
        sd = (lambda v: np.std(v, ddof=1) if len(v) > 1 else 0.0)  # as the table's rows
        cells = [f"{n} {np.mean([r[k] for r in k6]):.2f} +- {sd([r[k] for r in k6]):.2f}"
                 for k, n in (("fde", "minFDE"), ("p_fde", "p-minFDE"), ("brier_fde", "brier-minFDE"),
                              ("p_miss", "p-miss rate"))]
        lines += ["", "nearest 6 training scenes with their probabilities (`baselines.guess_probs`): "
                  + ", ".join(cells)]
    return "\n".join(lines)


def cost_table(runs: dict) -> str:
    """Markdown table of parameters and MACs per scene (Table 4) of the models of named runs
    (a run directory or a `VectorNetConfig` each):
    the ConvNet's network without rendering (as the paper counts it), VectorNet's whole
    inference network on one scene of the run's padded layout (every polyline slot counted,
    so an upper bound of the paper's per-polyline count), from their jaxprs (`core.macs`)."""
    import jax
    import jax.numpy as jnp

    from jaxlab.core import workdir as workdir_lib
    from jaxlab.core.macs import count_macs
    from jaxlab.vectornet import training
    from jaxlab.vectornet.configs import VectorNetConfig

    lines = ["| model | parameters (inference) | MACs per scene |", "|---|---|---|"]
    for name, d in runs.items():
        config = d if isinstance(d, VectorNetConfig) else workdir_lib.load_config(d, VectorNetConfig)
        model = training.make_model(config, aux=False)
        args = training.dummy_inputs(config)
        shapes = jax.eval_shape(model.init, jax.random.key(0), *args)
        params = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
        n = sum(x.size for x in jax.tree.leaves(params))
        if config.model.name == "convnet":
            image = jax.eval_shape(lambda *a: model.apply(params, *a[:2], method="render"), *args)
            macs = count_macs(lambda x: model.apply(params, x, method="network"), jnp.zeros(image.shape))
        else:
            macs = count_macs(lambda *a: model.apply(params, *a), *args)
        lines.append(f"| {name} | {n:,} | {macs / 1e6:.2f} M |")
    return "\n".join(lines)
