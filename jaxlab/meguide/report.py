"""Figures and tables of MeGuide runs, drawn from their files.

* `plot_accuracy(workdir)`: one run's validation and test accuracy against training
  time and step (`figures/accuracy.png`).
* The seed-level comparison that `experiments/meguide/run_experiments.py` prints and
  draws, from its rows (one per run: setting, seed, summary, evaluation curve):
  `comparison_table` (samplers at matched nodes per batch, test score at the best
  validation step with 95% intervals, paired differences against GraphSAINT-RW, time
  to a common target with compiles apart, host sampling overlap), `sweep_table` and
  `plot_sweep` (score against nodes per batch), `variant_table` (ablations),
  `plot_curves` (mean validation score against training time without compiles).
"""

from __future__ import annotations

import pathlib

import numpy as np

from jaxlab.core import plotting
from jaxlab.core.metrics import merge_by_step, read_metrics
from jaxlab.core.stats import fmt_ci, mean_ci, paired_diff

__all__ = ["eval_curve", "plot_accuracy", "curve_of", "time_to", "comparison_table", "sweep_table",
           "variant_table", "prefetch_table", "plot_curves", "plot_sweep", "setting_of", "experiment_report"]


def eval_curve(workdir: str | pathlib.Path) -> list[dict]:
    """The evaluation rows of a run (all its segments): step, `train_time_s` (training
    time so far, evaluation excluded) and the `eval_*` scores."""
    return [r for r in merge_by_step(read_metrics(workdir)) if "eval_val_accuracy" in r]


def plot_accuracy(workdir: str | pathlib.Path) -> pathlib.Path | None:
    """`figures/accuracy.png`: val / test accuracy by training time and by step."""
    rows = eval_curve(workdir)
    if not rows:
        return None
    fig, (by_time, by_step) = plotting.subplots(1, 2, figsize=(9, 3.2))
    for key in ("eval_val_accuracy", "eval_test_accuracy"):
        label = key[len("eval_"):]
        by_time.plot([r["train_time_s"] for r in rows], [r[key] for r in rows], "o-", label=label)
        by_step.plot([r["step"] for r in rows], [r[key] for r in rows], "o-", label=label)
    by_time.set_xlabel("training time (s), evaluation excluded")
    by_step.set_xlabel("step")
    by_time.set_ylabel("accuracy")
    by_time.legend()
    for ax in (by_time, by_step):
        ax.grid(alpha=0.3)
    return plotting.save_figure(fig, workdir, "accuracy")


def curve_of(workdir: str | pathlib.Path, metric: str = "accuracy") -> list[list[float]]:
    """A run's evaluation curve as [step, train_time_s, compile_time_s, val, test] rows
    of validation / test `metric` ("accuracy" or "micro_f1")."""
    return [[r["step"], r["train_time_s"], r.get("compile_time_s", 0.0), r[f"eval_val_{metric}"],
             r[f"eval_test_{metric}"]] for r in eval_curve(workdir)]


def time_to(curve: list, target: float) -> float | None:
    """Training time without compiles (train_time_s - compile_time_s) of the first
    evaluation whose validation score reaches `target` (`curve` rows as `curve_of`);
    None if none does."""
    for _, t, c, val, _ in curve:
        if val >= target:
            return t - c
    return None


def setting_of(row: dict) -> tuple:
    """The data and model of a run row: (homophily, num_labels, model)."""
    return row["homophily"], row.get("num_labels", 0), row["model"]


def _name(row: dict) -> str:
    return row["sampler"] + (f" [{row['variant']}]" if row.get("variant") else "")


def _by_seed(rows: list[dict]) -> dict:
    return {r["seed"]: r for r in rows}


def _metric(row: dict) -> str:
    return row["summary"].get("selection_metric", "accuracy")


def _test(row: dict) -> float:
    return row["summary"][f"test_{_metric(row)}_at_best_val"]


def _target(rows: list[dict]) -> float:
    """0.97 x the mean best validation score of full batch (else of the best method)."""
    full = [r["summary"][f"best_val_{_metric(r)}"] for r in rows if r["sampler"] == "full"]
    if full:
        return 0.97 * float(np.mean(full))
    groups: dict = {}
    for r in rows:
        groups.setdefault(_name(r), []).append(r["summary"][f"best_val_{_metric(r)}"])
    return 0.97 * max(float(np.mean(v)) for v in groups.values())


def _groups(rows: list[dict]) -> dict:
    out: dict = {}
    for r in rows:
        out.setdefault(_name(r), []).append(r)
    return out


def comparison_table(rows: list[dict], reference: str = "saint-rw") -> str:
    """Markdown table of one setting's methods (rows of every seed): nodes and loss nodes
    per batch, test score at the best validation step (mean ± 95% t-interval), its
    paired difference with `reference` on the same seeds, the step chosen, training
    time and compile time, host sampling time and the part of it hidden behind device
    steps, and the time without compiles to 97% of full batch's mean best validation
    score (median over the seeds that reach it, and how many do)."""
    groups = _groups(rows)
    target = _target(rows)
    ref = _by_seed(groups.get(reference, []))
    metric = _metric(rows[0]).replace("_", "-")
    lines = [f"| method | nodes / batch | loss nodes / batch | test {metric} at best val | "
             f"Δ vs {reference} (paired) | best-val step | train s (compile s) | sampling s (hidden) | "
             f"s to {target:.3f} val (reached) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, g in groups.items():
        g = sorted(g, key=lambda r: r["seed"])
        sm = [r["summary"] for r in g]
        test = mean_ci([_test(r) for r in g])
        if ref and name != reference:
            seeds = [r["seed"] for r in g if r["seed"] in ref]
            d = paired_diff([_test(_by_seed(g)[k]) for k in seeds], [_test(ref[k]) for k in seeds])
            delta = fmt_ci(d[0], d[1], 1, scale=100) + " pt"
        else:
            delta = "-"
        reach = [t for t in (time_to(r["curve"], target) for r in g) if t is not None]
        samp = np.mean([x.get("sampling_time_s", 0.0) for x in sm])
        wait = np.mean([x.get("sampling_wait_s", 0.0) for x in sm])
        hidden = f"{max(0.0, 1 - wait / samp):.0%}" if samp > 0 and name.split()[0] != "full" else "-"
        loss_nodes = np.mean([x["loss_nodes_per_batch"] for x in sm])
        lines.append(
            f"| {name} | {np.mean([x['nodes_per_batch'] for x in sm]):.0f} | {loss_nodes:.0f} | "
            f"{fmt_ci(test[0], test[1])} | {delta} | {np.median([x['best_val_step'] for x in sm]):.0f} | "
            f"{np.mean([x['train_time_s'] for x in sm]):.1f} ({np.mean([x['compile_time_s'] for x in sm]):.1f}) | "
            f"{samp:.1f} ({hidden}) | "
            f"{'-' if not reach else f'{np.median(reach):.1f}'} ({len(reach)}/{len(g)}) |")
    return "\n".join(lines)


def sweep_table(rows: list[dict]) -> str:
    """Markdown table: test score at the best validation step (mean ± 95% interval) of
    each sampler (rows) at each target of nodes per batch (columns)."""
    sizes = sorted({r["nodes_target"] for r in rows})
    groups = _groups(rows)
    lines = ["| sampler | " + " | ".join(f"{n} nodes" for n in sizes) + " |", "|---|" + "---|" * len(sizes)]
    for name, g in groups.items():
        cells = []
        for n in sizes:
            m = mean_ci([_test(r) for r in g if r["nodes_target"] == n])
            cells.append(fmt_ci(m[0], m[1]))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def variant_table(rows: list[dict], reference: str) -> str:
    """Markdown table of variants of one method in one setting: test score at the best
    validation step and its paired difference with the variant named `reference`."""
    groups = _groups(rows)
    ref = _by_seed(groups.get(reference, []))
    lines = [f"| variant | nodes / batch | loss nodes / batch | test at best val | Δ vs {reference} (paired) |",
             "|---|---|---|---|---|"]
    for name, g in groups.items():
        m = mean_ci([_test(r) for r in g])
        seeds = [r["seed"] for r in g if r["seed"] in ref]
        d = paired_diff([_test(_by_seed(g)[k]) for k in seeds], [_test(ref[k]) for k in seeds])
        sm = [r["summary"] for r in g]
        lines.append(f"| {name} | {np.mean([x['nodes_per_batch'] for x in sm]):.0f} | "
                     f"{np.mean([x['loss_nodes_per_batch'] for x in sm]):.0f} | {fmt_ci(m[0], m[1])} | "
                     f"{'-' if name == reference else fmt_ci(d[0], d[1], 1, scale=100) + ' pt'} |")
    return "\n".join(lines)


def prefetch_table(rows: list[dict]) -> str:
    """Markdown table: per sampler, with and without the prefetch thread (variant
    "no prefetch"), the training time without compiles, the host sampling time and the
    time the loop waited for batches (means over seeds)."""
    lines = ["| sampler | prefetch | train s without compiles | sampling s | loop waited for batches s |",
             "|---|---|---|---|---|"]
    for g in _groups(rows).values():
        sm = [r["summary"] for r in g]
        lines.append(f"| {g[0]['sampler']} | {'no' if g[0].get('variant') == 'no prefetch' else 'yes'} | "
                     f"{fmt_ci(*mean_ci([x['train_time_s'] - x['compile_time_s'] for x in sm])[:2], 2)} | "
                     f"{np.mean([x['sampling_time_s'] for x in sm]):.2f} | "
                     f"{np.mean([x['sampling_wait_s'] for x in sm]):.2f} |")
    return "\n".join(lines)


def experiment_report(rows: list[dict], figures: str | pathlib.Path) -> str:
    """The markdown tables of `experiments/meguide/run_experiments.py` (and its figures)
    from the rows present: per setting the comparison at 2000 nodes per batch, the
    multi-label setting, the sweep over nodes per batch, the ablations and prefetching."""
    out = []

    def pick(**kw):
        return [r for r in rows if all(r.get(k) == v for k, v in kw.items())]

    main = [r for r in pick(nodes_target=2000, num_labels=0, variant="")]
    for h in sorted({r["homophily"] for r in main}):
        for model in ("gcn", "sage", "gat"):
            g = [r for r in main if r["homophily"] == h and r["model"] == model]
            if g:
                n = len({r["seed"] for r in g})
                out += [f"### Homophily {h}, {model.upper()} ({n} seeds)", "", comparison_table(g), ""]
        curves = [r for r in main if r["homophily"] == h]
        if curves:
            plot_curves(curves, figures, f"curves_h{h}")
    for labels in sorted({r["num_labels"] for r in rows} - {0}):
        g = pick(nodes_target=2000, num_labels=labels, variant="")
        out += [f"### Multi-label ({labels} labels), homophily 0.8, GCN", "", comparison_table(g), ""]
        plot_curves(g, figures, f"curves_ml{labels}")
    sweep = [r for r in pick(homophily=0.8, model="sage", num_labels=0, variant="") if r["sampler"] != "full"]
    if len({r["nodes_target"] for r in sweep}) > 1:
        out += ["### Nodes per batch, SAGE, homophily 0.8", "", sweep_table(sweep), ""]
        plot_sweep(sweep, figures, "sweep_sage_h0.8")
    abl = [r for r in rows if r["sampler"] == "meguide" and r["variant"] not in ("", "no prefetch")]
    for h, model in sorted({(r["homophily"], r["model"]) for r in abl}):
        g = [r for r in pick(homophily=h, model=model, nodes_target=2000, num_labels=0)
             if (r["sampler"] == "meguide" and r["variant"] != "no prefetch")
             or (r["sampler"] == "saint-rw" and r["variant"] == "")]
        out += [f"### Ablation, homophily {h}, {model.upper()}", "", variant_table(g, "meguide"), ""]
    pre = pick(homophily=0.8, model="gcn", nodes_target=2000, num_labels=0)
    slow = {r["sampler"] for r in pre if r["variant"] == "no prefetch"}
    if slow:
        g = [r for r in pre if r["sampler"] in slow and r["variant"] in ("", "no prefetch")]
        out += ["### Prefetching, homophily 0.8, GCN", "", prefetch_table(g), ""]
    return "\n".join(out)


def plot_curves(rows: list[dict], figures: str | pathlib.Path, name: str) -> pathlib.Path:
    """`figures/<name>.png`: one panel per setting; per method, the validation score
    averaged over seeds at each evaluation step against the mean training time without
    compiles up to it."""
    settings = sorted({setting_of(r) for r in rows})
    fig, axes = plotting.subplots(1, len(settings), figsize=(4.6 * len(settings), 3.6), squeeze=False)
    for ax, setting in zip(axes[0], settings):
        same = [r for r in rows if setting_of(r) == setting]
        for label, g in _groups(same).items():
            n = min(len(r["curve"]) for r in g)
            t = np.mean([[c[1] - c[2] for c in r["curve"][:n]] for r in g], axis=0)
            v = np.mean([[c[3] for c in r["curve"][:n]] for r in g], axis=0)
            ax.plot(t, v, "o-", ms=2.5, label=label)
        h, labels, model = setting
        ax.set_title(f"{model.upper()}, homophily {h}" + (f", {labels} labels" if labels else ""))
        ax.set_xlabel("training time without compiles (s), CPU")
        ax.set_ylabel(f"validation {_metric(same[0]).replace('_', '-')} (mean of seeds)")
    return _finish(fig, axes[0], figures, name)


def plot_sweep(rows: list[dict], figures: str | pathlib.Path, name: str) -> pathlib.Path:
    """`figures/<name>.png`: test score at the best validation step (mean and 95%
    interval over seeds) against nodes per batch, one line per sampler."""
    fig, ax = plotting.subplots(1, 1, figsize=(5.5, 3.8))
    for label, g in _groups(rows).items():
        sizes = sorted({r["nodes_target"] for r in g})
        stats = [mean_ci([_test(r) for r in g if r["nodes_target"] == n]) for n in sizes]
        ax.errorbar(sizes, [m for m, _, _ in stats], yerr=[0 if np.isnan(h) else h for _, h, _ in stats],
                    marker="o", ms=3, capsize=3, label=label)
    ax.set_xscale("log")
    ticks = sorted({r["nodes_target"] for r in rows})
    ax.set_xticks(ticks, [str(n) for n in ticks])
    ax.minorticks_off()
    ax.set_xlabel("nodes per batch (matched)")
    ax.set_ylabel(f"test {_metric(rows[0]).replace('_', '-')} at best val")
    return _finish(fig, [ax], figures, name)


def _finish(fig, axes, figures: str | pathlib.Path, name: str) -> pathlib.Path:
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return _save(fig, pathlib.Path(figures), name)


def _save(fig, folder: pathlib.Path, name: str, dpi: int = 110) -> pathlib.Path:
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path
