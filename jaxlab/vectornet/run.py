"""Actions of VectorNet: generate, train, evaluate, predict.

    jaxlab vectornet generate --workdir runs/vn-data --config.format=av1
    jaxlab vectornet train --config default --workdir runs/vn
    jaxlab vectornet train --workdir runs/vn-av1 --config.data_dir=runs/vn-data/av1
    jaxlab vectornet evaluate --workdir runs/vn
    jaxlab vectornet predict --workdir runs/vn
    jaxlab vectornet predict --workdir runs/vn --scenario DIR/scenario_<id>.parquet   (or an AV1 <id>.csv)
"""

from __future__ import annotations

import pathlib
import re

import jax
import numpy as np

from jaxlab.core import actions, parallel
from jaxlab.core import train as train_lib
from jaxlab.core import workdir as workdir_lib
from jaxlab.vectornet import baselines, report, selection, training
from jaxlab.vectornet import data as data_lib
from jaxlab.vectornet.configs import VectorNetConfig
from jaxlab.vectornet.data import read_scenario
from jaxlab.vectornet.metrics import numpy_metrics

__all__ = ["generate", "train", "evaluate", "predict", "read_scenario", "load", "ACTIONS", "BATCH_STREAM"]

BATCH_STREAM = 31


def make_batch_fn(config: VectorNetConfig, arrays: dict):
    """`step -> batch`: `batch_size` distinct scenes drawn by `default_rng([seed, BATCH_STREAM, step])`."""
    n, keys = len(arrays["kind"]), training.batch_keys(config)
    if n < config.batch_size:
        raise workdir_lib.WorkdirError(f"the training split has {n} scenes, fewer than batch_size={config.batch_size}")

    def batch_fn(step: int) -> dict:
        idx = np.sort(np.random.default_rng([config.seed, BATCH_STREAM, step]).choice(n, config.batch_size, False))
        return {k: arrays[k][idx] for k in keys}

    return batch_fn


def _scores(config: VectorNetConfig, arrays: dict, pred: np.ndarray, params=None, probs=None) -> dict:
    """Mean metrics over all scenes and over the turning targets (turn 1 or 2); with `params`
    and `scene.max_targets > 1`, also `all_targets`, over every valid predicted agent; with the
    guesses' `probs`, also the probabilistic metrics (p-/brier-minADE/minFDE, p-miss)."""
    met = numpy_metrics(pred, arrays["future"], arrays["future_mask"], miss_threshold=config.miss_threshold,
                        probs=probs)
    met["miss_rate"] = met.pop("miss")
    out = {k: float(np.mean(v)) for k, v in met.items()}
    turning = np.isin(arrays["turn"], (1, 2))
    if turning.any():
        out.update({f"turn_{k}": float(np.mean(v[turning])) for k, v in met.items()})
    out["num_scenes"], out["num_turning"] = len(pred), int(turning.sum())
    if params is not None and config.scene.max_targets > 1:
        out["all_targets"] = training.target_scores(config, arrays, training.predict_targets(config, params, arrays))
    return out


def _baseline(config: VectorNetConfig, arrays: dict) -> np.ndarray:
    return baselines.constant_velocity(arrays["vectors"], arrays["vec_mask"], config.scene.num_obs,
                                       config.scene.num_future)


def _baseline_scores(config: VectorNetConfig, test: dict) -> dict:
    """Test metrics of constant velocity and of the nearest training scene (1 and 6 guesses)."""
    train = data_lib.split_arrays(config, "train")
    nn1 = baselines.nearest_neighbour(train, test, config.scene.num_obs, k=1)
    nn6, probs = baselines.nearest_neighbour(train, test, config.scene.num_obs, k=6, return_probs=True)
    return {"test_constant_velocity": _scores(config, test, _baseline(config, test)),
            "test_nearest_neighbour": _scores(config, test, nn1),
            "test_nearest_neighbour_k6": _scores(config, test, nn6, probs=probs)}


@actions.action
def generate(config: VectorNetConfig, workdir: pathlib.Path) -> dict:
    """Writes procedural scenes as Argoverse files (config.format) under WORKDIR/<format>/."""
    from jaxlab.vectornet import argoverse

    out = workdir / config.format
    # AV2 scenarios hold 50 observed + 60 future steps; AV1 sequences 20 + 30
    num_obs, num_steps = (argoverse.AV2_OBSERVED, argoverse.AV2_STEPS) if config.format == "av2" else (
        config.scene.num_obs, config.scene.num_obs + config.scene.num_future)
    sizes = {"train": config.num_train, "val": config.num_val, "test": config.num_test}
    splits = {split: data_lib.procedural_scenes(config.seed, split, n, config.turn_fraction, num_obs, num_steps,
                                                lane_change=config.lane_change)
              for split, n in sizes.items()}
    argoverse.write_dataset(splits, out, config.format)
    counts = sizes
    results = {"data_dir": str(out), "format": config.format, "scenes": counts}
    workdir_lib.write_summary(workdir, results, config, seed=config.seed)
    return results


@actions.action
def train(config: VectorNetConfig, workdir: pathlib.Path) -> dict:
    """Trains VectorNet on procedural or Argoverse scenes; resumes a killed run.

    Returns (and writes to summary.json) validation and test ADE/FDE/DE@t/miss rate, the
    same on turning targets, the constant-velocity and nearest-neighbour (1 and 6 guesses)
    baselines', and timings over all segments.
    """
    mesh = parallel.make_mesh(config.loop.num_devices or None)
    parallel.check_batch_divisible(config.batch_size, mesh)
    selection.check_schedule(config)
    train_arrays = data_lib.split_arrays(config, "train")
    val = data_lib.split_arrays(config, "val")
    slots = training.slot_vectors(config, train_arrays["vec_mask"])  # every training batch fits them
    step_fn = train_lib.make_train_step(training.make_loss_fn(config, slots),
                                        compiler_options=training.compiler_options(config))
    state, history = train_lib.fit(
        training.init_state(config), step_fn, make_batch_fn(config, train_arrays), loop=config.loop, mesh=mesh,
        workdir=workdir, seed=config.seed, eval_fn=training.make_eval_fn(config, val), desc="vectornet")
    test = data_lib.split_arrays(config, "test")
    params = jax.device_get(state.params)
    times = train_lib.run_times(workdir)
    results = {
        "val": _scores(config, val, training.predict(config, params, val), params),
        "test": _scores(config, test, training.predict(config, params, test), params),
        **_baseline_scores(config, test),
        "best_val_ade": min((r["eval_ade"] for r in history if "eval_ade" in r), default=None),
        "steps": int(jax.device_get(state.step)),
        "train_wall_time_s": times["wall_time_s"],
        "train_time_s": times["train_time_s"],
        "first_step_s": times["segments"][0]["first_step_s"] if times["segments"] else None,
        "segments": len(times["segments"]),
        "num_devices": mesh.size,
        "num_params": int(sum(x.size for x in jax.tree.leaves(params))),
    }
    report.plot_training(workdir)
    workdir_lib.write_summary(workdir, results, config, seed=config.seed)
    return results


def load(workdir: str | pathlib.Path, select: str | None = None) -> actions.Loaded:
    """The config, model and checkpointed state of a finished or interrupted run: the checkpoint
    of `select` (default: the run's `config.select`; "last" the newest intact, "best_val" that
    of the best validation ADE, `selection.restore_selected`), recorded in `extras["selection"]`."""
    config = workdir_lib.load_config(workdir, VectorNetConfig)
    state, step, chosen = selection.restore_selected(workdir, training.init_state(config), select or config.select,
                                                     keep=config.loop.keep)
    return actions.Loaded(config, training.make_model(config), state, step, {"selection": chosen})


_SELECT = actions.Option("--select", choices=["last", "best_val"],
                         help="the checkpoint to score: best_val (best validation ADE of the kept checkpoints) or "
                              "last (newest); default: the run's config.select")


@actions.action(read_only=True, options=[_SELECT])
def evaluate(config: VectorNetConfig, workdir: pathlib.Path, select: str | None = None) -> dict:
    """Test metrics of the checkpoint of --select / config.select beside the baselines (evaluation.json).

    `step` is the checkpoint scored, `selection` how it was chosen (with best_val, the
    validation ADE of every kept checkpoint)."""
    run = load(workdir, select or config.select)
    test = data_lib.split_arrays(run.config, "test")
    results = {"test": _scores(run.config, test, training.predict(run.config, run.state.params, test),
                               run.state.params),
               **_baseline_scores(run.config, test), "step": run.step, "selection": run.extras["selection"]}
    workdir_lib.write_json(workdir / "evaluation.json", results)
    return results


_SCENARIO = actions.Option(
    "--scenario", metavar="FILE",
    help="draw one scenario file instead of the first test scenes: an AV2 scenario_<id>.parquet with its "
         "log_map_archive_*.json in the same folder, or an AV1 <id>.csv whose city map is found under the "
         "run's data_dir/map_files (or a map_files folder above the CSV); writes figures/predict_<id>.png "
         "and prints ADE/FDE where the file holds the future")


@actions.action(read_only=True, options=[_SCENARIO])
def predict(config: VectorNetConfig, workdir: pathlib.Path, scenario: str | None = None) -> dict:
    """Draws predicted vs true trajectories of the first test scenes, or of --scenario FILE.

    The test scenes go to figures/predictions.png, a scenario file to figures/predict_<id>.png.

    Args:
      config: the run's config.
      workdir: the run.
      scenario: an AV2 `scenario_<id>.parquet` (its map `log_map_archive_*.json` beside it) or
        an AV1 sequence CSV (its city's map from the run's `data_dir`, or from a `map_files`
        folder above the CSV).

    Returns:
      The figure's path relative to the workdir, the checkpoint step and the ADE(s); for a
      scenario also its id, the number of future steps it holds and, where it holds any, FDE.
    """
    run = load(workdir)
    if scenario is not None:
        return _predict_scenario(run, workdir, pathlib.Path(scenario))
    test = data_lib.split_arrays(run.config, "test")
    n = min(run.config.num_plot, len(test["kind"]))
    sub = {k: v[:n] for k, v in test.items()}
    pred = training.predict(run.config, run.state.params, sub)
    path = report.plot_predictions(workdir, sub, pred, _baseline(run.config, sub), n)
    scores = numpy_metrics(pred, sub["future"], sub["future_mask"])
    return {"figure": str(path.relative_to(workdir)), "ade": [float(x) for x in scores["ade"]], "step": run.step}


def _predict_scenario(run: actions.Loaded, workdir: pathlib.Path, path: pathlib.Path) -> dict:
    """`predict --scenario`: the figure and metrics of one scenario file."""
    from jaxlab.vectornet import argoverse

    scene = read_scenario(run.config, path)
    try:
        arrays = data_lib.vectorize_scenes([scene], run.config)
    except ValueError as e:
        raise argoverse.ArgoverseFormatError(f"{path}: {e}") from None
    pred = training.predict(run.config, run.state.params, arrays)
    name = "predict_" + re.sub(r"[^A-Za-z0-9._-]", "_", scene.scene_id)
    figure = report.plot_predictions(workdir, arrays, pred, _baseline(run.config, arrays), 1, name=name)
    future = int(arrays["future_mask"][0].sum())
    out = {"figure": str(figure.relative_to(workdir)), "scenario": scene.scene_id, "future_steps": future,
           "step": run.step}
    if future:
        scores = numpy_metrics(pred, arrays["future"], arrays["future_mask"])
        out.update(ade=float(scores["ade"][0]), fde=float(scores["fde"][0]))
    return out


ACTIONS = actions.collect(generate, train, evaluate, predict)
