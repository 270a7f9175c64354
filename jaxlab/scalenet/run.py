"""CLI actions of ScaleNet: `train-supernet`, `search`, `retrain`, `rank`, `evaluate`.

    jaxlab scalenet train-supernet --config default --workdir runs/scalenet
    jaxlab scalenet search         --config default --workdir runs/scalenet
    jaxlab scalenet retrain        --config default --workdir runs/scalenet
    jaxlab scalenet rank           --config default --workdir runs/scalenet
    jaxlab scalenet evaluate       --workdir runs/scalenet

All actions of one run share a workdir: `checkpoints/` and `metrics.jsonl` (supernet),
`search/` (`mcea.json`, `ga_<t>.npz`: resumable), `family.json`, `retrain/<family>_s<stage>/`
(one resumable training per retrained member), `retrain.json`, `rank/arch<i>/` and
`rank.json` (the rank study), `figures/`, and
`summary.json` with one section per action. `search.supernet_dir` / `retrain.search_dir`
point at another run's workdir instead (ablations that share one supernet).
Every action resumes a killed run, and rerunning a finished one leaves its results as
they were. Results go to stdout as JSON; progress to stderr.
"""

from __future__ import annotations

import json
import pathlib
import sys

import numpy as np

from jaxlab.core import actions
from jaxlab.core import train as train_lib
from jaxlab.core import workdir as workdir_lib
from jaxlab.core.config import ConfigError
from jaxlab.scalenet import ranking, released, report, supernet
from jaxlab.scalenet import retrain as retrain_lib
from jaxlab.scalenet import search as search_lib
from jaxlab.scalenet.configs import ScaleNetConfig
from jaxlab.scalenet.data import Data
from jaxlab.scalenet.models import SuperNet
from jaxlab.scalenet.space import Space

__all__ = ["train_supernet", "search", "retrain", "rank", "evaluate", "load", "ACTIONS"]


def _log(message: str) -> None:
    print(f"scalenet search: {message}", file=sys.stderr, flush=True)


def _read_json(path: pathlib.Path, what: str):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise workdir_lib.WorkdirError(f"{path}: cannot read the {what} ({e})") from None


@actions.action
def train_supernet(config: ScaleNetConfig, workdir: pathlib.Path) -> dict:
    """Trains the super-supernet with hierarchical (or uniform) sampling; resumes a killed run.

    Returns (and writes to summary.json, section "train-supernet") the steps, the final
    training loss, the training times over all segments, and the inherited accuracy of
    `supernet.stage_archs` sampled sub-networks per scaling stage.
    """
    space = Space(config.space)
    data = Data(config.data)
    net, state, history = supernet.train(config, space, workdir, data)
    times = train_lib.run_times(workdir)
    losses = [row["loss"] for row in history if "loss" in row]
    results = {
        "steps": int(state.step),
        "sampler": config.supernet.sampler,
        "final_loss": losses[-1] if losses else None,
        "train_time_s": times["train_time_s"],
        "wall_time_s": times["wall_time_s"],
        "segments": len(times["segments"]),
        "inherited_accuracy": supernet.stage_accuracy(config, space, net, state.params, data),
    }
    report.plot_supernet_loss(workdir)
    return workdir_lib.update_summary(workdir, "train-supernet", results, config, seed=config.seed)


@actions.action
def search(config: ScaleNetConfig, workdir: pathlib.Path) -> dict:
    """Searches the base model and its scaling (MCEA, or the decoupled baseline); writes family.json.

    Candidates are scored with the supernet of this workdir (or `search.supernet_dir`);
    the search resumes from `search/`. The family holds the searched stages and the
    extrapolated ones up to `search.extrapolate_to`.
    """
    space = Space(config.space)
    data = Data(config.data)
    sdir = pathlib.Path(config.search.supernet_dir) if config.search.supernet_dir else workdir
    net, state, step = supernet.load(config, space, sdir)
    score = supernet.make_scorer(config, space, net, state.params, data)
    if config.search.mode == "per_budget":
        return _search_per_budget(config, workdir, space, score, step)
    st = search_lib.mcea(space, config.search, score, workdir_lib.stage_dir(workdir, "search"), seed=config.seed,
                         progress=_log)
    base = np.asarray(st["base"])
    scaling = {int(k): tuple(v) for k, v in st["scaling"].items()}
    extra = search_lib.extrapolate(space, scaling, config.search.extrapolate_to)
    fam = search_lib.family(space, base, {**scaling, **extra})
    for row in fam:
        row["extrapolated"] = row["stage"] in extra
    above_stages = list(range(max(scaling) + 1, space.num_scaling_stages))
    above, above_evals = {}, 0
    if above_stages:  # stages the supernet holds but the search left out: ranked once for the final base
        counter = _Counted(score)
        above, _ = search_lib.scaling_step(space, config.search, counter, base, above_stages)
        above_evals = counter.count
    result = {"base": base.tolist(), "scaling": {str(k): list(v) for k, v in scaling.items()},
              "extrapolated": {str(k): list(v) for k, v in extra.items()},
              "searched_above": {str(k): list(v) for k, v in above.items()},
              "searched_above_evaluations": above_evals, "family": fam,
              "fitness": st["fitness"], "mode": config.search.mode,
              "arch_evaluations": int(st["arch_evaluations"]), "ga_evaluations": int(st["evaluations"]),
              "search_seconds": st["seconds"], "supernet_step": step, "history": st["history"]}
    workdir_lib.write_json(workdir / "family.json", result)
    summary = {k: v for k, v in result.items() if k != "history"}
    return workdir_lib.update_summary(workdir, "search", summary, config, seed=config.seed)


class _Counted:
    """A scorer that counts the architectures it scores."""

    def __init__(self, score):
        self.score, self.count = score, 0

    def __call__(self, archs: dict, r: int) -> np.ndarray:
        self.count += len(archs["ops"])
        return self.score(archs, r)


def _search_per_budget(config: ScaleNetConfig, workdir: pathlib.Path, space: Space, score, step: int) -> dict:
    """`search.mode="per_budget"`: one GA per FLOPs budget; family.json lists a base per member."""
    st = search_lib.per_budget(space, config.search, score, workdir_lib.stage_dir(workdir, "search"),
                               seed=config.seed, progress=_log)
    seconds = st["seconds"]
    members = st["members"]
    fam = []
    for m in members:
        row = search_lib.family(space, m["base"], {m["stage"]: (m["d"], m["w"], m["r"])} if m["stage"] else {})[-1]
        fam.append({**row, "base": m["base"], "fitness": m["fitness"]})
    result = {"mode": "per_budget", "members": members, "family": fam, "f_ref": st["f_ref"],
              "arch_evaluations": st["arch_evaluations"], "ga_evaluations": st["evaluations"],
              "search_seconds": seconds, "supernet_step": step}
    workdir_lib.write_json(workdir / "family.json", result)
    return workdir_lib.update_summary(workdir, "search", {k: v for k, v in result.items() if k != "members"},
                                      config, seed=config.seed)


@actions.action
def retrain(config: ScaleNetConfig, workdir: pathlib.Path) -> dict:
    """Retrains the searched family (and compound scaling) from scratch; writes retrain.json.

    Each member trains in its own `retrain/<family>_s<stage>/` and resumes there; the
    family comes from this workdir's family.json (or `retrain.search_dir`'s), or is the
    released family with `retrain.family_preset="released"`.
    """
    space = Space(config.space)
    if config.retrain.family_preset == "released":
        try:
            family, path = released.released_family(space), "retrain.family_preset='released'"
        except ValueError as e:
            raise ConfigError(f"config field 'retrain.family_preset': {e} (use the paper space)") from None
    else:
        sdir = pathlib.Path(config.retrain.search_dir) if config.retrain.search_dir else workdir
        path = sdir / "family.json"
        if not path.exists():
            raise workdir_lib.WorkdirError(f"{path} does not exist; run `jaxlab scalenet search` first "
                                           "(or set retrain.search_dir)")
        family = _read_json(path, "searched family")
    rows = retrain_lib.retrain_family(config, space, family, Data(config.data), workdir, source=str(path))
    workdir_lib.write_json(workdir / "retrain.json", rows)
    report.plot_family_accuracy(workdir, rows)
    return workdir_lib.update_summary(workdir, "retrain", {"rows": rows}, config, seed=config.seed)


@actions.action
def rank(config: ScaleNetConfig, workdir: pathlib.Path) -> dict:
    """Kendall tau between the inherited and the from-scratch accuracy of `rank.num_archs`
    sampled sub-networks, against the ranking by MACs alone; writes rank.json.

    The supernet is this workdir's (or `search.supernet_dir`'s); each sub-network is
    retrained in `rank/arch<i>/` with the `retrain` settings and resumes there.
    """
    space = Space(config.space)
    data = Data(config.data)
    sdir = pathlib.Path(config.search.supernet_dir) if config.search.supernet_dir else workdir
    net, state, step = supernet.load(config, space, sdir)
    study = {**ranking.rank_study(config, space, net, state.params, data, workdir), "supernet_step": step}
    workdir_lib.write_json(workdir / "rank.json", study)
    report.plot_rank(workdir, study)
    return workdir_lib.update_summary(workdir, "rank", {k: v for k, v in study.items() if k != "rows"}, config,
                                      seed=config.seed)


def load(workdir: str | pathlib.Path) -> actions.Loaded:
    """The config, the supernet and its newest intact checkpoint, and the search and
    retraining results of a finished or interrupted run.

    `model` is the `SuperNet`, `state` its `TrainState` (from this workdir, else from
    `search.supernet_dir`; None when neither holds one), `step` its step (0 if none);
    `extras` holds `space` and, when written, `family` (family.json), `retrain`
    (retrain.json rows) and `rank` (rank.json). A workdir with none of these is a `WorkdirError`.
    """
    workdir = pathlib.Path(workdir)
    config = workdir_lib.load_config(workdir, ScaleNetConfig)
    space = Space(config.space)
    extras: dict = {"space": space}
    for name in ("family", "retrain", "rank"):
        path = workdir / f"{name}.json"
        if path.exists():
            extras[name] = _read_json(path, name)
    dirs = [workdir] + ([pathlib.Path(config.search.supernet_dir)] if config.search.supernet_dir else [])
    for d in dirs:
        try:
            net, state, step = supernet.load(config, space, d)
            return actions.Loaded(config, net, state, step, extras)
        except workdir_lib.WorkdirError:
            continue
    if len(extras) == 1:
        raise workdir_lib.WorkdirError(f"{workdir} holds no supernet checkpoint, family.json or retrain.json "
                                       "(run `jaxlab scalenet train-supernet` first)")
    return actions.Loaded(config, SuperNet(space), None, 0, extras)


@actions.action(read_only=True)
def evaluate(config: ScaleNetConfig, workdir: pathlib.Path) -> dict:
    """Inherited accuracy per scaling stage of the newest supernet checkpoint, and the run's family and retraining.

    Written to evaluation.json.
    """
    run = load(workdir)
    res: dict = {}
    if run.state is not None:
        res["supernet_step"] = run.step
        res["inherited_accuracy"] = supernet.stage_accuracy(config, run.extras["space"], run.model,
                                                            run.state.params, Data(config.data))
    if "family" in run.extras:
        res["family"] = run.extras["family"]["family"]
    if "retrain" in run.extras:
        res["retrain"] = [{k: r[k] for k in ("family", "stage", "macs", "test_accuracy")}
                          for r in run.extras["retrain"]]
    workdir_lib.write_json(workdir / "evaluation.json", res)
    return res


ACTIONS = actions.collect(train_supernet, search, retrain, rank, evaluate)
