"""Experiments 2-4 of CORAL (experiment 1 is `jaxlab coral train` over seeds, see the README).

    python experiments/coral/run_experiments.py ablation --seeds 0 1 2
    python experiments/coral/run_experiments.py drift --seeds 0 1 2
    python experiments/coral/run_experiments.py real --repo PATH --rev HEAD~3000..HEAD --seeds 0 1 2

Each run is `jaxlab coral train --config <base> --workdir OUT/<experiment>/<variant>-s<seed>`
with the overrides printed beside it (model seed = planted-repository seed); a finished run
(summary.json) is read back, not retrained. Results go to
experiments/coral/results_<experiment>.json and a markdown table (from `jaxlab.coral.report`)
to experiments/coral/table_<experiment>.md and stdout.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import tempfile

from jaxlab.coral import configs, data, drift, linkpred, ranking, report, run
from jaxlab.core import runtime
from jaxlab.core import workdir as workdir_lib
from jaxlab.core.config import override

HERE = pathlib.Path(__file__).parent
BASELINES = ("revfinder", "file_frequency", "repo_frequency", "random")
METRICS = ("top1", "top3", "top5", "mrr")

ABLATION = {
    "full graph": [],
    "no tokens": ["graph.tokens=false"],
    "no files": ["graph.files=false"],
    "user + PR only": ["graph.tokens=false", "graph.files=false", "graph.work_items=false"],
}
DRIFT = {f"half-life {d} d" if d else "no recency weighting": [f"recency_half_life_days={d}"]
         for d in (0, 30, 10, 3)}
DRIFT_BASE = ["planted.movers=4"]
REAL = {"full graph": [], "no tokens": ["graph.tokens=false"], "no files": ["graph.files=false"]}


def train_or_read(base: str, overrides: list[str], workdir: pathlib.Path) -> dict:
    print("jaxlab coral train --config", base, "--workdir", workdir, " ".join(f"--config.{o}" for o in overrides),
          flush=True)
    if (workdir / "summary.json").exists():
        return json.loads((workdir / "summary.json").read_text())["results"]
    cfg = override(configs.get_config(base), overrides)
    cfg.loop.progress = False
    return run.train(cfg, workdir)


def stratified(wd: pathlib.Path, seed: int, out: dict[str, list[dict]]) -> int:
    """Adds top-k/MRR of CORAL and the baselines per directory-size stratum of the run's test PRs to `out`."""
    loaded = run.load(wd)
    problem = loaded.extras["problem"]
    prs, scored = linkpred.method_scores(problem, loaded.config, loaded.state.params, loaded.extras["scorer"])
    strata, cut = ranking.directory_strata(prs, problem.train)
    for stratum in ("small", "large"):
        idx = [j for j, s in enumerate(strata) if s == stratum]
        for method, per_pr in scored.items():
            out.setdefault(f"{method}, {stratum} directories", []).append(ranking.rank_metrics(
                [per_pr[j][1] for j in idx], [per_pr[j][0] for j in idx],
                [ranking.labels(prs[j], problem.bots) for j in idx], seed=seed) | {"num_prs": len(idx)})
    return cut


def main() -> None:
    runtime.tune_host_allocator()
    p = argparse.ArgumentParser()
    p.add_argument("experiment", choices=["ablation", "drift", "real"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--base", default="smoke", help="config variant the runs start from")
    p.add_argument("--repo", default="", help="experiment 'real': a local git repository")
    p.add_argument("--rev", default="HEAD", help="experiment 'real': the revision (range) read")
    p.add_argument("--unit", default="merge", choices=["merge", "commit"])
    p.add_argument("--extra", nargs="*", default=[], help="more overrides (a.b=v) for every run")
    p.add_argument("--out", default="runs/coral-experiments")
    args = p.parse_args()
    out = pathlib.Path(args.out) / args.experiment
    variants = {"ablation": ABLATION, "drift": DRIFT, "real": REAL}[args.experiment]
    common = list(args.extra)
    if args.experiment == "drift":
        common = DRIFT_BASE + common
    if args.experiment == "real":
        if not args.repo:
            p.error("experiment 'real' needs --repo")
        common = [f"repo={args.repo}", f"rev={args.rev}", f"graph.unit={args.unit}"] + common
    rows: dict[str, list[dict]] = {}
    extra_rows: dict[str, list[dict]] = {}
    strata_rows: dict[str, list[dict]] = {}
    cuts = []
    sizes = []
    for seed in args.seeds:
        truth = None
        if args.experiment == "drift":
            cfg = override(configs.get_config(args.base), common + [f"planted.seed={seed}"])
            with tempfile.TemporaryDirectory() as tmp:
                truth = data.planted_repository(pathlib.Path(tmp) / "r", cfg.planted)
        for i, (name, ov) in enumerate(variants.items()):
            seed_ov = [f"seed={seed}"] + ([] if args.experiment == "real" else [f"planted.seed={seed}"])
            wd = out / f"{name.replace(' ', '_').replace('+', 'and')}-s{seed}"
            res = train_or_read(args.base, common + seed_ov + ov, wd)
            row = dict(res["coral"])
            if i == 0:
                sizes.append({k: res[k] for k in ("train_prs", "test_prs")} | {"test_scored": res["coral"]["num_prs"]})
                for b in BASELINES:
                    extra_rows.setdefault(b, []).append(res[b])
            if truth is not None:
                loaded = run.load(wd)
                problem = loaded.extras["problem"]
                prs, scored = linkpred.method_scores(problem, loaded.config, loaded.state.params,
                                                     loaded.extras["scorer"], baselines=i == 0)
                for method, per_pr in scored.items():
                    m = drift.drift_metrics(prs, per_pr, truth, k=3, seed=seed)
                    if method == "coral":
                        row.update(m)
                    else:
                        extra_rows[method][-1] = {**extra_rows[method][-1], **m}
            if args.experiment == "real" and i == 0:
                cuts.append(stratified(wd, seed, strata_rows))
            rows.setdefault(f"coral, {name}", []).append(row)
    rows.update(extra_rows)
    metrics = METRICS + (("stale_top3", "fresh_top3") if args.experiment == "drift" else ())
    table = report.seed_table(rows, metrics)
    text = f"{table}\n\nPRs per seed (train / test / test PRs scored): " + ", ".join(
        f"{s['train_prs']}/{s['test_prs']}/{s['test_scored']}" for s in sizes)
    if args.experiment == "drift":
        text += "; stale/fresh PRs per seed (coral rows): " + ", ".join(
            f"{r['stale_prs']}/{r['fresh_prs']}" for r in rows[next(iter(rows))])
    if strata_rows:
        text += ("\n\nStratified by the size of a PR's top directory (training PRs touching it; `large` = at least "
                 f"the median, {cuts} per seed), full graph:\n\n" + report.seed_table(strata_rows, METRICS))
    print(text)
    shown = ["repo=PATH" if o.startswith("repo=") else o for o in common]
    workdir_lib.write_json(HERE / f"results_{args.experiment}.json", {"rows": rows, "sizes": sizes,
                                                                       "strata": strata_rows, "overrides": shown})
    (HERE / f"table_{args.experiment}.md").write_text(text + "\n")


if __name__ == "__main__":
    main()
