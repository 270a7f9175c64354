"""Studies behind experiments 2-5 of `experiments/vitas/README.md`, run on finished workdirs.

    python -m jaxlab.vitas.studies --config CONFIG[:variant] RUNS [--part retrain|probe|all]

`RUNS/<variant>_s<seed>` are workdirs of `jaxlab vitas train-supernet` (and `search`).

* probe set: `N_PROBE` canonical architectures in the FLOPs band, drawn once from
  `(PROBE_SEED, PROBE_STREAM)`; every supernet scores all of them with inherited weights on
  the validation split (spread of subnet accuracies; ranking quality).
* retraining from scratch through the masked superformer: a fresh superformer (new init) is
  trained with one fixed architecture by the supernet step and recipe. Only the active slices
  enter the forward (masked == extracted, tested) and only they receive gradient (tested), so
  this trains the standalone net; it reuses one compiled step for every architecture, where
  the standalone `retrain` action compiles once per shape (minutes each on a loaded CPU).
  Test accuracy on the test split. This uses the weak (supernet) recipe, not the strong one.
* Kendall tau between inherited validation accuracy and retrained test accuracy over the
  first `N_RETRAIN` probes (scipy.stats.kendalltau, tau-b).
* GA bookkeeping: evaluations, distinct encodings and distinct standalone nets (canonical
  forms) among the evaluated genomes; the same for the supernet's training samples.
* searched nets: the GA's and random search's best of each seed, retrained, beside a
  uniform ("DeiT-shaped": every block the same heads and widths, the first d blocks active)
  net whose analytic FLOPs are closest to the GA net's.

Writes `RUNS/retrained.json` and `RUNS/studies.json` (read by `jaxlab.vitas.report`).
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import pathlib
import re

import numpy as np
from scipy import stats

from jaxlab.core import config as config_lib
from jaxlab.core import runtime
from jaxlab.core import train as train_lib
from jaxlab.core import workdir as workdir_lib
from jaxlab.vitas import configs, training
from jaxlab.vitas import data as data_lib
from jaxlab.vitas.search import band_sampler, genome_to_arch, make_fitness
from jaxlab.vitas.space import Space

PROBE_SEED = 1234
PROBE_STREAM = 41
N_PROBE = 16
N_RETRAIN = 10
RUN_NAME = re.compile(r"^(?P<variant>[a-z]+)_s(?P<seed>\d+)$")


def probe_archs(config: configs.VitasConfig, space: Space) -> np.ndarray:
    """`N_PROBE` distinct canonical in-band genomes (the same for every variant)."""
    band = _band(config, space)
    p_id, _ = space.tune_p_id(band, p_id=config.supernet.p_id, step=config.supernet.p_id_step,
                              samples=config.supernet.p_id_samples, seed=PROBE_SEED)
    g = band_sampler(space, p_id, band, True)(np.random.default_rng([PROBE_SEED, PROBE_STREAM]),
                                                        8 * N_PROBE)
    _, first = np.unique(g, axis=0, return_index=True)
    return g[np.sort(first)][:N_PROBE]


def _band(config, space):
    s = config.search
    return (s.flops_min, s.flops_max) if s.flops_max > 0 else space.default_band()


def retrain_masked(config: configs.VitasConfig, space: Space, genome: np.ndarray, splits: dict,
                   workdir: pathlib.Path, seed: int = 0) -> float:
    """Test accuracy of `genome` trained from scratch through the masked step (see module doc)."""
    cfg = dataclasses.replace(config, seed=seed)
    arch = genome_to_arch(space, genome)
    state = training.init_supernet_state(cfg, space)
    step = training.make_supernet_step(cfg, space)
    base = training.make_supernet_batches(cfg, space, 0.0, splits["train"])

    def batch_fn(s):
        return base(s) | {"arch": arch, "patch": int(arch["patch"])}

    state, _ = train_lib.fit(state, step, batch_fn, loop=cfg.supernet.loop, workdir=workdir, seed=seed,
                             desc="vitas masked retrain")
    x, y = splits["test"]
    return float(make_fitness(space, state.params, x, y, 1)(np.asarray(genome)[None])[0])


def uniform_baseline(space: Space, target_flops: float) -> np.ndarray:
    """The uniform net (same heads/qkv/MLP in every active block, first d blocks active) whose
    analytic FLOPs are closest to `target_flops`; ties: more heads, then deeper."""
    L = space.depth
    best, best_key = None, None
    for p, e, h, q, m, d in itertools.product(range(len(space.patch_sizes)), range(len(space.embed_widths)),
                                             range(1, len(space.heads) + 1), range(len(space.qkv_widths)),
                                             range(len(space.mlp_widths)), range(1, L + 1)):
        ops = np.array([h] * d + [0] * (L - d))
        g = np.concatenate([[p, e], ops, np.where(ops > 0, q, 0), np.where(ops > 0, m, 0)]).astype(np.int64)
        f = float(space.flops(space.from_genome(g[None]))[0])
        key = (abs(f - target_flops), -h, -d)
        if best_key is None or key < best_key:
            best, best_key = g, key
    return best


def distinct_counts(space: Space, genomes: np.ndarray) -> dict:
    """Distinct encodings and distinct standalone nets (canonical forms) among `genomes`; the
    same for the op genes alone (block placements: identity or head count)."""
    g = np.asarray(genomes)
    canon = space.to_genome(space.canonical(space.from_genome(g)))
    L = space.depth
    ops = g[:, 2:2 + L]
    return {"n": int(len(g)), "distinct_encodings": int(len(np.unique(g, axis=0))),
            "distinct_nets": int(len(np.unique(canon, axis=0))),
            "distinct_op_encodings": int(len(np.unique(ops, axis=0))),
            "distinct_op_sequences": int(len(np.unique(canon[:, 2:2 + L], axis=0)))}


def training_samples(config: configs.VitasConfig, space: Space, p_id: float, steps: int) -> np.ndarray:
    """The genomes the supernet trained on, step by step (the batch stream's own sampler)."""
    return np.concatenate([
        space.to_genome(space.sample(np.random.default_rng([config.seed, training.ARCH_STREAM, s]), 1, p_id,
                                     shift=config.supernet.identity_shifting)) for s in range(steps)])


def _runs(runs: pathlib.Path) -> dict[str, pathlib.Path]:
    return {p.name: p for p in sorted(runs.iterdir()) if RUN_NAME.match(p.name)
            and (p / "supernet" / "checkpoints").exists()}


def part_retrain(base: configs.VitasConfig, runs: pathlib.Path, out: dict) -> None:
    space = Space(base.space)
    splits = data_lib.splits(base)
    probes = probe_archs(base, space)
    out["probes"] = probes.tolist()
    out["probe_flops"] = space.flops(space.from_genome(probes)).tolist()
    done = out.setdefault("retrained", {})
    todo = [(f"probe{i}", probes[i], 0) for i in range(N_RETRAIN)]
    for name, wd in _runs(runs).items():
        res = wd / "search" / "result.json"
        if res.exists():
            r = json.loads(res.read_text())
            seed = int(RUN_NAME.match(name)["seed"])
            ga = space.to_genome({k: np.asarray(r["best"][k])[None] for k in ("patch", "embed", "ops", "qkv", "mlp")})
            todo.append((f"{name}/ga", ga[0], seed))
            if "random" in r:
                rb = space.to_genome({k: np.asarray(r["random"]["best"][k])[None]
                                      for k in ("patch", "embed", "ops", "qkv", "mlp")})
                todo.append((f"{name}/random", rb[0], seed))
            todo.append((f"{name}/uniform", uniform_baseline(space, float(r["best"]["flops"])), seed))
    for name, g, seed in todo:
        if name in done:
            continue
        acc = retrain_masked(base, space, g, splits, runs / "retrain" / name.replace("/", "_"), seed=seed)
        done[name] = {"genome": np.asarray(g).tolist(), "test_accuracy": acc,
                      "flops": float(space.flops(space.from_genome(np.asarray(g)[None]))[0])}
        workdir_lib.write_json(runs / "retrained.json", out)


def _counts(cfg, space: Space, wd: pathlib.Path, sup: dict) -> dict:
    out = {"train_samples": distinct_counts(space, training_samples(cfg, space, sup.get("p_id", cfg.supernet.p_id),
                                                                    cfg.supernet.loop.num_steps))}
    ga = wd / "search" / "ga_state.npz"
    if ga.exists():
        with np.load(ga) as z:
            out["ga_evaluated"] = distinct_counts(space, z["seen"])
    return out


def part_probe(base: configs.VitasConfig, runs: pathlib.Path, out: dict, retrained: dict) -> None:
    from jaxlab.vitas import run as run_lib

    probes = probe_archs(base, Space(base.space))
    table = out.setdefault("runs", {})
    for name, wd in _runs(runs).items():
        summary = json.loads((wd / "summary.json").read_text())["results"] if (wd / "summary.json").exists() else {}
        sup = summary.get("supernet", {})
        if not sup:
            continue  # unfinished; a later pass picks it up
        if name in table and ("search" in table[name] or "search" not in summary) and "kendall_tau" in table[name]:
            row = table[name]
            if "distinct_op_sequences" not in row["train_samples"]:  # counts added later: cheap, recomputed
                cfg = workdir_lib.load_config(wd, configs.VitasConfig)
                row.update(_counts(cfg, Space(cfg.space), wd, row["supernet"]))
            continue  # done in an earlier pass
        loaded = run_lib.load(wd)
        cfg, space = loaded.config, loaded.extras["space"]
        val = data_lib.splits(cfg)["val"]
        acc = make_fitness(space, loaded.state.params, *val, N_PROBE)(probes)
        row = {"variant": RUN_NAME.match(name)["variant"], "seed": cfg.seed, "probe_val_accuracy": acc.tolist(),
               "supernet": sup} | _counts(cfg, space, wd, sup)
        ys = [retrained.get("retrained", {}).get(f"probe{i}", {}).get("test_accuracy") for i in range(N_RETRAIN)]
        if all(v is not None for v in ys):
            tau = stats.kendalltau(acc[:N_RETRAIN], ys)
            row["kendall_tau"] = float(tau.statistic)
            row["kendall_p"] = float(tau.pvalue)
        if "search" in summary:
            row["search"] = {k: summary["search"][k] for k in ("best_fitness", "evaluations")} | {
                "random_best_fitness": summary["search"].get("random", {}).get("best_fitness"),
                "ga_flops": summary["search"]["best"]["flops"]}
        table[name] = row
        workdir_lib.write_json(runs / "studies.json", out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", required=True, help="the base config (retraining recipe, probe set's space)")
    ap.add_argument("runs")
    ap.add_argument("--part", choices=("retrain", "probe", "all"), default="all")
    args = ap.parse_args(argv)
    runtime.enable_compilation_cache()  # an entry point, like the jaxlab command line
    base = config_lib.resolve(args.config, configs.get_config)
    runs = pathlib.Path(args.runs)
    read = lambda name: json.loads((runs / name).read_text()) if (runs / name).exists() else {}
    retrained = read("retrained.json") | {"config": args.config}
    if args.part in ("retrain", "all"):
        part_retrain(base, runs, retrained)
    if args.part in ("probe", "all"):
        out = read("studies.json") | {"config": args.config}
        part_probe(base, runs, out, retrained)
        workdir_lib.write_json(runs / "studies.json", out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
