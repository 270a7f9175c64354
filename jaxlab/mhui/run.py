"""Actions of `jaxlab mhui`: `train`, `attack` and `evaluate` on one workdir.

    train     trains the multi-exit network (all heads jointly), the deep ensemble and the
              reverse-KL Prior Network, each in its own WORKDIR/<network>/ with
              checkpoints (`mhui`, `ensemble`, `prior_net`); a killed run resumes.
    attack    white-box attacks on the test set against each network's own classifier and
              the adaptive attack on MH-UI (`attacks.craft`); writes WORKDIR/attacks.npz.
    evaluate  detection AUROC/AUPR of every detector, ablations over heads / estimator /
              score (`detect.detection_results`); writes WORKDIR/tables.md, figures/*.png.
    protocol  validation-chosen detectors under strong adaptive attacks
              (`protocol.run_protocol`); writes WORKDIR/protocol.json, protocol.md.

Each action writes its own section of summary.json. `attack` and `evaluate` read the
run's own config.json (from Python, `evaluate(config, workdir)` may score with another
`detect` section).
"""

from __future__ import annotations

import functools
import json
import pathlib
import sys

import jax
import numpy as np

from jaxlab.core import actions, parallel
from jaxlab.core import config as config_lib
from jaxlab.core import train as train_lib
from jaxlab.core import workdir as workdir_lib
from jaxlab.mhui import attacks, detect, protocol, report
from jaxlab.mhui import data as data_lib
from jaxlab.mhui import train as training
from jaxlab.mhui.configs import MhuiConfig

__all__ = ["ACTIONS", "train", "attack", "evaluate", "protocol_action", "load"]

_log = functools.partial(print, file=sys.stderr)


def _final_eval(history: list[dict], prefix: str) -> dict:
    """The last evaluation row of a network's history (eval metrics starting with `prefix`)."""
    rows = [r for r in history if any(k.startswith(prefix) for k in r)]
    return rows[-1] if rows else {}


@actions.action
def train(config: MhuiConfig, workdir: pathlib.Path) -> dict:
    """Trains the multi-exit network, the deep ensemble and the Prior Network; resumes a killed run.

    Returns (and writes to summary.json's `train` section) every head's test accuracy, the
    baselines' accuracies, and each network's steps and times over all of its segments.
    """
    data = data_lib.load_dataset(config.data)
    mesh = parallel.make_mesh(config.loop.num_devices or None) if config.loop.num_devices != 1 else None
    results: dict = {}
    steps, times, segments = {}, {}, {}
    for name in training.networks_of(config):
        net_dir = workdir_lib.stage_dir(workdir, name)
        _, state, history = training.train_network(config, name, data, net_dir, mesh=mesh)
        steps[name] = int(jax.device_get(state.step))
        run_times = train_lib.run_times(net_dir)
        times[name] = {k: run_times[k] for k in ("train_time_s", "eval_time_s", "wall_time_s")}
        segments[name] = len(run_times["segments"])
        final = _final_eval(history, "eval_test_acc")
        if name == "mhui":
            last = f"eval_test_acc_head{config.model.num_heads - 1}"
            results["mhui_head_test_acc"] = [final[f"eval_test_acc_head{h}"] for h in range(config.model.num_heads)]
            results["mhui_best_test_acc"] = max(r[last] for r in history if last in r)
        elif name == "ensemble":
            results["ensemble_member_test_acc"] = [final[f"eval_test_acc_member{m}"]
                                                   for m in range(config.baselines.ensemble_size)]
            results["ensemble_test_acc"] = final["eval_test_acc_ensemble"]
        else:
            results[f"{name}_test_acc"] = final["eval_test_acc"]
    results.update({"steps": steps, "times": times, "segments": segments,
                    "train_time_s": sum(t["train_time_s"] for t in times.values()),
                    "train_wall_time_s": sum(t["wall_time_s"] for t in times.values())})
    report.plot_training(workdir, list(steps))
    return workdir_lib.update_summary(workdir, "train", results, config, seed=config.seed)


def load(workdir: str | pathlib.Path) -> actions.Loaded:
    """The config, models and newest intact checkpointed states of a finished or interrupted run.

    `model` and `state` are dicts by network ("mhui", "ensemble", "prior_net": those with a
    checkpoint); the states' params carry a member axis except the Prior Network's. `step`
    is the MH-UI network's step; `extras` holds `steps` (by network) and the `data`.
    """
    workdir = pathlib.Path(workdir)
    config = workdir_lib.load_config(workdir, MhuiConfig)
    data = data_lib.load_dataset(config.data)
    shape = np.asarray(data["x_train"]).shape[1:]
    nets, states, steps = {}, {}, {}
    if not (workdir / "mhui" / "checkpoints").is_dir():
        raise workdir_lib.WorkdirError(f"{workdir} holds no trained MH-UI network (no mhui/checkpoints/); "
                                       f"run `jaxlab mhui train --workdir {workdir}` first")
    for name in training.networks_of(config):
        if not (workdir / name / "checkpoints").is_dir():
            continue  # an interrupted run that never reached this network
        model = training.network_model(config, name, data["num_classes"])
        target = jax.eval_shape(lambda name=name, model=model: training.init_state(config, name, model, shape))
        states[name], steps[name] = train_lib.load_state(workdir / name, target, keep=config.loop.keep)
        nets[name] = model
    return actions.Loaded(config, nets, states, steps["mhui"], {"steps": steps, "data": data})


def _trained_nets(config: MhuiConfig, workdir: pathlib.Path) -> tuple[dict, dict]:
    """`({name: (model, params, extra)}, data)` of a finished `train`; MH-UI without its member axis."""
    run = load(workdir)
    for name, num_steps in training.networks_of(config).items():
        if run.extras["steps"].get(name) != num_steps:
            raise workdir_lib.WorkdirError(
                f"{workdir / name}: network '{name}' is trained to {run.extras['steps'].get(name, 0)} of "
                f"{num_steps} steps; run `jaxlab mhui train --workdir {workdir}` first")
    nets = {}
    for name, state in run.state.items():
        params, extra = state.params, state.extra
        if name == "mhui":
            params, extra = jax.tree.map(lambda a: a[0], (params, extra))
        nets[name] = (run.model[name], params, extra)
    return nets, run.extras["data"]


@actions.action(read_only=True)
def attack(config: MhuiConfig, workdir: pathlib.Path) -> dict:
    """Crafts every adversarial set against the trained networks (attacks.npz); reruns reuse it.

    Returns (and writes to summary.json's `attack` section) the accuracy under attack, the
    time and the mean L-inf / L2 size of every set.
    """
    record = workdir / "attacks.json"
    if (workdir / "attacks.npz").exists() and record.exists():
        saved = json.loads(record.read_text(encoding="utf-8"))
        if saved.get("config") == config_lib.to_dict(config):
            return workdir_lib.update_summary(workdir, "attack", saved["results"], config, seed=config.seed)
    nets, data = _trained_nets(config, workdir)
    advs, results = attacks.craft(config, nets, np.asarray(data["x_test"]), np.asarray(data["y_test"]), log=_log)
    record.unlink(missing_ok=True)
    tmp = workdir / ".attacks.tmp.npz"
    np.savez_compressed(tmp, **advs)
    tmp.replace(workdir / "attacks.npz")
    workdir_lib.write_json(record, {"config": config_lib.to_dict(config), "results": results})
    return workdir_lib.update_summary(workdir, "attack", results, config, seed=config.seed)


@actions.action(read_only=True)
def evaluate(config: MhuiConfig, workdir: pathlib.Path) -> dict:
    """Detection AUROC/AUPR of every detector on every adversarial set; tables.md and figures.

    Runs `attack` first when attacks.npz is missing. Writes the rows, ablations and
    adaptive rows to summary.json's `evaluate` section; returns MH-UI's AUROC by set.
    """
    if not (workdir / "attacks.npz").exists():
        attack(config, workdir)
    nets, data = _trained_nets(config, workdir)
    with np.load(workdir / "attacks.npz") as f:
        advs = {k: f[k] for k in f.files}
    results, hist = detect.detection_results(config, nets, np.asarray(data["x_test"]), np.asarray(data["y_test"]),
                                             advs)
    (workdir / "tables.md").write_text(report.format_tables(config, results), encoding="utf-8")
    report.plot_precision_histograms(workdir, hist)
    report.plot_auroc_vs_eps(config, workdir, results)
    workdir_lib.update_summary(workdir, "evaluate", results, config, seed=config.seed)
    mhui = {attacks.set_key(r["target"], r["attack"], r["eps"], r.get("weight")): r["auroc"]
            for r in results["rows"] + results["adaptive"]
            if r["method"] == "MH-UI" and r["score"] == config.detect.score}
    return {"tables": str(workdir / "tables.md"), "mhui_auroc": mhui, "clean_head_acc": results["clean_head_acc"]}


@actions.action(name="protocol", read_only=True)
def protocol_action(config: MhuiConfig, workdir: pathlib.Path) -> dict:
    """Validation-chosen detectors under non-adaptive and adaptive attacks on the test half.

    Writes WORKDIR/protocol.json (every row) and protocol.md, and summary.json's
    `protocol` section; returns the chosen detectors and the success-only AUROC by
    method and attack.
    """
    nets, data = _trained_nets(config, workdir)
    res = protocol.run_protocol(config, nets, np.asarray(data["x_test"]), np.asarray(data["y_test"]), log=_log)
    workdir_lib.write_json(workdir / "protocol.json", res)
    (workdir / "protocol.md").write_text(report.format_protocol([res], [str(workdir)]), encoding="utf-8")
    workdir_lib.update_summary(workdir, "protocol", res, config, seed=config.seed)
    return {"choices": res["choices"],
            "auroc_success": {f"{r['method']}/{r['attack']}": r["auroc_success"] for r in res["rows"]}}


ACTIONS = actions.collect(train, attack, evaluate, protocol_action)
