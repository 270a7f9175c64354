"""Figures and tables of ScaleNet runs, drawn from their files.

* `plot_supernet_loss(workdir)`: `figures/supernet_loss.png` from metrics.jsonl.
* `plot_family(ax, rows)` / `plot_family_accuracy(workdir, rows)`: test accuracy
  against MMACs of the retrained searched and compound families.
* `plot_rank(workdir, study)` / `rank_table(study)`: inherited against retrained accuracy
  of the rank study's sub-networks (`jaxlab scalenet rank`), and its Kendall taus.
* `experiment_report(runs, out)`: the markdown tables of experiments/scalenet/README.md
  from the run directories of `experiments/scalenet/run_all.sh`, and its figures;
  `python experiments/scalenet/report.py [RUNS]` calls it.
* `protocol_report(runs, out)`: the tables and figure of the search protocol
  (`experiments/scalenet/run_protocol.sh`): GA against random search over search seeds,
  search costs, and every family retrained with seeds, with 95% t-intervals and paired
  differences against the joint family; `report.py --protocol RUNS` calls it.
"""

from __future__ import annotations

import json
import math
import pathlib
import shutil
import sys
from collections.abc import Sequence

from jaxlab.core import plotting
from jaxlab.core.metrics import merge_by_step, read_metrics
from jaxlab.core.stats import fmt_ci, mean_ci, paired_diff

__all__ = ["plot_supernet_loss", "plot_family", "plot_family_accuracy", "family_table", "retrain_table",
           "plot_rank", "rank_table", "sampler_table", "search_cost_table", "experiment_report", "protocol_report",
           "main"]


def _loss_rows(workdir: pathlib.Path) -> list[dict]:
    path = pathlib.Path(workdir) / "metrics.jsonl"
    return [r for r in merge_by_step(read_metrics(path)) if "loss" in r] if path.exists() else []


def plot_supernet_loss(workdir: pathlib.Path) -> pathlib.Path | None:
    """`figures/supernet_loss.png`: the sampled sub-networks' training loss by step."""
    rows = _loss_rows(workdir)
    if not rows:
        return None
    fig, ax = plotting.subplots(figsize=(5, 3))
    ax.plot([r["step"] for r in rows], [r["loss"] for r in rows])
    ax.set_xlabel("step")
    ax.set_ylabel("training loss (sampled subnet)")
    return plotting.save_figure(fig, workdir, "supernet_loss")


def _mmacs_ticks(ax, values: Sequence[float]) -> None:
    """Major ticks at powers of two (in MMACs) spanning `values`, no minor labels."""
    import matplotlib.ticker

    lo, hi = math.floor(math.log2(min(values))), math.ceil(math.log2(max(values)))
    ticks = [2.0 ** k for k in range(lo, hi + 1)]
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.tick_params(axis="x", labelrotation=30)


def plot_family(ax, rows: Sequence[dict], annotate: bool = False) -> None:
    """Test accuracy (%) against MMACs (log scale) of the searched and compound families
    (the compound family starts from the searched S0)."""
    s0 = [r for r in rows if r["stage"] == 0 and r["family"] == "searched"]
    for name, marker in (("searched", "o-"), ("compound", "s--")):
        rr = sorted([r for r in rows if r["family"] == name] + (s0 if name == "compound" else []),
                    key=lambda r: r["macs"])
        if rr:
            ax.plot([r["macs"] / 1e6 for r in rr], [100 * r["test_accuracy"] for r in rr], marker, label=name)
            if annotate:
                for r in rr:
                    ax.annotate(f"S{r['stage']}", (r["macs"] / 1e6, 100 * r["test_accuracy"]), fontsize=7,
                                xytext=(3, 3), textcoords="offset points")
    ax.set_xscale("log")
    if rows:
        _mmacs_ticks(ax, [r["macs"] / 1e6 for r in rows])
    ax.set_xlabel("MMACs (papers' convention)")
    ax.set_ylabel("test accuracy (%)")
    ax.legend()


def plot_family_accuracy(workdir: pathlib.Path, rows: Sequence[dict], annotate: bool = True) -> pathlib.Path:
    """`figures/family_accuracy.png` of `workdir`."""
    fig, ax = plotting.subplots(figsize=(5, 3.5))
    plot_family(ax, rows, annotate=annotate)
    return plotting.save_figure(fig, workdir, "family_accuracy")


def family_table(fam: dict) -> str:
    """Markdown table of a family.json: the searched scaling per stage."""
    lines = [f"base genes {fam['base']} (0 = id, 1 = k3, 2 = k5; per stage, canonical)", "",
             "| stage | d | w | r | MMACs | x S0 | extrapolated |", "|---|---|---|---|---|---|---|"]
    for r in fam["family"]:
        lines.append(f"| S{r['stage']} | {r['d']:.3f} | {r['w']:.3f} | {r['r']} | {r['macs'] / 1e6:.3f} | "
                     f"{r['ratio']:.2f} | {'yes' if r.get('extrapolated') else ''} |")
    return "\n".join(lines)


def retrain_table(rows: Sequence[dict]) -> str:
    """Markdown table of retrained members (retrain.json rows)."""
    lines = ["| family | stage | d | w | r | MMACs | x S0 | test acc (%) |", "|---|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (r["stage"], r["family"])):
        lines.append(f"| {r['family']} | S{r['stage']} | {r['d']:.3f} | {r['w']:.3f} | {r['resolution']} | "
                     f"{r['macs'] / 1e6:.3f} | {r['ratio']:.2f} | {100 * r['test_accuracy']:.1f} |")
    return "\n".join(lines)


def plot_rank(workdir: pathlib.Path, study: dict) -> pathlib.Path:
    """`figures/rank.png`: retrained against inherited accuracy, one colour per scaling
    stage, Kendall's taus in the title."""
    fig, ax = plotting.subplots(1, 1, figsize=(5.2, 4.0))
    rows = study["rows"]
    for s in sorted({r["stage"] for r in rows}):
        sel = [r for r in rows if r["stage"] == s]
        ax.scatter([100 * r["inherited_accuracy"] for r in sel], [100 * r["retrained_accuracy"] for r in sel],
                   label=f"S{s}", s=22)
    ax.set_xlabel(f"inherited accuracy (%), {study['inherited_images']} val images")
    ax.set_ylabel(f"retrained accuracy (%), {study['test_images']} test images")
    ax.set_title(f"Kendall tau: inherited {study['tau_inherited']:.2f}, MACs {study['tau_macs']:.2f}", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, title="stage", title_fontsize=8)
    return plotting.save_figure(fig, workdir, "rank")


def rank_table(study: dict) -> str:
    """Markdown table of the rank study's Kendall taus with their 95% bootstrap intervals."""
    def ci(key):
        lo, hi = study[f"{key}_ci"]
        return f"{study[key]:.2f} [{lo:.2f}, {hi:.2f}]"

    return "\n".join([
        "| ranking of the retrained accuracy by | Kendall tau-b [95% bootstrap] | p |", "|---|---|---|",
        f"| inherited accuracy (supernet) | {ci('tau_inherited')} | {study['p_inherited']:.3f} |",
        f"| MACs alone | {ci('tau_macs')} | {study['p_macs']:.3f} |",
        f"| difference (supernet - MACs), paired | {ci('tau_difference')} | |"])


def sampler_table(runs: dict[str, dict]) -> str:
    """Markdown table of inherited accuracy per stage, `runs = {sampler: train-supernet results}`."""
    stages = sorted({k for t in runs.values() for k in t["inherited_accuracy"]}, key=lambda k: int(k[5:]))
    lines = ["| sampler | steps | train s | " + " | ".join(f"S{k[5:]}" for k in stages) + " | mean |",
             "|---|---|---|" + "---|" * (len(stages) + 1)]
    for name, t in runs.items():
        accs = [t["inherited_accuracy"][k] for k in stages]
        seconds = t.get("train_time_s", t.get("train_seconds"))
        lines.append(f"| {name} | {t['steps']} | {seconds:.0f} | " + " | ".join(f"{100 * a:.1f}" for a in accs)
                     + f" | {100 * sum(accs) / len(accs):.1f} |")
    return "\n".join(lines)


def search_cost_table(runs: dict[str, dict]) -> str:
    """Markdown table of search cost and fitness, `runs = {name: family.json}`."""
    lines = ["| search | supernet evaluations (archs) | GA genomes | search s | fitness f(b, S) "
             "(mean inherited acc, S1-S3) |", "|---|---|---|---|---|"]
    for name, r in runs.items():
        lines.append(f"| {name} | {r['arch_evaluations']} | {r['ga_evaluations']} | {r['search_seconds']:.0f} | "
                     f"{100 * r['fitness']:.1f} |")
    return "\n".join(lines)


def _json(path: pathlib.Path):
    return json.loads(path.read_text()) if path.exists() else None


def experiment_report(runs: pathlib.Path, out: pathlib.Path) -> str:
    """The README's tables from `runs/{hier,unif,joint,decoupled,rt_a,rt_b}`; copies or
    draws the figures into `out/figures/`. Returns the markdown."""
    runs, out = pathlib.Path(runs), pathlib.Path(out)
    parts = []
    joint, dec = _json(runs / "joint" / "family.json"), _json(runs / "decoupled" / "family.json")
    if joint:
        parts.append("### Searched family (joint MCEA)\n\n" + family_table(joint))
    rows = []
    for name in ("joint", "rt_a", "rt_b"):  # retraining may be split over workdirs (retrain.stages)
        rows += _json(runs / name / "retrain.json") or []
    if rows:
        parts.append("### Retrained from scratch: searched vs compound scaling\n\n" + retrain_table(rows))
    h, u = _json(runs / "hier" / "summary.json"), _json(runs / "unif" / "summary.json")
    if h and u:
        parts.append("### Hierarchical vs uniform sampling (inherited accuracy per stage)\n\n" + sampler_table(
            {"hierarchical": h["results"]["train-supernet"], "uniform": u["results"]["train-supernet"]}))
    if joint and dec:
        parts.append("### Joint vs decoupled (base-then-scale) search\n\n"
                     + search_cost_table({"joint (MCEA)": joint, "decoupled": dec}))
    (out / "figures").mkdir(parents=True, exist_ok=True)
    for name in ("hier", "unif"):
        src = runs / name / "figures" / "supernet_loss.png"
        if src.exists():
            shutil.copy(src, out / "figures" / f"{name}_supernet_loss.png")
    if rows:
        plot_family_accuracy(out, rows)
    curves = {label: _loss_rows(runs / name) for name, label in (("hier", "hierarchical"), ("unif", "uniform"))}
    curves = {k: v for k, v in curves.items() if v}
    if curves:
        fig, ax = plotting.subplots(figsize=(5, 3))
        for label, pts in curves.items():
            ax.plot([r["step"] for r in pts], [r["loss"] for r in pts], label=label)
        ax.set_xlabel("step")
        ax.set_ylabel("training loss (sampled subnet)")
        ax.legend()
        plotting.save_figure(fig, out, "supernet_loss")
    return "\n\n".join(parts) + "\n"


def _seeded(runs: pathlib.Path, prefix: str) -> list[tuple[int, pathlib.Path]]:
    out = []
    for d in sorted(runs.glob(f"{prefix}_*")):
        tail = d.name[len(prefix) + 1:]
        if tail.isdigit():
            out.append((int(tail), d))
    return out


def _retrained(runs: pathlib.Path) -> dict[tuple[str, str, int], dict[int, dict]]:
    """`{(search dir, family, stage): {retrain seed: row}}` from `rt_<search>_<seed>/retrain.json`."""
    out: dict = {}
    for d in sorted(runs.glob("rt_*")):
        head, _, seed = d.name[3:].rpartition("_")
        rows = _json(d / "retrain.json")
        if not seed.isdigit() or rows is None:
            continue
        for r in rows:
            out.setdefault((head, r["family"], int(r["stage"])), {})[int(seed)] = r
    return out


def _pct(m: float, h: float) -> str:
    return fmt_ci(m, h, digits=1, scale=100.0)


def protocol_report(runs: pathlib.Path, out: pathlib.Path) -> str:
    """Markdown of the search protocol from `runs/{joint,random}_<seed>`, `decoupled`,
    `per_budget` and `rt_<search>_<seed>`; draws `out/figures/protocol_families.png`."""
    runs, out = pathlib.Path(runs), pathlib.Path(out)
    parts = []
    joint = {s: _json(d / "family.json") for s, d in _seeded(runs, "joint")}
    ga_runs = {s: _json(d / "family.json") for s, d in _seeded(runs, "decoupled")}
    rand = {s: _json(d / "family.json") for s, d in _seeded(runs, "random")}
    joint = {s: f for s, f in joint.items() if f}
    ga_runs = {s: f for s, f in ga_runs.items() if f}
    rand = {s: f for s, f in rand.items() if f}
    if ga_runs and rand:  # run_protocol.sh: decoupled_<seed> (GA) and random_<seed> share seed and sizes
        seeds = sorted(set(ga_runs) & set(rand))
        lines = ["| search seed | GA fitness | random search fitness | genomes (GA / random) | GA base | "
                 "random base |", "|---|---|---|---|---|---|"]
        for s in seeds:
            lines.append(f"| {s} | {100 * ga_runs[s]['fitness']:.1f} | {100 * rand[s]['fitness']:.1f} | "
                         f"{ga_runs[s]['ga_evaluations']} / {rand[s]['ga_evaluations']} | {ga_runs[s]['base']} | "
                         f"{rand[s]['base']} |")
        d, h, n = paired_diff([ga_runs[s]["fitness"] for s in seeds], [rand[s]["fitness"] for s in seeds])
        lines.append(f"| GA - random, paired over {n} seeds | {_pct(d, h)} | | | | |")
        parts.append("#### GA against random search (same initial population, same number of evaluations)\n\n"
                     + "\n".join(lines))
    cost = ["| search | architectures scored | GA genomes | search s | of which S4 ranked |",
            "|---|---|---|---|---|"]
    named = [(f"joint, seed {s}", f) for s, f in sorted(joint.items())]
    named += [(f"decoupled (GA), seed {s}", f) for s, f in sorted(ga_runs.items())]
    named += [(f"decoupled (random), seed {s}", f) for s, f in sorted(rand.items())]
    for name in ("per_budget",):
        f = _json(runs / name / "family.json")
        if f:
            named.append((name.replace("_", " "), f))
    for name, f in named:
        cost.append(f"| {name} | {f['arch_evaluations'] + f.get('searched_above_evaluations', 0)} | "
                    f"{f['ga_evaluations']} | {f['search_seconds']:.0f} | {f.get('searched_above_evaluations', '-')} |")
    if len(named) > 1:
        parts.append("#### Search cost (architectures scored on 1,200 images, both coupling sides)\n\n"
                     + "\n".join(cost))
    rt = _retrained(runs)
    if rt:
        ref_dir = next((k[0] for k in rt if k[0].startswith("joint")), None)
        lines = ["| search | family | stage | MMACs | test accuracy (%, 95% CI) | n | vs joint searched, paired "
                 "(points) | MACs / joint's |", "|---|---|---|---|---|---|---|---|"]
        for key in sorted(rt, key=lambda k: (k[2], k[0] != ref_dir, k[0], k[1])):
            head, family, stage = key
            rows = rt[key]
            seeds = sorted(rows)
            m, h, n = mean_ci([rows[s]["test_accuracy"] for s in seeds])
            ref = rt.get((ref_dir, "searched", stage), {})
            diff, ratio = "", ""
            if key != (ref_dir, "searched", stage) and ref:
                common = [s for s in seeds if s in ref]
                d, dh, _ = paired_diff([rows[s]["test_accuracy"] for s in common],
                                       [ref[s]["test_accuracy"] for s in common])
                diff = f"{d * 100:+.1f} ± {dh * 100:.1f}" if math.isfinite(dh) else f"{d * 100:+.1f}"
                ratio = f"{rows[seeds[0]]['macs'] / ref[common[0]]['macs']:.3f}" if common else ""
            lines.append(f"| {head} | {family} | S{stage} | {rows[seeds[0]]['macs'] / 1e6:.3f} | {_pct(m, h)} | {n} | "
                         f"{diff} | {ratio} |")
        parts.append("#### Families retrained from scratch\n\n" + "\n".join(lines))
        fig, ax = plotting.subplots(figsize=(6, 4))
        groups: dict = {}
        for (head, family, _stage), rows in rt.items():
            label = family if head.startswith("joint") else head.split("_")[0] if head != "per_budget" else head
            seeds = sorted(rows)
            m, h, _ = mean_ci([rows[s]["test_accuracy"] for s in seeds])
            groups.setdefault(label, []).append((rows[seeds[0]]["macs"] / 1e6, 100 * m,
                                                 100 * h if math.isfinite(h) else 0.0))
        for label, pts in sorted(groups.items()):
            pts.sort()
            ax.errorbar([p[0] for p in pts], [p[1] for p in pts], yerr=[p[2] for p in pts], marker="o",
                        capsize=3, label=label, linestyle="-" if len(pts) > 1 else "none")
        ax.set_xscale("log")
        _mmacs_ticks(ax, [p[0] for pts in groups.values() for p in pts])
        ax.set_xlabel("MMACs")
        ax.set_ylabel("test accuracy (%), mean and 95% CI")
        ax.legend(fontsize=8)
        plotting.save_figure(fig, out, "protocol_families")
    return "\n\n".join(parts) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """`python experiments/scalenet/report.py [--protocol] [RUNS [OUT]]`: prints the tables."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "--protocol":
        runs = pathlib.Path(argv[1] if len(argv) > 1 else "runs/scalenet_protocol")
        out = pathlib.Path(argv[2] if len(argv) > 2 else "experiments/scalenet")
        print(protocol_report(runs, out))
        return 0
    runs = pathlib.Path(argv[0] if argv else "runs/scalenet")
    out = pathlib.Path(argv[1] if len(argv) > 1 else "experiments/scalenet")
    print(experiment_report(runs, out))
    return 0
