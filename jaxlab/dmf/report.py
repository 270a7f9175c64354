"""Figures of `jaxlab dmf` runs, drawn from what the actions computed or saved
(`core.plotting.subplots`: constrained layout, Agg backend)."""

from __future__ import annotations

import numpy as np

from jaxlab.core import plotting

__all__ = ["plot_staircase", "plot_phase", "plot_escape", "plot_completion"]

_TAGS = {"ok": "", "merged": "\nmerged", "incomplete": "\nslow", "ill-separated": "\nill-sep.",
         "diverged": "\ndiverged"}


def plot_staircase(workdir, name, traj, levels, hessian_steps, hessian_values, found, title) -> None:
    """`figures/<name>.png`: loss (log) with the plateau levels L_k and the detected stages
    shaded, sigma_k(W), ||grad|| and lambda_min of the Hessian over the steps."""
    fig, ax = plotting.subplots(1, 4, figsize=(17, 3.6))
    step = np.asarray(traj.step)
    ax[0].semilogy(step, traj.loss, "k")
    for k, lv in enumerate(levels if levels is not None else []):
        ax[0].axhline(lv, ls="--", lw=0.8, color=f"C{k}", label=f"L_{k}")
    for s in found:
        ax[0].axvspan(s.start, s.end, color=f"C{s.rank}", alpha=0.12)
    ax[0].set_title("loss (shaded: detected stages)")
    if levels is not None:
        ax[0].legend(fontsize=7)
    r = max(len(levels) if levels is not None else 3, 1)
    for k in range(min(r + 2, traj.singular_values.shape[1])):
        ax[1].semilogy(step, traj.singular_values[:, k], label=f"sigma_{k + 1}")
    ax[1].set_title("singular values of W")
    ax[1].legend(fontsize=7)
    ax[2].semilogy(step, traj.grad_norm, "k")
    ax[2].set_title("||grad|| (factors)")
    if len(hessian_steps):
        ax[3].plot(hessian_steps, hessian_values, "o-", ms=3)
        ax[3].axhline(0, color="gray", lw=0.6)
    ax[3].set_title("Hessian lambda_min (Lanczos)")
    for a in ax:
        a.set_xlabel("step")
    fig.suptitle(title, fontsize=10)
    plotting.save_figure(fig, workdir, name)


def plot_phase(workdir, cells, config) -> None:
    """`figures/phase_diagram.png`: success rate per (R, init scale), one panel per depth,
    tagged with the most common failure."""
    scales = list(config.sweep_init_scales)
    fig, ax = plotting.subplots(1, len(config.depths), figsize=(4.6 * len(config.depths) + 1, 3.8), squeeze=False)
    im = None
    for j, d in enumerate(config.depths):
        cell = {(c["rank"], c["init_scale"]): c for c in cells if c["depth"] == d}
        grid = np.array([[cell[r, s]["success_rate"] for s in scales] for r in config.ranks])
        im = ax[0, j].imshow(grid, vmin=0, vmax=1, cmap="viridis", origin="lower", aspect="auto")
        ax[0, j].set_xticks(range(len(scales)), [f"{s:g}" for s in scales], fontsize=7)
        ax[0, j].set_yticks(range(len(config.ranks)), [str(r) for r in config.ranks])
        for (a, b), v in np.ndenumerate(grid):
            counts = cell[config.ranks[a], scales[b]]["status_counts"]
            tag = _TAGS.get(max(counts.items(), key=lambda kv: kv[1])[0], "")
            ax[0, j].text(b, a, f"{v:.2f}{tag}", ha="center", va="center", fontsize=6.5,
                          color="w" if v < 0.5 else "k")
        ax[0, j].set_xlabel("init scale")
        ax[0, j].set_ylabel("target rank R")
        ax[0, j].set_title(f"depth {d}", fontsize=10)
    fig.suptitle("fraction of seeds with detected stages == R (tag: most common failure)", fontsize=10)
    fig.colorbar(im, ax=ax.ravel().tolist())
    plotting.save_figure(fig, workdir, "phase_diagram")


def plot_escape(workdir, rows, config) -> None:
    """`figures/escape_time.png`: escape step of each sigma_k vs lr, one panel per optimizer."""
    opts = list(config.escape_optimizers)
    fig, ax = plotting.subplots(1, len(opts), figsize=(4.4 * len(opts), 3.6), squeeze=False)
    for a, opt in zip(ax[0], opts):
        for d in config.depths:
            rr = [r for r in rows if r["depth"] == d and r["optimizer"] == opt]
            for k in range(config.rank):
                y = np.asarray([r["escape_steps"][k] for r in rr], dtype=float)  # null (never) -> nan
                a.loglog([r["lr"] for r in rr], y, "o-", color=f"C{d}", alpha=1 - 0.6 * k / max(config.rank, 1),
                         label=f"depth {d}" if k == 0 else None)
        a.set_xlabel("learning rate")
        a.set_ylabel("escape step of sigma_k (k = 1..R, fading)")
        a.set_title(opt)
        a.legend(fontsize=7)
    plotting.save_figure(fig, workdir, "escape_time")


def plot_completion(workdir, rows, curves, config) -> None:
    """`figures/completion.png`: test error over steps of every DMF run, with the
    nuclear-norm solution's error as a dotted line, one panel per observation count."""
    obs = list(config.completion_observations)
    fig, ax = plotting.subplots(1, len(obs), figsize=(5.5 * len(obs), 3.8), squeeze=False)
    for a, m in zip(ax[0], obs):
        for c in curves:
            if c["observations"] == m:
                first = c["init_scale"] == config.completion_init_scales[0]
                a.loglog(np.maximum(np.asarray(c["step"]), 1), np.asarray(c["test_error"], dtype=float),
                         color=f"C{c['depth']}", ls="-" if first else "--",
                         label=f"depth {c['depth']}, init {c['init_scale']:g}")
        nn = next(r for r in rows if r["observations"] == m and r["method"] == "nuclear norm")
        if nn["test_error"] is not None:
            a.axhline(nn["test_error"], color="k", ls=":", label="nuclear norm")
        a.set_xlabel("step")
        a.set_ylabel("||W - M*||_F / ||M*||_F")
        a.set_title(f"completion {config.completion_n}x{config.completion_n}, rank {config.completion_rank}, "
                    f"{m} entries", fontsize=9)
        a.legend(fontsize=7)
    plotting.save_figure(fig, workdir, "completion")
