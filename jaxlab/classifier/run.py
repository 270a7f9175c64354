"""Actions of the reference classifier: `train` and `evaluate`."""

from __future__ import annotations

import pathlib
import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxlab.classifier.configs import ClassifierConfig
from jaxlab.core import parallel
from jaxlab.core import train as train_lib
from jaxlab.core import workdir as workdir_lib
from jaxlab.data import pipeline
from jaxlab.nn import SmallCNN

__all__ = ["train_and_evaluate", "evaluate", "load", "ACTIONS"]


def make_model(config: ClassifierConfig) -> SmallCNN:
    m = config.model
    return SmallCNN(num_classes=10, stages=tuple(m.stages), blocks_per_stage=m.blocks_per_stage,
                    norm=m.norm, dtype=jnp.dtype(m.dtype))


def make_optimizer(config: ClassifierConfig) -> optax.GradientTransformation:
    o = config.opt
    schedule = optax.warmup_cosine_decay_schedule(
        0.0, o.lr, min(o.warmup_steps, max(config.num_steps - 1, 1)), max(config.num_steps, 2))
    return optax.chain(optax.clip_by_global_norm(o.clip_norm), optax.adamw(schedule, weight_decay=o.weight_decay))


def load_data(config: ClassifierConfig):
    """Train and test splits from the TFDS array_record builder of the digits."""
    from jaxlab.data import builders

    builder = builders.build("jaxlab_digits", data_dir=config.data_dir or None)
    sources = builder.as_data_source()
    test = sources["test"]
    x_test = np.stack([test[i]["image"] for i in range(len(test))])
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
    """`state -> {"accuracy", "loss"}` over the whole test set (padded last batch masked)."""

    @jax.jit
    def logits_fn(params, x):
        return model.apply({"params": params}, x)

    x = x_test.astype(np.float32) / 16.0 if x_test.dtype == np.uint8 else x_test

    def eval_fn(state) -> dict:
        correct, total_loss, n = 0.0, 0.0, 0
        for (xb, yb), valid in pipeline.epoch_batches((x, y_test), batch_size):
            logits = logits_fn(state.params, xb)
            loss = optax.softmax_cross_entropy_with_integer_labels(logits, yb)
            correct += float(jnp.sum((jnp.argmax(logits, -1) == yb)[:valid]))
            total_loss += float(jnp.sum(loss[:valid]))
            n += valid
        return {"accuracy": correct / n, "loss": total_loss / n}

    return eval_fn


def train_and_evaluate(config: ClassifierConfig, workdir: str | pathlib.Path) -> dict:
    """Trains the CNN on the digits, evaluating and checkpointing along the way.

    Resumes from `workdir/checkpoints` when a previous run of the same config stopped
    early. Returns (and writes to summary.json) the final test accuracy and timings.
    """
    workdir = workdir_lib.prepare(workdir, config)
    mesh = parallel.make_mesh(config.num_devices or None)
    parallel.check_batch_divisible(config.batch_size, mesh)
    train_source, (x_test, y_test) = load_data(config)
    ds = pipeline.batches(train_source, config.batch_size, seed=config.seed)
    model = make_model(config)
    state = init_state(config)
    step_fn = train_lib.make_train_step(make_loss_fn(model))
    eval_fn = make_eval_fn(model, x_test, y_test)
    t0 = time.perf_counter()
    state, history = train_lib.fit(
        state, step_fn, lambda s: _normalise(ds[s]),
        num_steps=config.num_steps, workdir=workdir, seed=config.seed, eval_fn=eval_fn,
        eval_every=config.eval_every, log_every=config.log_every,
        checkpoint_every=config.checkpoint_every, keep=config.keep, mesh=mesh, desc="classifier")
    wall = time.perf_counter() - t0
    final = eval_fn(state)
    results = {
        "test_accuracy": final["accuracy"],
        "test_loss": final["loss"],
        "steps": int(jax.device_get(state.step)),
        "train_wall_time_s": wall,
        "num_devices": mesh.size,
        "num_params": int(sum(x.size for x in jax.tree.leaves(state.params))),
    }
    _plot(workdir)
    workdir_lib.write_summary(workdir, results, config, seed=config.seed)
    return results


def _plot(workdir: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from jaxlab.core.metrics import read_metrics

    rows = read_metrics(workdir)
    train_rows = [r for r in rows if "loss" in r]
    eval_rows = [r for r in rows if "eval_accuracy" in r]
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.2))
    a.plot([r["step"] for r in train_rows], [r["loss"] for r in train_rows], label="train loss")
    a.plot([r["step"] for r in eval_rows], [r["eval_loss"] for r in eval_rows], "o-", label="test loss")
    a.set_yscale("log")
    a.set_xlabel("step")
    a.legend()
    b.plot([r["step"] for r in eval_rows], [r["eval_accuracy"] for r in eval_rows], "o-")
    b.set_xlabel("step")
    b.set_ylabel("test accuracy")
    b.grid(alpha=0.3)
    workdir_lib.save_figure(fig, workdir, "training")


class Loaded(NamedTuple):
    config: ClassifierConfig
    model: SmallCNN
    state: train_lib.TrainState
    step: int


def load(workdir: str | pathlib.Path) -> Loaded:
    """The config, model and latest checkpointed state of a finished or interrupted run."""
    config = workdir_lib.load_config(workdir, ClassifierConfig)
    state, step = train_lib.restore_latest(workdir, init_state(config), keep=config.keep)
    if step == 0:
        raise workdir_lib.WorkdirError(f"{workdir}/checkpoints holds no finished checkpoint yet")
    return Loaded(config, make_model(config), state, step)


def evaluate(config: Any, workdir: str | pathlib.Path) -> dict:
    """Test accuracy of the latest checkpoint in `workdir` (written to evaluation.json)."""
    run = load(workdir)
    _, (x_test, y_test) = load_data(run.config)
    results = make_eval_fn(run.model, x_test, y_test)(run.state)
    results = {"test_accuracy": results["accuracy"], "test_loss": results["loss"], "step": run.step}
    workdir_lib.write_json(pathlib.Path(workdir) / "evaluation.json", results)
    return results


evaluate.read_only = True

ACTIONS = {"train": train_and_evaluate, "evaluate": evaluate}
