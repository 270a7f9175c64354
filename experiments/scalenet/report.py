"""Markdown tables of experiments/scalenet/README.md from the run directories.

    python experiments/scalenet/report.py [RUNS]      # RUNS defaults to runs/scalenet

Copies the figures into experiments/scalenet/figures/.
"""

import json
import pathlib
import shutil
import sys

runs = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "runs/scalenet")
here = pathlib.Path(__file__).parent


def results(name):
    p = runs / name / "summary.json"
    return json.loads(p.read_text())["results"] if p.exists() else None


def fam(name):
    p = runs / name / "family.json"
    return json.loads(p.read_text()) if p.exists() else None


joint, dec = fam("joint"), fam("decoupled")
if joint:
    print("### Searched family (joint MCEA)\n")
    print(f"base genes {joint['base']} (0 = id, 1 = k3, 2 = k5; per stage, canonical)\n")
    print("| stage | d | w | r | MMACs | x S0 | extrapolated |")
    print("|---|---|---|---|---|---|---|")
    for r in joint["family"]:
        print(f"| S{r['stage']} | {r['d']:.3f} | {r['w']:.3f} | {r['r']} | {r['macs'] / 1e6:.3f} | "
              f"{r['ratio']:.2f} | {'yes' if r.get('extrapolated') else ''} |")
    print()
rows = []
for name in ("joint", "rt_a", "rt_b"):  # retrain may be split over workdirs (retrain.stages)
    rt = runs / name / "retrain.json"
    if rt.exists():
        rows += json.loads(rt.read_text())
if rows:
    print("### Retrained from scratch: searched vs compound scaling\n")
    print("| family | stage | d | w | r | MMACs | x S0 | test acc (%) |")
    print("|---|---|---|---|---|---|---|---|")
    for r in sorted(rows, key=lambda r: (r["stage"], r["family"])):
        print(f"| {r['family']} | S{r['stage']} | {r['d']:.3f} | {r['w']:.3f} | {r['resolution']} | "
              f"{r['macs'] / 1e6:.3f} | {r['ratio']:.2f} | {100 * r['test_accuracy']:.1f} |")
    print()
h, u = results("hier"), results("unif")
if h and u:
    print("### Hierarchical vs uniform sampling (inherited accuracy, 8 sampled subnets per stage)\n")
    print("| sampler | steps | train s | " + " | ".join(f"S{s}" for s in range(4)) + " | mean |")
    print("|---|---|---|" + "---|" * 5)
    for name, r in (("hierarchical", h), ("uniform", u)):
        t = r["train-supernet"]
        accs = [t["inherited_accuracy"][f"stage{s}"] for s in range(4)]
        print(f"| {name} | {t['steps']} | {t['train_seconds']:.0f} | " + " | ".join(f"{100 * a:.1f}" for a in accs)
              + f" | {100 * sum(accs) / 4:.1f} |")
    print()
if joint and dec:
    print("### Joint vs decoupled (base-then-scale) search\n")
    print("| search | supernet evaluations (archs) | GA genomes | search s | fitness f(b, S) (mean inherited acc, S1-S3) |")
    print("|---|---|---|---|---|")
    for name, r in (("joint (MCEA)", joint), ("decoupled", dec)):
        print(f"| {name} | {r['arch_evaluations']} | {r['ga_evaluations']} | {r['search_seconds']:.0f} | "
              f"{100 * r['fitness']:.1f} |")
    print()
(here / "figures").mkdir(exist_ok=True)
for name, fig in (("hier", "supernet_loss"), ("unif", "supernet_loss")):
    src = runs / name / "figures" / f"{fig}.png"
    if src.exists():
        shutil.copy(src, here / "figures" / f"{name}_{fig}.png")

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402

if rows:
    from jaxlab.scalenet.run import plot_family

    fig, ax = plt.subplots(figsize=(5, 3.5))
    plot_family(ax, rows, annotate=True)
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xticks([0.125, 0.25, 0.5, 1.0, 2.0], ["0.125", "0.25", "0.5", "1", "2"])
    ax.set_xlabel("MMACs (papers' convention)")
    ax.set_ylabel("test accuracy (%)")
    ax.legend()
    fig.savefig(here / "figures" / "family_accuracy.png", dpi=120, bbox_inches="tight")
curves = {}
for name in ("hier", "unif"):
    p = runs / name / "metrics.jsonl"
    if p.exists():
        pts = [json.loads(l) for l in p.read_text().splitlines() if l.strip()]
        curves[name] = [(d["step"], d["loss"]) for d in pts if "loss" in d]
if curves:
    fig, ax = plt.subplots(figsize=(5, 3))
    for name, pts in curves.items():
        ax.plot(*zip(*pts), label={"hier": "hierarchical", "unif": "uniform"}[name])
    ax.set_xlabel("step")
    ax.set_ylabel("training loss (sampled subnet)")
    ax.legend()
    fig.savefig(here / "figures" / "supernet_loss.png", dpi=120, bbox_inches="tight")
