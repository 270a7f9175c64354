"""Actions of ViTAS: `train-supernet`, `search`, `retrain`, `evaluate` (one workdir, a stage each)."""

from __future__ import annotations

import json
import pathlib

import jax
import numpy as np

from jaxlab.core import actions
from jaxlab.core import train as train_lib
from jaxlab.core import workdir as workdir_lib
from jaxlab.core.errors import JaxlabError
from jaxlab.vitas import data as data_lib
from jaxlab.vitas import search as search_lib
from jaxlab.vitas import training
from jaxlab.vitas.configs import VitasConfig
from jaxlab.vitas.space import Space

__all__ = ["train_supernet", "search", "retrain", "evaluate", "load", "ACTIONS"]


def _band(config: VitasConfig, space: Space) -> tuple[float, float]:
    s = config.search
    return (s.flops_min, s.flops_max) if s.flops_max > 0 else space.default_band()


def _p_id(config: VitasConfig, space: Space) -> tuple[float, float]:
    c = config.supernet
    return space.tune_p_id(_band(config, space), p_id=c.p_id, step=c.p_id_step, samples=c.p_id_samples,
                           seed=config.seed)


def _supernet_state(config: VitasConfig, space: Space, workdir: pathlib.Path):
    state, step = train_lib.load_state(workdir / "supernet", training.init_supernet_state(config, space),
                                       keep=config.supernet.loop.keep)
    return state, step


@actions.action(name="train-supernet")
def train_supernet(config: VitasConfig, workdir: pathlib.Path) -> dict:
    """Trains the superformer (sampled subnets, identity shifting, weak augmentation); resumes."""
    space = Space(config.space)
    p_id, mean_flops = _p_id(config, space)
    splits = data_lib.splits(config)
    step = training.make_supernet_step(config, space)
    state, history = train_lib.fit(
        training.init_supernet_state(config, space), step,
        training.make_supernet_batches(config, space, p_id, splits["train"]), loop=config.supernet.loop,
        workdir=workdir_lib.stage_dir(workdir, "supernet"), seed=config.seed, desc="vitas supernet")
    losses = [r["loss"] for r in history if "loss" in r]
    times = train_lib.run_times(workdir / "supernet")
    results = {"p_id": p_id, "mean_sample_flops": mean_flops, "band": list(_band(config, space)),
               "final_loss": losses[-1] if losses else None, "steps": int(jax.device_get(state.step)),
               "sharing": config.space.sharing, "identity_shifting": config.supernet.identity_shifting,
               "train_time_s": times["train_time_s"]}
    return workdir_lib.update_summary(workdir, "supernet", results, config, seed=config.seed)


@actions.action
def search(config: VitasConfig, workdir: pathlib.Path) -> dict:
    """Genetic search in the FLOPs band with inherited weights, plus a random-search baseline."""
    space = Space(config.space)
    state, step = _supernet_state(config, space, workdir)
    p_id, _ = _p_id(config, space)
    band = _band(config, space)
    val = data_lib.splits(config)["val"]
    n = min(config.search.eval_batch, len(val[0]))
    val = (val[0][:n], val[1][:n])
    s = config.search
    stage = workdir_lib.stage_dir(workdir, "search")
    ga = search_lib.run_search(space, state.params, val, band, p_id, pop_size=s.pop_size, generations=s.generations,
                               seed=config.seed, shift=config.supernet.identity_shifting,
                               feasible_offspring=s.feasible_offspring, checkpoint=stage / "ga_state.npz")
    best, fit = ga.best()
    results = {"best": search_lib.arch_json(space, search_lib.genome_to_arch(space, best)), "best_fitness": fit,
               "evaluations": ga.num_evaluations, "best_history": ga.best_history.tolist(), "supernet_step": step}
    if s.random_baseline:
        g, f, _ = search_lib.random_search(space, state.params, val, band, p_id, ga.num_evaluations,
                                           pop_size=s.pop_size, seed=config.seed,
                                           shift=config.supernet.identity_shifting)
        results["random"] = {"best": search_lib.arch_json(space, search_lib.genome_to_arch(space, g)),
                             "best_fitness": f}
    workdir_lib.write_json(stage / "result.json", results)
    return workdir_lib.update_summary(workdir, "search", results, config, seed=config.seed)


def _searched(workdir: pathlib.Path, space: Space) -> dict:
    path = workdir / "search" / "result.json"
    if not path.exists():
        raise JaxlabError(f"{path} does not exist: run `jaxlab vitas search` on this workdir first")
    best = json.loads(path.read_text())["best"]
    return space.check({k: np.asarray(best[k]) for k in ("patch", "embed", "ops", "qkv", "mlp")})


@actions.action
def retrain(config: VitasConfig, workdir: pathlib.Path) -> dict:
    """Retrains the searched net from scratch (strong augmentation by default); resumes."""
    space = Space(config.space)
    arch = _searched(workdir, space)
    splits = data_lib.splits(config)
    state, step, batch_fn, eval_fn, model = training.make_retrain(config, space, arch, splits["train"],
                                                                  splits["test"])
    state, history = train_lib.fit(state, step, batch_fn, loop=config.retrain.loop, eval_fn=eval_fn,
                                   workdir=workdir_lib.stage_dir(workdir, "retrain"), seed=config.seed,
                                   desc="vitas retrain")
    results = {"test_accuracy": eval_fn(state)["accuracy"], "arch": search_lib.arch_json(space, arch),
               "num_params": int(sum(x.size for x in jax.tree.leaves(state.params))),
               "steps": int(jax.device_get(state.step))}
    return workdir_lib.update_summary(workdir, "retrain", results, config, seed=config.seed)


def load(workdir: str | pathlib.Path) -> actions.Loaded:
    """Config, superformer and newest intact supernet state (retrained state in extras if any)."""
    workdir = pathlib.Path(workdir)
    config = workdir_lib.load_config(workdir, VitasConfig)
    space = Space(config.space)
    state, step = _supernet_state(config, space, workdir)
    extras = {"space": space}
    if (workdir / "search" / "result.json").exists() and (workdir / "retrain" / "checkpoints").exists():
        arch = _searched(workdir, space)
        splits = data_lib.splits(config)
        rs, _, _, eval_fn, model = training.make_retrain(config, space, arch, splits["train"], splits["test"])
        extras |= {"retrained": train_lib.load_state(workdir / "retrain", rs, keep=config.retrain.loop.keep)[0],
                   "retrained_model": model, "retrain_eval": eval_fn}
    from jaxlab.vitas.models import Superformer

    return actions.Loaded(config, Superformer(space), state, step, extras)


@actions.action(read_only=True)
def evaluate(config: VitasConfig, workdir: pathlib.Path) -> dict:
    """Supernet accuracy of the searched net and test accuracy of its retraining (evaluation.json)."""
    run = load(workdir)
    space = run.extras["space"]
    results = {"supernet_step": run.step}
    if (workdir / "search" / "result.json").exists():
        arch = _searched(workdir, space)
        val = data_lib.splits(run.config)["val"]
        g = space.to_genome({k: np.asarray(v)[None] for k, v in arch.items()})
        results["supernet_val_accuracy"] = float(search_lib.make_fitness(space, run.state.params, *val, 1)(g)[0])
    if "retrained" in run.extras:
        results["retrained_test_accuracy"] = run.extras["retrain_eval"](run.extras["retrained"])["accuracy"]
    workdir_lib.write_json(workdir / "evaluation.json", results)
    return results


ACTIONS = actions.collect(train_supernet, search, retrain, evaluate)
