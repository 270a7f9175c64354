"""GA against random search on the base step, over search seeds (issue 19).

The decoupled search's base step alone: fitness = inherited accuracy of the base at S0
on the search's held-out images, the base band of the search config, the GA sizes of
the config; `proposal="random"` evaluates as many random bases of the band from the same
initial population. The best base of each search is then re-scored on the test images
(which no search saw), so the comparison is free of the winner's selection bias.

    python experiments/scalenet/ga_vs_random.py RUNS/hier --seeds 0 1 2 3 4 --out RUNS/ga_vs_random.json
"""

import argparse
import json
import pathlib

from jaxlab.core import config as config_lib
from jaxlab.core.stats import fmt_ci, paired_diff
from jaxlab.nas import evolution as ga
from jaxlab.scalenet import configs, search, supernet
from jaxlab.scalenet.data import Data
from jaxlab.scalenet.space import Space


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("supernet_dir")
    p.add_argument("--config", default="experiments/scalenet/configs/cpu_search.py:decoupled")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--out", required=True)
    args = p.parse_args()
    cfg = config_lib.resolve(args.config, configs.get_config)
    space, data = Space(cfg.space), Data(cfg.data)
    net, state, _ = supernet.load(cfg, space, pathlib.Path(args.supernet_dir))
    val = supernet.make_scorer(cfg, space, net, state.params, data)
    test_cfg = config_lib.override(cfg, [f"search.eval_batch={min(cfg.data.num_test, cfg.data.num_val)}"])

    class TestSplit:
        def get(self, split, r):
            return data.get("test", r)

    test = supernet.make_scorer(test_cfg, space, net, state.params, TestSplit())
    r0 = int(space.cfg.res_grid[0][0])
    out = pathlib.Path(args.out)
    rows = json.loads(out.read_text()) if out.exists() else []
    done = {(r["seed"], r["proposal"]) for r in rows}
    for seed in args.seeds:
        f_ref = search.reference_macs(space, cfg.search, seed)
        for proposal in ("genetic", "random"):
            if (seed, proposal) in done:
                continue
            gcfg = ga.GAConfig(pop_size=cfg.search.pop_size, num_generations=cfg.search.num_generations,
                               eta_mutation=cfg.search.eta_mutation, feasible_offspring=True, proposal=proposal)
            prob = search.base_problem(space, cfg.search, lambda x: val(space.scale(x, 1.0, 1.0), r0), f_ref)
            st = ga.run(prob, gcfg, seed=search.ga_seed(seed, 0))
            base, fit = st.best()
            rows.append({"seed": seed, "proposal": proposal, "base": base.tolist(), "val_accuracy": fit,
                         "test_accuracy": float(test(space.scale(base[None], 1.0, 1.0), r0)[0]),
                         "evaluations": int(st.num_evaluations), "best_history": st.best_history.tolist()})
            out.write_text(json.dumps(rows, indent=1))
            print(json.dumps(rows[-1]), flush=True)
    seeds = sorted({r["seed"] for r in rows})
    by = {(r["seed"], r["proposal"]): r for r in rows}
    common = [s for s in seeds if (s, "genetic") in by and (s, "random") in by]
    for key in ("val_accuracy", "test_accuracy"):
        d, h, n = paired_diff([by[s, "genetic"][key] for s in common], [by[s, "random"][key] for s in common])
        print(f"GA - random, {key}, paired over {n} seeds: {fmt_ci(d, h, 1, 100)} points")


if __name__ == "__main__":
    main()
