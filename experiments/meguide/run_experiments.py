"""Accuracy and time-to-accuracy of full-batch training and four samplers (GraphSAINT
random walk, Cluster-GCN, GraphSAGE neighbour sampling, MeGuide [reconstruction]) with
GCN and SAGE on contextual SBMs of low and high homophily.

    python experiments/meguide/run_experiments.py --nodes 10000 --out /tmp/meguide-exp

Each run is `jaxlab meguide train --config default` with the overrides printed beside it;
results go to OUT/results.json, figures to experiments/meguide/figures/, and a markdown
table to stdout (both from `jaxlab.meguide.report`). A curve point's time is the run's
training time so far (`train_time_s` of its evaluation row: sampling and steps, compiles
included, evaluation excluded).
"""

from __future__ import annotations

import argparse
import pathlib
import shutil

from jaxlab.core import runtime
from jaxlab.core import workdir as workdir_lib
from jaxlab.core.config import override
from jaxlab.meguide import configs, report, run

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
                      f"sampler={s}", f"loop.num_steps={STEPS[s]}", f"loop.eval_every={EVAL[s]}",
                      f"loop.log_every={EVAL[s]}", *args.extra]
                cfg = override(configs.get_config("default"), ov)
                wd = out / f"n{args.nodes}_h{h}_{model}_{s}{args.tag}"
                if wd.exists():
                    shutil.rmtree(wd)
                print("jaxlab meguide train --config default --workdir", wd,
                      " ".join(f"--config.{o}" for o in ov), flush=True)
                summary = run.train(cfg, wd)
                curve = [(r["train_time_s"], r["eval_val_accuracy"], r["eval_test_accuracy"])
                         for r in report.eval_curve(wd)]
                results.append(dict(homophily=h, model=model, sampler=s + args.tag, summary=summary,
                                    curve=curve))
                workdir_lib.write_json(out / "results.json", results)
    print(report.results_table(results))
    report.plot_accuracy_vs_time(results, args.figures, args.nodes, args.tag)


if __name__ == "__main__":
    main()
