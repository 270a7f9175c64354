"""Figures of a video2stylegan run: training curves, sample grids, reconstruction strips, flicker,
control edits."""

from __future__ import annotations

import json
import pathlib
from collections.abc import Sequence

import numpy as np

from jaxlab.core import plotting
from jaxlab.core.metrics import merge_by_step, read_metrics

__all__ = ["plot_training", "plot_samples", "plot_strip", "plot_flicker", "plot_control", "control_table", "to_rgb"]


def to_rgb(x: np.ndarray) -> np.ndarray:
    """[-1, 1] images -> [0, 1] for display."""
    return np.clip((np.asarray(x) + 1) / 2, 0, 1)


def plot_training(stage: pathlib.Path, workdir: pathlib.Path, keys: tuple[str, ...], name: str) -> pathlib.Path:
    """`figures/<name>.png`: the given metrics of `stage/metrics.jsonl` by step."""
    rows = merge_by_step(read_metrics(stage))
    fig, axes = plotting.subplots(1, len(keys), figsize=(3.2 * len(keys), 3))
    axes = np.atleast_1d(axes)
    for ax, k in zip(axes, keys):
        pts = [(r["step"], r[k]) for r in rows if k in r]
        if pts:
            ax.plot(*zip(*pts))
        ax.set_title(k)
        ax.set_xlabel("step")
    return plotting.save_figure(fig, workdir, name)


def plot_samples(workdir: pathlib.Path, images: np.ndarray, name: str = "samples", cols: int = 8) -> pathlib.Path:
    """A grid of generated images `[N, R, R, 3]` in [-1, 1]."""
    n = len(images)
    rows = (n + cols - 1) // cols
    fig, axes = plotting.subplots(rows, cols, figsize=(1.2 * cols, 1.2 * rows))
    for i, ax in enumerate(np.atleast_1d(axes).ravel()):
        ax.axis("off")
        if i < n:
            ax.imshow(to_rgb(images[i]))
    return plotting.save_figure(fig, workdir, name)


def plot_strip(workdir: pathlib.Path, name: str, frames, per_frame, reused, max_frames: int = 8) -> pathlib.Path:
    """Rows: input / per-frame encoding / temporal reuse, for up to `max_frames` frames."""
    t = min(len(frames), max_frames)
    fig, axes = plotting.subplots(3, t, figsize=(1.2 * t, 3.8))
    axes = np.asarray(axes).reshape(3, t)
    for r, (label, imgs) in enumerate((("input", frames), ("per-frame", per_frame), ("reuse", reused))):
        for c in range(t):
            axes[r, c].imshow(to_rgb(imgs[c]))
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
        axes[r, 0].set_ylabel(label)
    return plotting.save_figure(fig, workdir, name)


def plot_flicker(workdir: pathlib.Path, frames, per_frame, reused, name: str = "flicker") -> pathlib.Path:
    """Per-frame-pair flicker ((x̂_t − x̂_{t−1}) − (x_t − x_{t−1}))² by t, both encodings."""
    fig, ax = plotting.subplots(1, 1, figsize=(4.5, 3))
    d = np.diff(frames, axis=0)
    for label, rec in (("per-frame", per_frame), ("reuse", reused)):
        ax.plot(np.arange(1, len(frames)), np.mean((np.diff(rec, axis=0) - d) ** 2, axis=(1, 2, 3)), "o-",
                label=label)
    ax.set_xlabel("frame t")
    ax.set_ylabel("flicker")
    ax.legend()
    return plotting.save_figure(fig, workdir, name)


def plot_control(workdir: pathlib.Path, images: np.ndarray, yaws, yaw_rows: list[dict], name: str = "control",
                 max_rows: int = 6) -> pathlib.Path:
    """Left: edits of held-out latents `images [L, 1 + T, R, R, 3]` (the original, then each target
    yaw); right: judged yaw error by target, with and without the edit."""
    n, t = min(len(images), max_rows), images.shape[1]
    fig, placeholder = plotting.subplots(1, 1, figsize=(1.1 * t + 3.6, 1.1 * n + 0.4))
    placeholder.remove()
    grid = fig.add_gridspec(n, t + 3)
    for r in range(n):
        for c in range(t):
            ax = fig.add_subplot(grid[r, c])
            ax.imshow(to_rgb(images[r, c]))
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title("original" if c == 0 else f"{yaws[c - 1]:+.0f}°", fontsize=8)
    ax = fig.add_subplot(grid[:, t:])
    x = [row["target_deg"] for row in yaw_rows]
    ax.plot(x, [row["error_deg"] for row in yaw_rows], "o-", label="edited")
    ax.plot(x, [row["no_edit_error_deg"] for row in yaw_rows], "s--", label="no edit")
    ax.set_xlabel("target yaw (degrees)")
    ax.set_ylabel("judged |yaw - target| (degrees)")
    ax.yaxis.set_label_position("right")
    ax.yaxis.tick_right()
    ax.legend(fontsize=8)
    return plotting.save_figure(fig, workdir, name)


def control_table(run_dirs: Sequence[str | pathlib.Path]) -> str:
    """Markdown of `train-control` over runs (seeds): mean and 95% t-interval of the judged errors
    with and without the edit, their paired difference, and the training regressor's view."""
    from jaxlab.core.stats import fmt_ci, mean_ci, paired_diff

    runs = [json.loads((pathlib.Path(d) / "summary.json").read_text())["results"]["control"] for d in run_dirs]

    def row(label, edited, plain, digits=1):
        e, p = [edited(r) for r in runs], [plain(r) for r in runs]
        return (f"| {label} | {fmt_ci(*mean_ci(e)[:2], digits)} | {fmt_ci(*mean_ci(p)[:2], digits)} | "
                f"{fmt_ci(*paired_diff(e, p)[:2], digits)} |")

    lines = [f"{len(runs)} runs; judge independent of the training regressor: "
             f"{all(r['judge_independent'] for r in runs)}", "",
             "| measurement | edited | no edit | edited - no edit (paired) |", "|---|---|---|---|"]
    targets = [y["target_deg"] for y in runs[0]["yaw"]]
    for i, t in enumerate(targets):
        lines.append(row(f"yaw error (degrees), target {t:+.0f}", lambda r, i=i: r["yaw"][i]["error_deg"],
                         lambda r, i=i: r["yaw"][i]["no_edit_error_deg"]))
    lines.append(row("yaw error (degrees), mean over targets", lambda r: r["yaw_error_deg"],
                     lambda r: r["yaw_no_edit_error_deg"]))
    lines.append(row("expression error (per coefficient)", lambda r: r["expression"]["error"],
                     lambda r: r["expression"]["no_edit_error"], 3))
    if all("self_judged" in r for r in runs):
        lines.append(row("yaw error as the training regressor sees it", lambda r: r["self_judged"]["yaw_error_deg"],
                         lambda r: r["self_judged"]["yaw_no_edit_error_deg"]))
        lines.append(row("expression error as the training regressor sees it",
                         lambda r: r["self_judged"]["expression_error"],
                         lambda r: r["self_judged"]["expression_no_edit_error"], 3))
    drift = [np.mean([y["pitch_roll_drift_deg"] for y in r["yaw"]]) for r in runs]
    lines += ["", f"pitch/roll drift under yaw edits: {fmt_ci(*mean_ci(drift)[:2], 2)} degrees; pose drift under "
              f"expression edits: {fmt_ci(*mean_ci([r['expression']['pose_drift_deg'] for r in runs])[:2], 2)} "
              f"degrees; identity similarity (judge's proc_id) of edited to unedited: "
              f"{fmt_ci(*mean_ci([r['identity_similarity'] for r in runs])[:2], 3)}"]
    return "\n".join(lines)



ENCODER_METRICS = (("mse", "MSE", 4), ("ssim", "SSIM", 3), ("flicker", "flicker", 5),
                   ("landmark_nme", "landmark NME", 3), ("identity_similarity", "identity similarity", 3),
                   ("vertex_rmse", "vertex RMSE", 4))


def encoder_table(groups: dict[str, Sequence[str | pathlib.Path]], cross: bool = False) -> str:
    """Markdown of `evaluate` over encoder runs: `groups` maps a loss name to its runs (one per seed,
    in the same seed order in every group). Per loss and mode (per frame / reuse): mean and 95%
    t-interval over seeds; reuse − per frame paired within each run (experiment 2); the first
    loss minus each other one, paired by seed (experiment 3). Which nets judged is stated.
    With `cross`, also the first group used with reuse minus each other group used per frame,
    paired by seed (an encoder trained with reuse against one trained per frame)."""
    from jaxlab.core.stats import fmt_ci, mean_ci, paired_diff

    evals = {g: [json.loads((pathlib.Path(d) / "evaluation.json").read_text()) for d in runs]
             for g, runs in groups.items()}
    keys = [m for m in ENCODER_METRICS if all(m[0] in e["reuse"] for es in evals.values() for e in es)]
    judges = sorted({e.get("judge", "none") for es in evals.values() for e in es})
    lines = [f"runs per loss: {', '.join(f'{g} {len(es)}' for g, es in evals.items())}; aux metrics judged by: "
             f"{', '.join(judges)}", "", "| loss | mode | " + " | ".join(label for _, label, _ in keys) + " |",
             "|---|---|" + "---|" * len(keys)]

    def cell(values, digits):
        return fmt_ci(*mean_ci(values)[:2], digits)

    for g, es in evals.items():
        for mode in ("per_frame", "reuse"):
            lines.append(f"| {g} | {mode.replace('_', ' ')} | "
                         + " | ".join(cell([e[mode][k] for e in es], d) for k, _, d in keys) + " |")
        lines.append(f"| {g} | reuse - per frame (paired) | " + " | ".join(
            fmt_ci(*paired_diff([e["reuse"][k] for e in es], [e["per_frame"][k] for e in es])[:2], d)
            for k, _, d in keys) + " |")
    if "input" in evals[next(iter(evals))][0]:  # the same frames and judge in every group: the first's seeds
        es = evals[next(iter(evals))]
        lines.append("| input frames (the judge's floor) | | " + " | ".join(
            cell([e["input"][k] for e in es], d) if k in es[0]["input"] else "" for k, _, d in keys) + " |")
    names = list(evals)
    for other in names[1:]:
        for mode in ("per_frame", "reuse"):
            a, b = evals[names[0]], evals[other]
            lines.append(f"| {names[0]} - {other} (paired by seed) | {mode.replace('_', ' ')} | " + " | ".join(
                fmt_ci(*paired_diff([e[mode][k] for e in a], [e[mode][k] for e in b])[:2], d) for k, _, d in keys)
                + " |")
        if cross:
            a, b = evals[names[0]], evals[other]
            lines.append(f"| {names[0]} with reuse - {other} per frame (paired by seed) | | " + " | ".join(
                fmt_ci(*paired_diff([e["reuse"][k] for e in a], [e["per_frame"][k] for e in b])[:2], d)
                for k, _, d in keys) + " |")
    return "\n".join(lines)


def plot_fd_curves(run_dirs: Sequence[str | pathlib.Path], out: str | pathlib.Path,
                   name: str = "fd_proc_curve") -> pathlib.Path:
    """`out/figures/<name>.png`: FD-proc (`eval_fd_proc` of each run's `generator/metrics.jsonl`)
    against generator step, one line per run, with each run's final real-vs-real floor and
    untrained-generator value (its summary's `fd_proc`) as dotted lines. Log scale."""
    fig, ax = plotting.subplots(figsize=(5.2, 3.4))
    for d in run_dirs:
        d = pathlib.Path(d)
        pts = [(r["step"], r["eval_fd_proc"]) for r in merge_by_step(read_metrics(d / "generator"))
               if "eval_fd_proc" in r]
        summary = json.loads((d / "summary.json").read_text())["results"]["generator"]
        seed = json.loads((d / "summary.json").read_text())["config"]["seed"]
        fd = summary.get("fd_proc", {})
        if pts:
            line, = ax.plot(*zip(*pts), marker="o", label=f"seed {seed}")
        else:
            line, = ax.plot([summary["steps"]], [fd["generator"]], marker="s", label=f"seed {seed} (end only)")
        color = line.get_color()
        if fd:
            ax.axhline(fd["untrained_generator"], color=color, ls=":", lw=0.8)
            ax.axhline(fd["real_vs_real"], color=color, ls="--", lw=0.8)
    ax.set_yscale("log")
    ax.set_xlabel("generator step")
    ax.set_ylabel("FD-proc (self-trained features, not FID)")
    ax.set_title("dotted: untrained G; dashed: real vs real", fontsize=8)
    ax.legend(fontsize=7)
    return plotting.save_figure(fig, out, name)
