"""Tables and figures of an MH-UI run, written from `detect.detection_results`.

    format_tables(config, results) -> markdown     (WORKDIR/tables.md)
    plot_precision_histograms(workdir, hist)        figures/precision_hist.png
    plot_auroc_vs_eps(config, workdir, results)     figures/auroc_pgd_linf.png
    plot_training(workdir, networks)                figures/training.png
"""

from __future__ import annotations

import math
import pathlib

import numpy as np

from jaxlab.core import plotting
from jaxlab.core.metrics import merge_by_step, read_metrics
from jaxlab.mhui.detect import METHODS, primary_score
from jaxlab.mhui.dirichlet import SCORES

__all__ = ["format_tables", "plot_precision_histograms", "plot_auroc_vs_eps", "plot_training", "format_protocol",
           "protocol_tables", "paired_difference"]

ALL_METHODS = tuple(m for ms in METHODS.values() for m in ms)


def _fmt(v) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"


def _find(rows, **match) -> dict | None:
    for r in rows:
        if all(r.get(k) == v for k, v in match.items()):
            return r
    return None


def _method_table(config, rows, attacks, methods, cell) -> list[str]:
    lines = ["| attack | eps | " + " | ".join(methods) + " |", "|" + "---|" * (len(methods) + 2)]
    for a, e in attacks:
        cells = []
        for m in methods:
            r = _find(rows, attack=a, eps=e, method=m, score=primary_score(m, config.detect))
            cells.append(cell(r) if r else "-")
        lines.append(f"| {a} | {e:g} | " + " | ".join(cells) + " |")
    return lines


def format_tables(config, results: dict) -> str:
    """Markdown: main tables (AUROC, AUPR of the primary scores), score ablation, heads and
    estimator ablation, adaptive attack."""
    rows = results["rows"]
    score = config.detect.score
    methods = [m for m in ALL_METHODS if any(r["method"] == m for r in rows)]
    order = list(config.attack.attacks)
    attacks = sorted({(r["attack"], r["eps"]) for r in rows},
                     key=lambda a: (order.index(a[0]) if a[0] in order else len(order), a[1]))
    lines = ["Clean test accuracy per head (MH-UI network): "
             + ", ".join(f"{a:.3f}" for a in results["clean_head_acc"]), ""]
    lines += [f"### Detection AUROC, all attacked / successful only (MH-UI and Dirichlet baselines: "
              f"score `{score}`; MSP: max prob; MC dropout, Ensemble: mutual information)", ""]
    lines += _method_table(config, rows, attacks, methods, lambda r: (
        f"{_fmt(r['auroc'])} / {_fmt(r['auroc_success'])} ({r['success_rate']:.2f})"))
    lines += ["", "Cells: AUROC over all attacked inputs / over successful attacks only "
              "(fraction of successful attacks against that method's classifier).", ""]
    lines += ["### AUPR (adversarial = positive), all / successful only", ""]
    lines += _method_table(config, rows, attacks, methods, lambda r: f"{_fmt(r['aupr'])} / {_fmt(r['aupr_success'])}")
    lines += ["", "### MH-UI: choice of score (AUROC, all attacked inputs)", "",
              "| attack | eps | " + " | ".join(SCORES) + " |", "|" + "---|" * (len(SCORES) + 2)]
    for a, e in attacks:
        by_score = {r["score"]: r for r in rows if r["attack"] == a and r["eps"] == e and r["method"] == "MH-UI"}
        if by_score:
            lines.append(f"| {a} | {e:g} | "
                         + " | ".join(_fmt(by_score[s]["auroc"]) if s in by_score else "-" for s in SCORES) + " |")
    abl = results["ablation_heads"]
    if abl:
        variants = list(dict.fromkeys((tuple(r["heads"]), r["combine"]) for r in abl))
        lines += ["", f"### MH-UI: heads used and estimator (score `{score}`, AUROC all attacked)", "",
                  "| heads | estimator | " + " | ".join(f"{a} {e:g}" if a != "cw_l2" else a for a, e in attacks)
                  + " |", "|" + "---|" * (len(attacks) + 2)]
        for heads, combine in variants:
            cells = [_find(abl, heads=list(heads), combine=combine, attack=a, eps=e) for a, e in attacks]
            lines.append(f"| {','.join(map(str, heads))} | {combine} | "
                         + " | ".join(_fmt(r["auroc"]) if r else "-" for r in cells) + " |")
    ad = results["adaptive"]
    if ad:
        shown = [m for m in METHODS["mhui"] if any(r["method"] == m for r in ad)]
        lines += ["", f"### Adaptive PGD-Linf against MH-UI: loss CE(final head) - w * s(x), s = MH-UI "
                  f"`{score}` detector term (AUROC all / successful only)", "",
                  "| eps | w | success rate | " + " | ".join(shown) + " |", "|" + "---|" * (len(shown) + 3)]
        for eps, w in sorted({(r["eps"], r["weight"]) for r in ad}):
            cells = []
            for m in shown:
                r = _find(ad, eps=eps, weight=w, method=m, score=primary_score(m, config.detect))
                cells.append(f"{_fmt(r['auroc'])} / {_fmt(r['auroc_success'])}" if r else "-")
            sr = _find(ad, eps=eps, weight=w)["success_rate"]
            lines.append(f"| {eps:g} | {w:g} | {sr:.2f} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_precision_histograms(workdir: pathlib.Path, hist: dict, max_panels: int = 6) -> pathlib.Path | None:
    """`figures/precision_hist.png`: log10 alpha_0 of MH-UI on clean vs adversarial inputs,
    one panel per adversarial set (the first `max_panels`)."""
    keys = list(hist)[:max_panels]
    if not keys:
        return None
    fig, axes = plotting.subplots(1, len(keys), figsize=(3.2 * len(keys), 2.9), squeeze=False)
    for ax, k in zip(axes[0], keys):
        lc, la = np.log10(-hist[k][0]), np.log10(-hist[k][1])
        lo, hi = min(lc.min(), la.min()), max(lc.max(), la.max())
        bins = np.linspace(lo, hi if hi > lo else lo + 1.0, 30)
        ax.hist(lc, bins, alpha=0.6, label="clean")
        ax.hist(la, bins, alpha=0.6, label="adversarial")
        ax.set_title(k.replace("mhui__", ""), fontsize=8)
        ax.set_xlabel("log10 alpha_0 (MH-UI)")
    axes[0][0].set_ylabel("test inputs")
    axes[0][0].legend(fontsize=7)
    return plotting.save_figure(fig, workdir, "precision_hist")


def plot_auroc_vs_eps(config, workdir: pathlib.Path, results: dict) -> pathlib.Path | None:
    """`figures/auroc_pgd_linf.png`: AUROC (all attacked) of every detector against PGD-Linf by eps."""
    rows = [r for r in results["rows"] if r["attack"] == "pgd_linf"]
    if not rows:
        return None
    fig, ax = plotting.subplots(figsize=(4.8, 3.4))
    for m in [m for m in ALL_METHODS if any(r["method"] == m for r in rows)]:
        rr = sorted((r for r in rows if r["method"] == m and r["score"] == primary_score(m, config.detect)),
                    key=lambda r: r["eps"])
        ax.plot([r["eps"] for r in rr], [r["auroc"] for r in rr], marker="o", label=m)
    ax.set_xlabel("eps (L-inf)")
    ax.set_ylabel("AUROC (all attacked)")
    ax.set_title("PGD-Linf detection")
    ax.legend(fontsize=7)
    return plotting.save_figure(fig, workdir, "auroc_pgd_linf")


def plot_training(workdir: pathlib.Path, networks: list[str]) -> pathlib.Path:
    """`figures/training.png`: training loss (log scale) and the final head's test accuracy
    by step, one line per network (from each network's metrics.jsonl)."""
    fig, (a, b) = plotting.subplots(1, 2, figsize=(9, 3.2))
    for name in networks:
        rows = merge_by_step(read_metrics(pathlib.Path(workdir) / name))
        loss = [r for r in rows if "loss" in r]
        a.plot([r["step"] for r in loss], [r["loss"] for r in loss], label=name)
        accs = [k for k in (rows[-1] if rows else {}) if k.startswith("eval_test_acc")]
        if accs:
            # the final head: eval_test_acc_head{H-1} (the Prior Network: eval_test_acc)
            key = max(accs, key=lambda k: int(k.rsplit("head", 1)[1]) if "head" in k else 0)
            ev = [r for r in rows if key in r]
            b.plot([r["step"] for r in ev], [r[key] for r in ev], "o-", label=name)
    a.set_yscale("log")
    a.set_xlabel("step")
    a.set_ylabel("training loss")
    a.legend(fontsize=7)
    b.set_xlabel("step")
    b.set_ylabel("test accuracy (final head)")
    b.grid(alpha=0.3)
    b.legend(fontsize=7)
    return plotting.save_figure(fig, workdir, "training")


def _ci(values) -> str:
    """`mean ± half-width of the 95% t-interval` over seeds (NaNs dropped; one value: itself)."""
    import scipy.stats

    v = np.asarray([x for x in values if x is not None and not math.isnan(x)], np.float64)
    if v.size == 0:
        return "-"
    if v.size == 1:
        return f"{v[0]:.3f}"
    half = scipy.stats.t.ppf(0.975, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size)
    return f"{v.mean():.3f} ± {half:.3f}"


def _single_run_half_width(row: dict, key: str) -> float:
    """1.96 standard errors of one run's AUROC (Hanley & McNeil 1982, from the AUROC and the
    numbers of positives and negatives) or TPR (binomial): the test-set sampling noise."""
    v, npos, nneg = row[key], max(row["n_success"], 1), max(row["n_correct"], 1)
    if key == "tpr":
        return 1.96 * math.sqrt(v * (1 - v) / npos)
    q1, q2 = v / (2 - v), 2 * v * v / (1 + v)
    var = (v * (1 - v) + (npos - 1) * (q1 - v * v) + (nneg - 1) * (q2 - v * v)) / (npos * nneg)
    return 1.96 * math.sqrt(max(var, 0.0))


def _count(values) -> str:
    """Mean count over the runs and its range: `56` or `61 (52-70)`."""
    v = [int(x) for x in values]
    return f"{v[0]}" if len(set(v)) == 1 else f"{np.mean(v):.0f} ({min(v)}-{max(v)})"


def paired_difference(a, b) -> tuple[float, float]:
    """`(mean, half-width of the 95% t-interval)` of the per-run differences `a - b` (NaN pairs
    dropped; fewer than two pairs: half-width NaN)."""
    import scipy.stats

    d = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    d = d[~np.isnan(d)]
    if d.size == 0:
        return float("nan"), float("nan")
    if d.size == 1:
        return float(d[0]), float("nan")
    return float(d.mean()), float(scipy.stats.t.ppf(0.975, d.size - 1) * d.std(ddof=1) / math.sqrt(d.size))


def _paired(results: list[dict], section: str, key: str, ref: str, others) -> list[str]:
    lines = ["| attack | " + " | ".join(f"{ref} - {m}" for m in others) + " |", "|" + "---|" * (len(others) + 1)]
    for a in _attack_kinds():
        cells = []
        for m in others:
            pairs = [(_find(r[section], method=ref, attack=a), _find(r[section], method=m, attack=a)) for r in results]
            pairs = [(x[key], y[key]) for x, y in pairs if x and y]
            if not pairs:
                cells.append("-")
                continue
            mean, half = paired_difference(*zip(*pairs))
            cell = f"{mean:+.3f} ± {half:.3f}"
            cells.append(f"**{cell}**" if abs(mean) > half else cell)
        lines.append(f"| {a} | " + " | ".join(cells) + " |")
    return lines


def _attack_kinds():
    from jaxlab.mhui.protocol import ATTACK_KINDS

    return ATTACK_KINDS


def _det_name(c: dict) -> str:
    sign = "" if c["sign"] > 0 else "-"
    extra = f", heads {tuple(c['heads']) or 'all'}, {c['combine']}" if c["method"] == "MH-UI" else ""
    return f"{sign}{c['score']}{extra}"


def _grid(results: list[dict], section: str, key: str, methods, attacks, with_success: bool) -> list[str]:
    lines = ["| attack | " + " | ".join(methods) + " |", "|" + "---|" * (len(methods) + 1)]
    for a in attacks:
        cells = []
        for m in methods:
            rows = [_find(r[section], method=m, attack=a) for r in results]
            rows = [r for r in rows if r]
            if not rows:
                cells.append("-")
                continue
            cell = _ci([r[key] for r in rows])
            if len(rows) == 1 and cell != "-":
                cell += f" ± {_single_run_half_width(rows[0], key):.3f}"
            if with_success:
                cell += f" (succ {_ci([r['success_rate'] for r in rows])})"
            cells.append(cell)
        lines.append(f"| {a} | " + " | ".join(cells) + " |")
    return lines


def format_protocol(results: list[dict], labels: list[str]) -> str:
    """Markdown of one or several (seeds) `protocol.run_protocol` results: chosen detectors,
    success-only AUROC and TPR at the FPR with the success rate beside, the common subset,
    MH-UI as specified, and the head-temperature ablation; cells are mean ± 95% t-interval
    over the results."""
    from jaxlab.mhui.protocol import ATTACK_KINDS
    from jaxlab.mhui.protocol import METHODS as PROTOCOL_METHODS

    n = len(results)
    methods = [m for m in PROTOCOL_METHODS if m in results[0]["choices"]]
    fpr = results[0].get("fpr", 0.05)
    lines = [f"{n} run(s): {', '.join(labels)}. Validation / test halves: {results[0]['val_size']} / "
             f"{results[0]['test_size']} inputs; L-inf eps {results[0]['eps']:g}. Cells: mean ± 95% t-interval "
             f"over the runs (one run: ± 1.96 standard errors of the test sample, Hanley-McNeil for AUROC, "
             f"binomial for TPR).", "", "### Detectors chosen on the validation half (validation AUROC)", "",
             "| method | " + " | ".join(labels) + " |", "|" + "---|" * (n + 1)]
    for m in methods:
        lines.append(f"| {m} | " + " | ".join(f"{_det_name(r['choices'][m])} ({r['choices'][m]['val_auroc']:.3f})"
                                             for r in results) + " |")
    lines += ["", "### AUROC on successful attacks only (success rate beside)", ""]
    lines += _grid(results, "rows", "auroc_success", methods, ATTACK_KINDS, True)
    lines += ["", f"### TPR at {fpr:.0%} FPR on successful attacks (threshold from validation clean inputs)", ""]
    lines += _grid(results, "rows", "tpr", methods, ATTACK_KINDS, False)
    lines += ["", "Measured test FPR at that threshold: "
              + ", ".join(f"{m} {_ci([r['test_fpr'] for x in results for r in x['rows'] if r['method'] == m])}"
                          for m in methods), ""]
    lines += ["### AUROC over all attacked inputs (failed attacks counted as positives)", ""]
    lines += _grid(results, "rows", "auroc_all", methods, ATTACK_KINDS, False)
    lines += ["", "### Common subset: test inputs every classifier gets right and every method's attack fools",
              "", "AUROC (number of common inputs beside)", ""]
    lines += ["| attack | " + " | ".join(methods) + " |", "|" + "---|" * (len(methods) + 1)]
    for a in ATTACK_KINDS:
        cells = []
        for m in methods:
            rows = [_find(r["common"], method=m, attack=a) for r in results]
            cells.append(f"{_ci([r['auroc_success'] for r in rows])} (n {_count([r['n_success'] for r in rows])})")
        lines.append(f"| {a} | " + " | ".join(cells) + " |")
    if n > 1:
        for section, key, title in (
                ("rows", "auroc_success", "AUROC on successful attacks against each method's own classifier"),
                ("rows", "tpr", f"TPR at {fpr:.0%} FPR on successful attacks"),
                ("common", "auroc_success", "AUROC on the common subset")):
            lines += ["", f"### Paired over the runs: MH-UI minus each method, {title}", "",
                      "Mean ± 95% t-interval of the per-run difference; **bold**: the interval excludes 0.", ""]
            lines += _paired(results, section, key, "MH-UI", [m for m in methods if m != "MH-UI"])
    lines += ["", "### MH-UI as specified (all heads, pooled, low alpha_0 flagged), non-adaptive attacks", "",
              "| attack | AUROC succ | TPR | success |", "|---|---|---|---|"]
    for a in ("pgd", "cw"):
        rows = [_find(r["reference"], attack=a) for r in results]
        lines.append(f"| {a} | {_ci([r['auroc_success'] for r in rows])} | {_ci([r['tpr'] for r in rows])} | "
                     f"{_ci([r['success_rate'] for r in rows])} |")
    temps = sorted({r["temperature"] for r in results[0]["temperature"]})
    lines += ["", "### MH-UI head temperature (chosen heads / score / sign; AUROC on successful attacks; the "
              "adaptive sets were crafted at temperature 1)", "",
              "| attack | " + " | ".join(f"T = {t:g}" for t in temps) + " |", "|" + "---|" * (len(temps) + 1)]
    for a in ("pgd", "cw", "adaptive"):
        cells = [_ci([_find(r["temperature"], temperature=t, attack=a)["auroc_success"] for r in results])
                 for t in temps]
        lines.append(f"| {a} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def protocol_tables(workdirs) -> str:
    """`format_protocol` of the protocol.json files of several runs (e.g. one per seed)."""
    import json

    dirs = [pathlib.Path(w) for w in workdirs]
    missing = [str(d) for d in dirs if not (d / "protocol.json").is_file()]
    if missing:
        raise FileNotFoundError(f"no protocol.json in {', '.join(missing)}; run `jaxlab mhui protocol --workdir DIR`")
    results = [json.loads((d / "protocol.json").read_text(encoding="utf-8")) for d in dirs]
    return format_protocol(results, [d.name for d in dirs])
