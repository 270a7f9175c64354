"""MeGuide [reconstruction] against GraphSAINT (node, edge, random walk), Cluster-GCN,
GraphSAGE neighbour sampling and full batch, on contextual SBMs, over seeds.

    python experiments/meguide/run_experiments.py --out /tmp/meguide-exp            # every suite
    python experiments/meguide/run_experiments.py --out /tmp/meguide-exp --suites main sweep
    python experiments/meguide/run_experiments.py --out /tmp/meguide-exp --report   # tables only

Suites (10,000-node graphs, 300 steps each, evaluation every 20 steps; every sampler's
size is matched to the same mean nodes per batch, `nodes_per_batch`, default 2000):
  main        homophily 0.1 and 0.8 x GCN, SAGE, GAT x the seven methods
  multilabel  12-label targets (sigmoid loss, micro-F1), homophily 0.8, GCN
  sweep       SAGE, homophily 0.8, 500 / 1000 / 2000 / 5000 nodes per batch
  ablation    MeGuide with uniform roots, with GraphSAINT's fixed-length walks, both, and
              with one-step walks on training nodes (GCN and SAGE, both homophilies)
  prefetch    host sampling in the loop (prefetch=0) instead of on a thread two steps
              ahead (prefetch=2, the setting of every other run; timing only)

Each run is `jaxlab meguide train --config default --workdir OUT/<name>` with the
overrides printed beside it; a run already finished in OUT is read back, not rerun.
Rows go to OUT/rows.jsonl, tables to stdout and OUT/tables.md, figures to
experiments/meguide/figures/ (all drawn by `jaxlab.meguide.report`).
"""

from __future__ import annotations

import argparse
import json
import pathlib

from jaxlab.core import runtime
from jaxlab.core.config import override
from jaxlab.meguide import configs, report, run

ALL = ("full", "saint-node", "saint-edge", "saint-rw", "cluster", "neighbor", "meguide")
VARIANTS = {
    "": [],
    "uniform roots": ["meguide.uniform_mix=1.0"],
    "fixed walks": ["meguide.walk=fixed"],
    "uniform roots, fixed walks": ["meguide.uniform_mix=1.0", "meguide.walk=fixed"],
    # one step per root (the rounded expected CFD, 1.18 here), never stopped early, adding
    # only new training nodes: the CFD rule's length without its adaptivity
    "one-step walks on training nodes": ["meguide.max_walk_length=1", "meguide.patience=2"],
    "no prefetch": ["prefetch=0"],
}


def _spec(h, model, sampler, nodes=2000, labels=0, variant=""):
    return dict(homophily=h, model=model, sampler=sampler, nodes_target=nodes, num_labels=labels, variant=variant)


SUITES = {
    "main": [_spec(h, m, s) for h in (0.1, 0.8) for m in ("gcn", "sage", "gat") for s in ALL],
    "multilabel": [_spec(0.8, "gcn", s, labels=12) for s in ALL],
    "sweep": [_spec(0.8, "sage", s, nodes=n) for n in (500, 1000, 2000, 5000) for s in ALL[1:]],
    "ablation": [_spec(h, m, "meguide", variant=v) for h in (0.1, 0.8) for m in ("gcn", "sage")
                 for v in ("uniform roots", "fixed walks", "uniform roots, fixed walks",
                           "one-step walks on training nodes")],
    "prefetch": [_spec(0.8, "gcn", s, variant="no prefetch") for s in ("saint-rw", "neighbor", "meguide")],
}


def overrides(spec: dict, seed: int, steps: int, num_nodes: int) -> list[str]:
    ov = [f"seed={seed}", f"sbm.num_nodes={num_nodes}", f"sbm.homophily={spec['homophily']}",
          f"sbm.num_labels={spec['num_labels']}", f"model.kind={spec['model']}", f"sampler={spec['sampler']}",
          f"loop.num_steps={steps}", "loop.eval_every=20", "loop.log_every=20", "prefetch=2"]
    if spec["sampler"] != "full":
        ov.append(f"nodes_per_batch={spec['nodes_target']}")
    return ov + VARIANTS[spec["variant"]]


def run_name(spec: dict, seed: int) -> str:
    name = f"h{spec['homophily']}_{spec['model']}_{spec['sampler']}"
    if spec["sampler"] != "full":
        name += f"_n{spec['nodes_target']}"
    if spec["num_labels"]:
        name += f"_ml{spec['num_labels']}"
    if spec["variant"]:
        name += "_" + spec["variant"].replace(", ", "+").replace(" ", "-")
    return f"{name}_s{seed}"


def main():
    runtime.tune_host_allocator()  # its own process: keep XLA's per-step temporaries, as the CLI does
    p = argparse.ArgumentParser()
    p.add_argument("--suites", nargs="+", default=list(SUITES), choices=list(SUITES))
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--nodes", type=int, default=10_000, help="graph size")
    p.add_argument("--out", default="/tmp/meguide-exp")
    p.add_argument("--figures", default=str(pathlib.Path(__file__).parent / "figures"))
    p.add_argument("--report", action="store_true", help="only print the tables of the rows in OUT")
    args = p.parse_args()
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows_path = out / "rows.jsonl"
    rows = [json.loads(line) for line in rows_path.read_text().splitlines()] if rows_path.exists() else []
    done = {r["name"] for r in rows}
    if not args.report:
        for suite in args.suites:
            for spec in SUITES[suite]:
                for seed in range(args.seeds):
                    name = run_name(spec, seed)
                    if name in done:
                        continue
                    ov = overrides(spec, seed, args.steps, args.nodes)
                    print("jaxlab meguide train --config default --workdir", out / name,
                          " ".join(f"--config.{o}" for o in ov), flush=True)
                    summary = run.train(override(configs.get_config("default"), ov), out / name)
                    row = dict(name=name, seed=seed, **spec, summary=summary,
                               curve=report.curve_of(out / name, summary["selection_metric"]))
                    rows.append(row)
                    done.add(name)
                    with rows_path.open("a") as f:
                        f.write(json.dumps(row) + "\n")
    tables = report.experiment_report(rows, args.figures)
    (out / "tables.md").write_text(tables)
    print(tables)


if __name__ == "__main__":
    main()
