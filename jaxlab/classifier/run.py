"""Actions of the reference classifier: `train` and `evaluate`.

This package is the template every method copies:

    configs.py  the config dataclass (a `LoopConfig` inside) and `get_config(variant)`
    run.py      the actions, each an `@action` with a docstring, and `load(workdir)`
    report.py   figures and tables written from a run's files
    (models.py, data.py, <algorithm>.py where a method has its own)
"""

from __future__ import annotations

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxlab.classifier import report
from jaxlab.classifier.configs import ClassifierConfig
from jaxlab.core import actions, evaluation, optim, parallel
from jaxlab.core import train as train_lib
from jaxlab.core import workdir as workdir_lib
from jaxlab.data import pipeline
from jaxlab.nn import SmallCNN

__all__ = ["train", "evaluate", "load", "ACTIONS"]


def make_model(config: ClassifierConfig) -> SmallCNN:
    m = config.model
    return SmallCNN(num_classes=10, stages=tuple(m.stages), blocks_per_stage=m.blocks_per_stage,
                    norm=m.norm, dtype=jnp.dtype(m.dtype))


def make_optimizer(config: ClassifierConfig) -> optax.GradientTransformation:
    o = config.opt
    schedule = optim.warmup_cosine(o.lr, o.warmup_steps, config.loop.num_steps)
    return optax.chain(optax.clip_by_global_norm(o.clip_norm), optax.adamw(schedule, weight_decay=o.weight_decay))


def load_data(config: ClassifierConfig):
    """Train source and test arrays from the TFDS array_record builder of the digits."""
    from jaxlab.data import builders

    builder = builders.build("jaxlab_digits", data_dir=config.data_dir or None)
    sources = builder.as_data_source()
    test = sources["test"]
    x_test = np.stack([test[i]["image"] for i in range(len(test))]).astype(np.float32) / 16.0
    y_test = np.array([test[i]["label"] for i in range(len(test))], np.int32)
    return sources["train"], (x_test, y_test)


def _normalise(batch: dict) -> tuple[np.ndarray, np.ndarray]:
    return np.asarray(batch["image"], np.float32) / 16.0, np.asarray(batch["label"], np.int32)


def init_state(config: ClassifierConfig) -> train_lib.TrainState:
    model = make_model(config)
    params = model.init(jax.random.key(config.seed), jnp.zeros((1, 8, 8, 1)))["params"]
    return train_lib.TrainState.create(params=params, tx=make_optimizer(config))


def make_loss_fn(model: SmallCNN):
    def loss_fn(params, extra, batch, key):
        del extra, key
        x, y = batch
        logits = model.apply({"params": params}, x)
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
        acc = jnp.mean(jnp.argmax(logits, -1) == y)
        return loss, ({"accuracy": acc}, None)

    return loss_fn


def make_eval_fn(model: SmallCNN, x_test: np.ndarray, y_test: np.ndarray, batch_size: int = 256):
    """`state -> {"accuracy", "loss"}` over the whole test set (one compile)."""

    @jax.jit
    def per_example(params, batch):
        x, y = batch
        logits = model.apply({"params": params}, x)
        return {"accuracy": (jnp.argmax(logits, -1) == y).astype(jnp.float32),
                "loss": optax.softmax_cross_entropy_with_integer_labels(logits, y)}

    def eval_fn(state) -> dict:
        return evaluation.batched_sum(per_example, (x_test, y_test), batch_size, state.params)

    return eval_fn


@actions.action
def train(config: ClassifierConfig, workdir: pathlib.Path) -> dict:
    """Trains the CNN on the digits with evaluation and checkpoints; resumes a killed run.

    Returns (and writes to summary.json) the final test accuracy and the run's timings
    over all of its segments.
    """
    mesh = parallel.make_mesh(config.loop.num_devices or None)
    parallel.check_batch_divisible(config.batch_size, mesh)
    train_source, (x_test, y_test) = load_data(config)
    ds = pipeline.batches(train_source, config.batch_size, seed=config.seed)
    model = make_model(config)
    step_fn = train_lib.make_train_step(make_loss_fn(model))
    eval_fn = make_eval_fn(model, x_test, y_test, config.eval_batch_size)
    state, history = train_lib.fit(
        init_state(config), step_fn, lambda s: _normalise(ds[s]), loop=config.loop, mesh=mesh,
        workdir=workdir, seed=config.seed, eval_fn=eval_fn, desc="classifier")
    final = eval_fn(state)
    times = train_lib.run_times(workdir)
    results = {
        "test_accuracy": final["accuracy"],
        "test_loss": final["loss"],
        "best_test_accuracy": max((r["eval_accuracy"] for r in history if "eval_accuracy" in r), default=None),
        "steps": int(jax.device_get(state.step)),
        "train_wall_time_s": times["wall_time_s"],
        "train_time_s": times["train_time_s"],
        "segments": len(times["segments"]),
        "num_devices": mesh.size,
        "num_params": int(sum(x.size for x in jax.tree.leaves(state.params))),
    }
    report.plot_training(workdir)
    workdir_lib.write_summary(workdir, results, config, seed=config.seed)
    return results


def load(workdir: str | pathlib.Path) -> actions.Loaded:
    """The config, model and newest intact checkpointed state of a finished or interrupted run."""
    config = workdir_lib.load_config(workdir, ClassifierConfig)
    state, step = train_lib.load_state(workdir, init_state(config), keep=config.loop.keep)
    return actions.Loaded(config, make_model(config), state, step)


@actions.action(read_only=True)
def evaluate(config: ClassifierConfig, workdir: pathlib.Path) -> dict:
    """Test accuracy of the newest intact checkpoint (written to evaluation.json)."""
    run = load(workdir)
    _, (x_test, y_test) = load_data(run.config)
    scores = make_eval_fn(run.model, x_test, y_test, config.eval_batch_size)(run.state)
    results = {"test_accuracy": scores["accuracy"], "test_loss": scores["loss"], "step": run.step}
    workdir_lib.write_json(workdir / "evaluation.json", results)
    return results


ACTIONS = actions.collect(train, evaluate)
