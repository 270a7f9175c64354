"""Accuracy and time-to-accuracy of full-batch training and four samplers (GraphSAINT
random walk, Cluster-GCN, GraphSAGE neighbour sampling, MeGuide [reconstruction]) with
GCN and SAGE on contextual SBMs of low and high homophily.

    python experiments/meguide/run_experiments.py --nodes 10000 --out /tmp/meguide-exp

Each run is `jaxlab meguide train --config default` with the overrides printed beside it;
results go to OUT/results.json, figures to experiments/meguide/figures/, and a markdown
table to stdout.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import shutil

from jaxlab.core import runtime
from jaxlab.core.config import override
from jaxlab.core.metrics import read_metrics
from jaxlab.meguide import configs, run

SAMPLERS = ("full", "saint-rw", "cluster", "neighbor", "meguide")
STEPS = {"full": 150, "saint-rw": 300, "cluster": 300, "neighbor": 300, "meguide": 300}
EVAL = {"full": 10, "saint-rw": 20, "cluster": 20, "neighbor": 20, "meguide": 20}


def main():
    # this script is its own process: keep XLA's per-step temporaries (as the CLI does)
    runtime.tune_host_allocator()
    p = argparse.ArgumentParser()
    p.add_argument("--nodes", type=int, default=10_000)
    p.add_argument("--homophily", type=float, nargs="+", default=[0.1, 0.8])
    p.add_argument("--models", nargs="+", default=["gcn", "sage"])
    p.add_argument("--samplers", nargs="+", default=list(SAMPLERS))
    p.add_argument("--out", default="/tmp/meguide-exp")
    p.add_argument("--figures", default=str(pathlib.Path(__file__).parent / "figures"))
    p.add_argument("--tag", default="")
    p.add_argument("--extra", nargs="*", default=[],
                   help="more config overrides (a.b=v) applied to every run")
    args = p.parse_args()
    out = pathlib.Path(args.out)
    results = []
    for h in args.homophily:
        for model in args.models:
            for s in args.samplers:
                ov = [f"sbm.num_nodes={args.nodes}", f"sbm.homophily={h}", f"model.kind={model}",
                      f"sampler={s}", f"num_steps={STEPS[s]}", f"eval_every={EVAL[s]}",
                      f"log_every={EVAL[s]}", *args.extra]
                cfg = override(configs.get_config("default"), ov)
                wd = out / f"n{args.nodes}_h{h}_{model}_{s}{args.tag}"
                if wd.exists():
                    shutil.rmtree(wd)
                print("jaxlab meguide train --config default --workdir", wd,
                      " ".join(f"--config.{o}" for o in ov), flush=True)
                summary = run.train(cfg, wd)
                rows = [r for r in read_metrics(wd) if "eval_val_accuracy" in r]
                results.append(dict(homophily=h, model=model, sampler=s + args.tag, summary=summary,
                                    curve=[(r["eval_train_time_s"], r["eval_val_accuracy"],
                                            r["eval_test_accuracy"]) for r in rows]))
                (out / "results.json").write_text(json.dumps(results, indent=1))
    table(results)
    plot(results, pathlib.Path(args.figures), args.nodes, args.tag)


def time_to(curve, target):
    for t, val, _ in curve:
        if val >= target:
            return t
    return None


def table(results):
    print("| homophily | model | sampler | test acc | best val | train time (s) | "
          "time to 97% of best val (s) | steps | padding budgets |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        same = [q for q in results if q["homophily"] == r["homophily"] and q["model"] == r["model"]]
        best = max(q["summary"]["best_val_accuracy"] for q in same)
        t = time_to(r["curve"], 0.97 * best)
        s = r["summary"]
        print(f"| {r['homophily']} | {r['model']} | {r['sampler']} | {s['test_accuracy']:.3f} | "
              f"{s['best_val_accuracy']:.3f} | {s['train_time_s']:.1f} | "
              f"{'-' if t is None else f'{t:.1f}'} | {s['steps']} | {s['padding_budgets']} |")


def plot(results, figures, nodes, tag):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figures.mkdir(parents=True, exist_ok=True)
    for h in sorted({r["homophily"] for r in results}):
        models = sorted({r["model"] for r in results})
        fig, axes = plt.subplots(1, len(models), figsize=(5 * len(models), 3.6), squeeze=False)
        for ax, m in zip(axes[0], models):
            for r in results:
                if r["homophily"] == h and r["model"] == m:
                    c = r["curve"]
                    ax.plot([x[0] for x in c], [x[2] for x in c], "o-", ms=3, label=r["sampler"])
            ax.set_title(f"{m.upper()}, SBM n={nodes}, homophily {h}")
            ax.set_xlabel("training wall time (s), CPU")
            ax.set_ylabel("test accuracy")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(figures / f"accuracy_vs_time_n{nodes}_h{h}{tag}.png", dpi=110)
        plt.close(fig)


if __name__ == "__main__":
    main()
