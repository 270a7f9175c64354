"""Figures and tables of MeGuide runs, drawn from their files.

* `plot_accuracy(workdir)`: one run's validation and test accuracy against training
  time and step (`figures/accuracy.png`).
* `results_table(results)` and `plot_accuracy_vs_time(results, ...)`: the comparison of
  samplers that `experiments/meguide/run_experiments.py` prints and draws.
"""

from __future__ import annotations

import pathlib

from jaxlab.core import plotting
from jaxlab.core.metrics import merge_by_step, read_metrics

__all__ = ["eval_curve", "plot_accuracy", "results_table", "time_to", "plot_accuracy_vs_time"]


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


def time_to(curve: list, target: float) -> float | None:
    """The first training time at which validation accuracy reaches `target`;
    `curve` holds (train_time_s, val_accuracy, test_accuracy) triples."""
    for t, val, _ in curve:
        if val >= target:
            return t
    return None


def results_table(results: list[dict]) -> str:
    """Markdown table of experiment runs (dicts with homophily, model, sampler, summary,
    curve); "time to 97% of best val" uses the best over the samplers of a setting."""
    lines = ["| homophily | model | sampler | test acc | best val | train time (s) | "
             "time to 97% of best val (s) | steps | padding budgets |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        same = [q for q in results if q["homophily"] == r["homophily"] and q["model"] == r["model"]]
        best = max(q["summary"]["best_val_accuracy"] for q in same)
        t = time_to(r["curve"], 0.97 * best)
        s = r["summary"]
        lines.append(f"| {r['homophily']} | {r['model']} | {r['sampler']} | {s['test_accuracy']:.3f} | "
                     f"{s['best_val_accuracy']:.3f} | {s['train_time_s']:.1f} | "
                     f"{'-' if t is None else f'{t:.1f}'} | {s['steps']} | {s['padding_budgets']} |")
    return "\n".join(lines)


def plot_accuracy_vs_time(results: list[dict], figures: str | pathlib.Path, nodes: int,
                          tag: str = "") -> list[pathlib.Path]:
    """`figures/accuracy_vs_time_n<nodes>_h<h><tag>.png` per homophily: test accuracy
    against training time, one panel per model, one curve per sampler."""
    figures = pathlib.Path(figures)
    paths = []
    for h in sorted({r["homophily"] for r in results}):
        models = sorted({r["model"] for r in results})
        fig, axes = plotting.subplots(1, len(models), figsize=(5 * len(models), 3.6), squeeze=False)
        for ax, model in zip(axes[0], models):
            for r in results:
                if r["homophily"] == h and r["model"] == model:
                    c = r["curve"]
                    ax.plot([x[0] for x in c], [x[2] for x in c], "o-", ms=3, label=r["sampler"])
            ax.set_title(f"{model.upper()}, SBM n={nodes}, homophily {h}")
            ax.set_xlabel("training wall time (s), CPU")
            ax.set_ylabel("test accuracy")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
        paths.append(_save(fig, figures, f"accuracy_vs_time_n{nodes}_h{h}{tag}"))
    return paths


def _save(fig, folder: pathlib.Path, name: str, dpi: int = 110) -> pathlib.Path:
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path
