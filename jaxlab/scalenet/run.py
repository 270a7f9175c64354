"""CLI actions of ScaleNet: `train-supernet`, `search`, `retrain`, `evaluate`.

    jaxlab scalenet train-supernet --config default --workdir runs/scalenet
    jaxlab scalenet search         --config default --workdir runs/scalenet
    jaxlab scalenet retrain        --config default --workdir runs/scalenet
    jaxlab scalenet evaluate       --workdir runs/scalenet

All actions of one run share a workdir: `checkpoints/` (supernet), `search/`
(`mcea.json`, `ga_<t>.npz`: resumable), `family.json`, `retrain.json`, `figures/`,
`summary.json`. `search.supernet_dir` / `retrain.search_dir` point at another run's
workdir instead (ablations that share one supernet).
"""

from __future__ import annotations

import json
import pathlib
import time
from typing import Any

import numpy as np

from jaxlab.core import workdir as workdir_lib
from jaxlab.scalenet import search as search_lib
from jaxlab.scalenet import training
from jaxlab.scalenet.configs import ScaleNetConfig
from jaxlab.scalenet.sampler import sample_batch
from jaxlab.scalenet.space import Space

__all__ = ["train_supernet", "search", "retrain", "evaluate", "load", "ACTIONS"]


def _summary_update(workdir: pathlib.Path, key: str, results: dict, config) -> dict:
    path = workdir / "summary.json"
    old = json.loads(path.read_text())["results"] if path.exists() else {}
    old[key] = results
    workdir_lib.write_summary(workdir, old, config, seed=config.seed)
    return results


def supernet_stage_accuracy(config: ScaleNetConfig, space: Space, net, params, data, n: int = 8) -> dict:
    """Mean accuracy of `n` hierarchically sampled sub-networks per scaling stage."""
    score = training.make_scorer(config, space, net, params, data)
    archs, r, info = sample_batch(space, np.random.default_rng([config.seed, 5]), 40 * n)
    out = {}
    for s in range(space.num_scaling_stages):
        idx = np.nonzero(info["stage"] == s)[0][:n]
        accs = []
        for res in np.unique(r[idx]):
            sel = idx[r[idx] == res]
            accs.extend(score({k: v[sel] for k, v in archs.items()}, int(res)).tolist())
        out[f"stage{s}"] = float(np.mean(accs)) if accs else float("nan")
    return out


def train_supernet(config: ScaleNetConfig, workdir) -> dict:
    workdir = pathlib.Path(workdir)
    space = Space(config.space)
    data = training.Data(config)
    t0 = time.perf_counter()
    net, state, history = training.train_supernet(config, space, workdir, data)
    seconds = time.perf_counter() - t0
    acc = supernet_stage_accuracy(config, space, net, state.params, data)
    _plot_history(workdir, history, "supernet_loss")
    return _summary_update(workdir, "train-supernet", {
        "steps": int(state.step), "train_seconds": seconds, "sampler": config.supernet.sampler,
        "final_loss": history[-1]["loss"] if history else None, "inherited_accuracy": acc}, config)


def _plot_history(workdir, history, name):
    import matplotlib.pyplot as plt

    rows = [h for h in history if "loss" in h]
    if not rows:
        return
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.plot([h["step"] for h in rows], [h["loss"] for h in rows])
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    workdir_lib.save_figure(fig, workdir, name)


def search(config: ScaleNetConfig, workdir) -> dict:
    workdir = pathlib.Path(workdir)
    space = Space(config.space)
    data = training.Data(config)
    sdir = pathlib.Path(config.search.supernet_dir) if config.search.supernet_dir else workdir
    net, params, step = training.load_supernet(config, space, sdir)
    score = training.make_scorer(config, space, net, params, data)
    t0 = time.perf_counter()
    st = search_lib.mcea(space, config.search, score, workdir / "search", progress=print)
    seconds = time.perf_counter() - t0
    base = np.asarray(st["base"])
    scaling = {int(k): tuple(v) for k, v in st["scaling"].items()}
    extra = search_lib.extrapolate(space, scaling, config.search.extrapolate_to)
    fam = search_lib.family(space, base, {**scaling, **extra})
    for row in fam:
        row["extrapolated"] = row["stage"] in extra
    result = {"base": base.tolist(), "scaling": {str(k): list(v) for k, v in scaling.items()},
              "extrapolated": {str(k): list(v) for k, v in extra.items()}, "family": fam,
              "fitness": st["fitness"], "mode": config.search.mode,
              "arch_evaluations": int(score.count), "ga_evaluations": int(st["evaluations"]),
              "search_seconds": seconds, "supernet_step": step, "history": st["history"]}
    workdir_lib.write_json(workdir / "family.json", result)
    return _summary_update(workdir, "search", {k: v for k, v in result.items() if k != "history"}, config)


def retrain(config: ScaleNetConfig, workdir) -> dict:
    workdir = pathlib.Path(workdir)
    rc = config.retrain
    space = Space(config.space)
    data = training.Data(config)
    sdir = pathlib.Path(rc.search_dir) if rc.search_dir else workdir
    path = sdir / "family.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist; run `jaxlab scalenet search` first")
    fam = json.loads(path.read_text())
    base = np.asarray(fam["base"])
    trip = {0: (1.0, 1.0, float(space.cfg.res_grid[0][0]))}
    trip.update({int(k): tuple(v) for k, v in fam["scaling"].items()})
    trip.update({int(k): tuple(v) for k, v in fam["extrapolated"].items()})
    wanted = [int(s) for s in rc.stages.split(",") if s.strip()]
    missing = [s for s in wanted if s not in trip]
    if missing:
        raise ValueError(f"retrain.stages asks for stages {missing}, but {path} holds {sorted(trip)}")
    families = {"searched": {s: trip[s] for s in wanted}}
    if rc.compound:
        comp = search_lib.compound_scaling(space, base, [s for s in wanted if s > 0], rc.compound_alpha,
                                           rc.compound_beta, rc.compound_gamma)
        families["compound"] = {0: trip[0], **comp}
    rows = []
    for name, fam_t in families.items():
        for s, (d, w, r) in sorted(fam_t.items()):
            if name == "compound" and s == 0:
                continue  # identical to the searched S0
            arch = space.scale(base, d, w)
            res = training.retrain(config, space, arch, int(r), data, seed=rc.seed)
            row = {"family": name, "stage": s, "d": d, "w": w, **res}
            print(json.dumps(row))
            rows.append(row)
    f0 = float(space.base_macs(base))
    for row in rows:
        row["ratio"] = row["macs"] / f0
    workdir_lib.write_json(workdir / "retrain.json", rows)
    _plot_family(workdir, rows)
    return _summary_update(workdir, "retrain", {"rows": rows}, config)


def plot_family(ax, rows, annotate: bool = False) -> None:
    """Test accuracy against MMACs of the searched and compound families (S0 shared)."""
    s0 = [r for r in rows if r["stage"] == 0]
    for name, marker in (("searched", "o-"), ("compound", "s--")):
        rr = sorted([r for r in rows if r["family"] == name] + (s0 if name == "compound" else []),
                    key=lambda r: r["macs"])
        if rr:
            ax.plot([r["macs"] / 1e6 for r in rr], [100 * r["test_accuracy"] for r in rr], marker, label=name)
            if annotate:
                for r in rr:
                    ax.annotate(f"S{r['stage']}", (r["macs"] / 1e6, 100 * r["test_accuracy"]), fontsize=7)
    ax.set_xscale("log")


def _plot_family(workdir, rows):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    plot_family(ax, rows)
    ax.set_xlabel("MMACs")
    ax.set_ylabel("test accuracy (%)")
    ax.legend()
    workdir_lib.save_figure(fig, workdir, "family_accuracy")


def load(workdir) -> dict:
    """Config, space, supernet parameters (if trained), family and retrain results of a run."""
    workdir = pathlib.Path(workdir)
    from jaxlab.scalenet.configs import ScaleNetConfig as _C

    config = workdir_lib.load_config(workdir, _C)
    space = Space(config.space)
    out: dict[str, Any] = {"config": config, "space": space}
    try:
        out["supernet"], out["params"], out["step"] = training.load_supernet(config, space, workdir)
    except FileNotFoundError:
        pass
    for name in ("family", "retrain"):
        p = workdir / f"{name}.json"
        if p.exists():
            out[name] = json.loads(p.read_text())
    return out


def evaluate(config: ScaleNetConfig, workdir) -> dict:
    """Inherited accuracy per scaling stage of the latest supernet checkpoint, and what
    the search and retraining of this workdir found."""
    workdir = pathlib.Path(workdir)
    run = load(workdir)
    res: dict[str, Any] = {}
    if "params" in run:
        data = training.Data(config)
        res["supernet_step"] = run["step"]
        res["inherited_accuracy"] = supernet_stage_accuracy(config, run["space"], run["supernet"], run["params"],
                                                            data)
    if "family" in run:
        res["family"] = run["family"]["family"]
    if "retrain" in run:
        res["retrain"] = [{k: r[k] for k in ("family", "stage", "macs", "test_accuracy")} for r in run["retrain"]]
    if not res:
        raise FileNotFoundError(f"{workdir} holds no supernet checkpoint, family.json or retrain.json")
    return res


evaluate.read_only = True

ACTIONS = {"train-supernet": train_supernet, "search": search, "retrain": retrain, "evaluate": evaluate}
