"""Tables and figures of the ViTAS experiments, from `RUNS/studies.json`, `RUNS/retrained.json`
and the workdirs' metrics (see `jaxlab.vitas.studies`).

    python -m jaxlab.vitas.report RUNS OUT      # prints markdown tables; figures in OUT/figures/

Intervals are 95% Student-t intervals over seeds (`mean +- t_{0.975, n-1} sd / sqrt(n)`).
"""

from __future__ import annotations

import json
import pathlib
import sys

import numpy as np
from scipy import stats

from jaxlab.core import plotting
from jaxlab.core.metrics import read_metrics

__all__ = ["interval", "experiment_report", "main"]

SHARING = ("cyclic", "prefix", "bilateral")


def interval(values) -> tuple[float, float, int]:
    """`(mean, half-width of the 95% t interval, n)`; half-width nan for n < 2."""
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], np.float64)
    if len(v) == 0:
        return float("nan"), float("nan"), 0
    if len(v) < 2:
        return float(v[0]), float("nan"), 1
    return float(v.mean()), float(stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v))), len(v)


def _fmt(values, scale: float = 1.0, digits: int = 1) -> str:
    m, h, n = interval(values)
    if n == 0:
        return "-"
    return f"{m * scale:.{digits}f} ± {h * scale:.{digits}f}" if n > 1 else f"{m * scale:.{digits}f}"


def _by_variant(studies: dict) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for name, row in sorted(studies.get("runs", {}).items()):
        out.setdefault(row["variant"], []).append(row | {"name": name})
    return out


def _final_loss(runs: pathlib.Path, name: str, last: int = 5) -> float | None:
    rows = [r for r in read_metrics(runs / name / "supernet") if "loss" in r]
    return float(np.mean([r["loss"] for r in rows[-last:]])) if rows else None


def variant_table(runs: pathlib.Path, studies: dict, variants, labels: dict | None = None) -> str:
    """Supernet loss, probe-set inherited accuracy (mean, spread over subnets), Kendall tau."""
    by = _by_variant(studies)
    lines = ["| variant | seeds | steps x forwards | final train loss | probe val acc. (%) | spread over subnets "
             "(sd, %) | Kendall tau vs retrained |", "|---|---|---|---|---|---|---|"]
    for v in variants:
        rows = by.get(v, [])
        if not rows:
            continue
        steps = rows[0]["supernet"].get("steps")
        fw = 2 if v == "bilateral" else 1
        acc = [np.mean(r["probe_val_accuracy"]) for r in rows]
        sd = [np.std(r["probe_val_accuracy"], ddof=1) for r in rows]
        loss = _fmt([_final_loss(runs, r["name"]) for r in rows], 1, 3)
        tau = _fmt([r.get("kendall_tau") for r in rows], 1, 2)
        name = (labels or {}).get(v, v)
        lines.append(f"| {name} | {len(rows)} | {steps} x {fw} | {loss} | {_fmt(acc, 100)} | {_fmt(sd, 100)} | {tau} |")
    return "\n".join(lines)


def shifting_table(studies: dict) -> str:
    """Distinct encodings vs distinct standalone nets (whole genomes, and the op genes alone),
    in the supernet's training samples and in the GA's evaluations."""
    by = _by_variant(studies)
    lines = ["| identity shifting | training samples | distinct genomes / nets | distinct op encodings / op "
             "sequences | GA evaluations | GA distinct genomes / nets | GA op encodings / sequences | Kendall tau |",
             "|---|---|---|---|---|---|---|---|"]
    f = lambda rows, key: _fmt([r[key] for r in rows if key in r], 1, 0)
    for v, label in (("cyclic", "on"), ("noshift", "off")):
        rows = by.get(v, [])
        if not rows:
            continue
        ts = [r["train_samples"] for r in rows]
        ga = [r["ga_evaluated"] for r in rows if "ga_evaluated" in r]
        lines.append(
            f"| {label} | {ts[0]['n']} | {f(ts, 'distinct_encodings')} / {f(ts, 'distinct_nets')} | "
            f"{f(ts, 'distinct_op_encodings')} / {f(ts, 'distinct_op_sequences')} | {f(ga, 'n')} | "
            f"{f(ga, 'distinct_encodings')} / {f(ga, 'distinct_nets')} | {f(ga, 'distinct_op_encodings')} / "
            f"{f(ga, 'distinct_op_sequences')} | {_fmt([r.get('kendall_tau') for r in rows], 1, 2)} |")
    return "\n".join(lines)


def search_table(studies: dict, retrained: dict) -> str:
    """GA vs random search at equal evaluations, and the uniform (DeiT-shaped) baseline."""
    by = _by_variant(studies)
    rt = retrained.get("retrained", {})
    lines = ["| supernet | seeds | evaluations | GA best val (inherited, %) | random best val (%) | "
             "GA net retrained test (%) | random net retrained (%) | uniform net same FLOPs retrained (%) |",
             "|---|---|---|---|---|---|---|---|"]
    for v in ("cyclic", "noshift"):
        rows = [r for r in by.get(v, []) if "search" in r]
        if not rows:
            continue
        get = lambda kind: [rt.get(f"{r['name']}/{kind}", {}).get("test_accuracy") for r in rows]
        lines.append(f"| {v} | {len(rows)} | {rows[0]['search']['evaluations']} | "
                     f"{_fmt([r['search']['best_fitness'] for r in rows], 100)} | "
                     f"{_fmt([r['search']['random_best_fitness'] for r in rows], 100)} | {_fmt(get('ga'), 100)} | "
                     f"{_fmt(get('random'), 100)} | {_fmt(get('uniform'), 100)} |")
    return "\n".join(lines)


def plot_losses(runs: pathlib.Path, studies: dict, out: pathlib.Path, variants, name: str) -> pathlib.Path:
    """Supernet training loss against forward passes (bilateral: 2 per step), one line per seed."""
    fig, ax = plotting.subplots(figsize=(6, 3.4))
    by = _by_variant(studies)
    for i, v in enumerate(variants):
        for j, r in enumerate(by.get(v, [])):
            rows = [m for m in read_metrics(runs / r["name"] / "supernet") if "loss" in m]
            fw = 2 if v == "bilateral" else 1
            ax.plot([m["step"] * fw for m in rows], [m["loss"] for m in rows], color=f"C{i}", alpha=0.7,
                    label=v if j == 0 else None)
    ax.set_xlabel("forward passes (steps x passes per step)")
    ax.set_ylabel("training loss (sampled subnet)")
    ax.legend()
    return plotting.save_figure(fig, out, name)


def plot_probes(studies: dict, retrained: dict, out: pathlib.Path, variants) -> pathlib.Path:
    """Left: inherited val accuracy of the probe subnets per variant (all seeds). Right:
    inherited vs retrained accuracy of the retrained probes (first seed of each variant)."""
    by = _by_variant(studies)
    fig, (a, b) = plotting.subplots(1, 2, figsize=(10, 3.6))
    data = [np.concatenate([r["probe_val_accuracy"] for r in by[v]]) * 100 for v in variants if v in by]
    a.boxplot(data, tick_labels=[v for v in variants if v in by])
    a.set_ylabel("inherited val accuracy (%)")
    rt = retrained.get("retrained", {})
    ys = [rt.get(f"probe{i}", {}).get("test_accuracy") for i in range(len(rt))]
    ys = [y for y in ys if y is not None]
    for i, v in enumerate(v for v in variants if v in by):
        r = by[v][0]
        b.plot(np.asarray(r["probe_val_accuracy"][:len(ys)]) * 100, np.asarray(ys) * 100, "o", color=f"C{i}",
               label=f"{v} (tau {r.get('kendall_tau', float('nan')):.2f})")
    b.set_xlabel("inherited val accuracy (%)")
    b.set_ylabel("retrained test accuracy (%)")
    b.legend(fontsize=8)
    return plotting.save_figure(fig, out, "probe_accuracy")


def experiment_report(runs: pathlib.Path, out: pathlib.Path) -> str:
    runs, out = pathlib.Path(runs), pathlib.Path(out)
    read = lambda n: json.loads((runs / n).read_text()) if (runs / n).exists() else {}
    studies, retrained = read("studies.json"), read("retrained.json")
    parts = ["### Sharing schemes (equal compute)\n\n" + variant_table(runs, studies, SHARING),
             "### Identity shifting on / off\n\n" + shifting_table(studies),
             "### Augmentation for the superformer: none vs weak vs strong\n\n"
             + variant_table(runs, studies, ("cyclic", "weak", "strong"),
                             {"cyclic": "none (cyclic)", "weak": "weak", "strong": "strong"}),
             "### GA vs random search (same evaluations) and a uniform baseline at the same FLOPs\n\n"
             + search_table(studies, retrained)]
    if studies.get("runs"):
        plot_losses(runs, studies, out, SHARING, "supernet_loss_sharing")
        plot_losses(runs, studies, out, ("cyclic", "noshift", "weak", "strong"), "supernet_loss_shift_aug")
        plot_probes(studies, retrained, out, ("cyclic", "prefix", "bilateral", "noshift", "weak", "strong"))
    return "\n\n".join(parts) + "\n"


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    runs = pathlib.Path(argv[0] if argv else "runs/vitas")
    out = pathlib.Path(argv[1] if len(argv) > 1 else "experiments/vitas")
    print(experiment_report(runs, out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
