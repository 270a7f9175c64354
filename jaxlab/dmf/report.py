"""Figures of `jaxlab dmf` runs, drawn from what the actions computed or saved
(`core.plotting.subplots`: constrained layout, Agg backend)."""

from __future__ import annotations

import numpy as np

from jaxlab.core import plotting

__all__ = ["plot_staircase", "plot_phase", "plot_escape", "plot_completion", "stability_table", "plot_stability",
           "law_table", "plot_law", "completion_table", "curve_error", "completion_curve_table",
           "plot_completion_curve"]

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
        n0 = (config.sweep_sizes or (config.n,))[0]  # the figure shows the first size
        cell = {(c["rank"], c["init_scale"]): c for c in cells if c["depth"] == d and c.get("n", config.n) == n0}
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


def _ci(x) -> str:
    """'mean +- half-width of the 95% t interval' of the finite values of x."""
    import scipy.stats

    x = np.asarray([v for v in x if v is not None and np.isfinite(v)], np.float64)
    if x.size == 0:
        return "-"
    if x.size == 1:
        return f"{x[0]:.4g}"
    h = scipy.stats.t.ppf(0.975, x.size - 1) * x.std(ddof=1) / np.sqrt(x.size)
    return f"{x.mean():.4g} +- {h:.2g}"


def _med(x) -> str:
    x = [v for v in x if v is not None and np.isfinite(v)]
    return f"{np.median(x):.2g}" if x else "-"


def stability_table(units, rank: int) -> str:
    """Markdown: one row per (depth, lr); escape steps x lr as mean +- 95% t interval over
    the seeds; end point medians; '2nd-order': runs ending at an approximate second-order
    critical point (`spe.end_point_of`)."""
    head = ("| depth | lr (x limit) | stages ok | " + " | ".join(f"t_{k + 1} x lr" for k in range(rank))
            + " | end loss | end grad | end lambda_min | lambda_max x lr/2 | balance | 2nd-order |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for u in units:
        runs = u["runs"]
        fin = [r for r in runs if r["finite"]]
        ok = sum(r["status"] == "ok" for r in runs)
        esc = [_ci([None if r["escape_steps"][k] is None else r["escape_steps"][k] * u["lr"] for r in fin])
               for k in range(rank)]
        ep = lambda key: [r["end_point"][key] for r in fin]
        lines.append(
            f"| {u['depth']} | {u['lr']:.4g} ({u['fraction_of_limit']:g}) | {ok}/{len(runs)}"
            f"{'' if len(fin) == len(runs) else f' ({len(runs) - len(fin)} diverged)'} | " + " | ".join(esc)
            + f" | {_med(ep('loss'))} | {_med(ep('grad_norm'))} | {_med(ep('lambda_min'))} | "
            f"{_med([r['sharpness_x_lr_over_2'] for r in fin])} | {_med([r['balance'] for r in fin])} | "
            f"{sum(r['end_point']['second_order_critical'] for r in fin)}/{len(runs)} |")
    return "\n".join(lines) + "\n"


def plot_stability(workdir, units, config) -> None:
    """`figures/stability.png`: escape step x lr of each mode vs lr / limit, one panel per depth."""
    depths = list(config.stability_depths)
    fig, ax = plotting.subplots(1, len(depths), figsize=(4.8 * len(depths), 3.6), squeeze=False)
    for a, d in zip(ax[0], depths):
        uu = [u for u in units if u["depth"] == d]
        for k in range(config.rank):
            y = [np.nanmean([np.nan if r["escape_steps"][k] is None else r["escape_steps"][k] * u["lr"]
                             for r in u["runs"]]) for u in uu]
            a.semilogx([u["fraction_of_limit"] for u in uu], y, "o-", label=f"mode {k + 1}")
        a.axvline(1.0, color="gray", ls=":", lw=0.8)
        a.set_xlabel("lr / (2 / max lambda_max along the run)")
        a.set_ylabel("escape step x lr")
        a.set_title(f"depth {d}")
        a.legend(fontsize=7)
    plotting.save_figure(fig, workdir, "stability")


def law_table(units, fits) -> str:
    """Markdown: fitted exponents (depth >= 3) and the depth-2 prediction vs measurement."""
    lines = ["| depth | mode | exponent (mean over seeds, 95% t interval) | pooled fit | theory -(1-2/N) | seeds |",
             "|---|---|---|---|---|---|"]
    for f in fits:
        ci = "-" if f["ci95"] is None else f"[{f['ci95'][0]:.3f}, {f['ci95'][1]:.3f}]"
        ex = "-" if f["exponent"] is None else f"{f['exponent']:.3f}"
        po = "-" if f["pooled"] is None else f"{f['pooled']:.3f}"
        lines.append(f"| {f['depth']} | {f['mode']} | {ex} {ci} | {po} | {f['theory']:.3f} | {f['seeds']} |")
    for u in units:
        if u["depth"] != 2:
            continue
        rank = len(u["escape_steps"][0][0])
        lines += ["", "| depth 2 init | " + " | ".join(f"mode {k + 1}: measured / predicted" for k in range(rank))
                  + " |", "|---|" + "---|" * rank]
        for j, sc in enumerate(u["init_scales"]):
            cells = []
            for k in range(rank):
                m = [s[j][k] for s in u["escape_steps"]]
                p = [s[j][k] for s in u["predicted_steps"]]
                ratio = [a / b for a, b in zip(m, p) if a is not None]
                cells.append(f"{_ci(m)} / {_ci(p)} (ratio {_ci(ratio)})")
            lines.append(f"| {sc:.3g} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_law(workdir, units, config) -> None:
    """`figures/init_law.png`: escape step of each mode vs init scale (log-log), seeds as
    points, one panel per depth (depth 2: the no-fit prediction dashed)."""
    fig, ax = plotting.subplots(1, len(units), figsize=(4.6 * len(units), 3.6), squeeze=False)
    for a, u in zip(ax[0], units):
        x = np.asarray(u["init_scales"])
        for k in range(config.rank):
            y = np.array([[np.nan if s[j][k] is None else s[j][k] for j in range(len(x))] for s in u["escape_steps"]])
            a.loglog(np.tile(x, (y.shape[0], 1)).ravel(), y.ravel(), ".", color=f"C{k}", alpha=0.4)
            a.loglog(x, np.nanmean(y, 0), "-", color=f"C{k}", label=f"mode {k + 1}")
            if "predicted_steps" in u:
                p = np.array([[s[j][k] for j in range(len(x))] for s in u["predicted_steps"]])
                a.loglog(x, p.mean(0), "--", color=f"C{k}")
        a.set_xlabel("init scale")
        a.set_ylabel("escape step")
        a.set_title(f"depth {u['depth']}, lr {u['lr']:g}")
        a.legend(fontsize=7)
    plotting.save_figure(fig, workdir, "init_law")


def completion_table(rows) -> str:
    """Markdown: test error and effective rank per (observations, method, depth, init), mean
    +- 95% t interval over the DMF seeds (initialisations on one target and mask)."""
    lines = ["| observed entries | method | depth | init scale | runs | test error | effective rank | "
             "train MSE (median) | runs with train MSE <= stop |", "|---|---|---|---|---|---|---|---|---|"]
    keys = []
    for r in rows:
        k = (r["observations"], r["method"], r["depth"], r["init_scale"])
        if k not in keys:
            keys.append(k)
    for k in keys:
        rr = [r for r in rows if (r["observations"], r["method"], r["depth"], r["init_scale"]) == k]
        stop = "-" if k[1] != "DMF" else f"{sum(r['stop_step'] is not None for r in rr)}/{len(rr)}"
        lines.append(f"| {k[0]} | {k[1]} | {k[2] if k[2] is not None else '-'} | "
                     f"{'-' if k[3] is None else f'{k[3]:g}'} | {len(rr)} | {_ci([r['test_error'] for r in rr])} | "
                     f"{_ci([r['effective_rank'] for r in rr])} | {_med([r['train_loss'] for r in rr])} | {stop} |")
    return "\n".join(lines) + "\n"


def curve_error(row) -> float | None:
    """The error a completion row contributes to the error-vs-entries curve: a DMF run's
    test error at Arora et al.'s stopping point (train MSE <= completion_stop_loss) where
    it got there, else its final test error; the nuclear-norm minimiser's test error."""
    if row["method"] == "DMF" and row.get("test_error_at_stop") is not None:
        return row["test_error_at_stop"]
    return row["test_error"]


def _curve_groups(rows):
    methods = [("nuclear norm", None)] + sorted({("DMF", r["depth"]) for r in rows if r["method"] == "DMF"},
                                                key=lambda k: k[1])
    obs = sorted({r["observations"] for r in rows})
    pick = lambda m, meth: [r for r in rows if r["observations"] == m and (r["method"], r["depth"]) == meth]
    return methods, obs, pick


def _interval(x):
    """(mean, lo, hi): the 95% Student-t interval of the finite values of x (None if none)."""
    import scipy.stats

    x = np.asarray([v for v in x if v is not None and np.isfinite(v)], np.float64)
    if x.size == 0:
        return None
    if x.size == 1:
        return x[0], x[0], x[0]
    h = scipy.stats.t.ppf(0.975, x.size - 1) * x.std(ddof=1) / np.sqrt(x.size)
    return x.mean(), x.mean() - h, x.mean() + h


def completion_curve_table(rows) -> str:
    """Markdown: error vs observed entries (`curve_error`), one column per method: mean
    [95% t interval] over all runs (problems x inits), the runs that reached the stopping
    loss, and in how many problems the depth's mean error is below the nuclear norm's."""
    methods, obs, pick = _curve_groups(rows)
    names = ["nuclear norm" if d is None else f"depth {d}" for _, d in methods]
    lines = ["| observed entries | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for m in obs:
        nn = {r["problem"]: r["test_error"] for r in pick(m, methods[0])}
        cells = []
        for meth in methods:
            rr = pick(m, meth)
            ci = _interval([curve_error(r) for r in rr])
            cell = "-" if ci is None else f"{ci[0]:.3g} [{max(ci[1], 0):.3g}, {ci[2]:.3g}]"
            if not rr:
                cells.append("-")
                continue
            if meth[0] == "DMF":
                probs = sorted({r["problem"] for r in rr})
                mean = lambda q: _interval([curve_error(r) for r in rr if r["problem"] == q])
                wins = sum(mean(q) is not None and nn.get(q) is not None and mean(q)[0] < nn[q] for q in probs)
                cell += (f" (stop {sum(r['stop_step'] is not None for r in rr)}/{len(rr)}; "
                         f"< nuclear in {wins}/{len(probs)})")
            else:
                cell += f" (gap <= {max(r.get('rel_gap') or 0 for r in rr):.1g})"
            cells.append(cell)
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_completion_curve(workdir, rows, config) -> None:
    """`figures/completion_curve.png`: test error (`curve_error`) against the number of
    observed entries, per depth and for the nuclear-norm minimiser: every run as a dot, the
    mean with its 95% t interval as a line with error bars."""
    methods, obs, pick = _curve_groups(rows)
    fig, ax = plotting.subplots(1, 1, figsize=(6.5, 4.2))
    for j, meth in enumerate(methods):
        color = "k" if meth[1] is None else f"C{meth[1]}"
        label = "nuclear norm (min)" if meth[1] is None else f"depth {meth[1]}"
        shift = 1 + 0.012 * (j - (len(methods) - 1) / 2)
        mean, lo, hi, xs = [], [], [], []
        for m in obs:
            vals = [curve_error(r) for r in pick(m, meth)]
            ci = _interval(vals)
            if ci is None:
                continue
            fin = [v for v in vals if v is not None and np.isfinite(v)]
            ax.scatter([m * shift] * len(fin), fin, s=8, color=color, alpha=0.35)
            xs.append(m * shift)
            mean.append(ci[0])
            lo.append(ci[0] - max(ci[1], 1e-12))
            hi.append(ci[2] - ci[0])
        ax.errorbar(xs, mean, yerr=[lo, hi], color=color, marker="o", ms=4, capsize=3, label=label)
    ax.set_yscale("log")
    ax.set_xlabel("observed entries")
    ax.set_ylabel("||W - M*||_F / ||M*||_F")
    ax.set_title(f"completion {config.completion_n}x{config.completion_n}, rank {config.completion_rank}: "
                 f"{config.completion_problems} problems x {config.completion_seeds} inits", fontsize=9)
    ax.legend(fontsize=8)
    plotting.save_figure(fig, workdir, "completion_curve")
