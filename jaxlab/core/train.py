"""Train state, the jitted step factory and the `fit` loop shared by every method.

The contract, in the style of the flax examples:

    loss_fn(params, extra, batch, key) -> (loss, (metrics, new_extra))
    step = make_train_step(loss_fn)           # jitted once, state donated
    state, metrics = step(state, batch, key)
    state, history = fit(state, step, batch_fn, num_steps=..., workdir=...)

`extra` holds a model's non-trainable collections (e.g. `batch_stats`), `{}` if none.
`batch_fn(step)` must be a pure function of the step number and the key of a step is
`fold_in(key(seed), step)`, so a run killed after k steps and resumed from its checkpoint
sees the same batches and keys as an uninterrupted one and ends with the same parameters.
"""

from __future__ import annotations

import pathlib
import time
from typing import Any, Callable, Mapping

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxlab.core import checkpoint as ckpt_lib
from jaxlab.core import metrics as metrics_lib
from jaxlab.core import parallel
from jaxlab.core.progress import progress as progress_bar

__all__ = [
    "TrainState",
    "NonFiniteError",
    "make_train_step",
    "fit",
    "restore_latest",
    "check_finite",
]

LossFn = Callable[[Any, Any, Any, jax.Array], tuple[jax.Array, tuple[Mapping[str, jax.Array], Any]]]


class NonFiniteError(FloatingPointError):
    """Training produced a NaN or Inf; names the step and the metric."""

    def __init__(self, step: int, metric: str, value: Any):
        self.step, self.metric, self.value = step, metric, value
        super().__init__(
            f"non-finite {metric}={value} at step {step}; training stopped "
            "(the last checkpoint before it is intact). Lower the learning rate or check the inputs.")


class TrainState(flax.struct.PyTreeNode):
    """Everything that changes during training, as one pytree.

    Attributes:
      step: scalar int32, number of updates applied.
      params: the trainable parameters.
      opt_state: the optax state of `tx`.
      extra: non-trainable model state (e.g. `{"batch_stats": ...}`), `{}` if none.
      tx: the optax `GradientTransformation` (static, not a pytree leaf).
    """

    step: jax.Array
    params: Any
    opt_state: Any
    extra: Any
    tx: optax.GradientTransformation = flax.struct.field(pytree_node=False)

    @classmethod
    def create(cls, *, params: Any, tx: optax.GradientTransformation, extra: Any = None) -> "TrainState":
        return cls(
            step=jnp.zeros((), jnp.int32),
            params=params,
            opt_state=tx.init(params),
            extra={} if extra is None else extra,
            tx=tx,
        )

    def apply_gradients(self, grads: Any, extra: Any = None) -> "TrainState":
        """One optimizer update: `params <- params + tx.update(grads)`."""
        updates, opt_state = self.tx.update(grads, self.opt_state, self.params)
        return self.replace(
            step=self.step + 1,
            params=optax.apply_updates(self.params, updates),
            opt_state=opt_state,
            extra=self.extra if extra is None else extra,
        )

    def state_dict(self) -> dict:
        """The pytree that checkpoints hold (no `tx`)."""
        return {"step": self.step, "params": self.params, "opt_state": self.opt_state, "extra": self.extra}

    def load_state_dict(self, d: Mapping[str, Any]) -> "TrainState":
        return self.replace(step=d["step"], params=d["params"], opt_state=d["opt_state"], extra=d["extra"])


def make_train_step(loss_fn: LossFn, *, donate: bool = True, jit: bool = True,
                    compiler_options: Mapping[str, Any] | None = None) -> Callable:
    """Builds `step(state, batch, key) -> (state, metrics)` from a loss function.

    Args:
      loss_fn: `(params, extra, batch, key) -> (loss, (metrics, new_extra))`; `new_extra`
        may be None to keep `extra` unchanged.
      donate: donate the input state's buffers (the caller must not reuse it).
      jit: compile with `jax.jit` (turn off to debug).
      compiler_options: XLA options for the jitted step (for example
        `jaxlab.core.runtime.cpu_compiler_options()`).

    The returned metrics hold `loss`, `grad_norm` (global L2 norm) and the loss
    function's own metrics. Under a mesh, pass a replicated state and a batch sharded
    along `data`: the step is data-parallel and the gradient mean is all-reduced.
    """

    def step(state: TrainState, batch: Any, key: jax.Array):
        grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
        (loss, (metrics, new_extra)), grads = grad_fn(state.params, state.extra, batch, key)
        new_state = state.apply_gradients(grads, extra=new_extra)
        metrics = dict(metrics)
        metrics["loss"] = loss
        metrics["grad_norm"] = optax.tree.norm(grads)
        return new_state, metrics

    if not jit:
        return step
    return jax.jit(step, donate_argnums=(0,) if donate else (), compiler_options=compiler_options)


def check_finite(step: int, metrics: Mapping[str, Any]) -> None:
    """Raises `NonFiniteError` if any scalar metric is NaN or Inf."""
    for name, value in metrics.items():
        a = np.asarray(value)
        if a.dtype.kind in "fc" and not np.all(np.isfinite(a)):
            raise NonFiniteError(step, name, a.tolist())


@jax.jit
def _track_nonfinite(first_bad: jax.Array, metrics: Mapping[str, jax.Array], step: jax.Array) -> jax.Array:
    """`first_bad` holds (step, metric index) of the first non-finite metric, or -1."""
    names = sorted(metrics)
    finite = jnp.stack([jnp.all(jnp.isfinite(metrics[k])) for k in names])
    is_bad = ~jnp.all(finite)
    which = jnp.argmin(finite).astype(jnp.int32)
    new = jnp.stack([step.astype(jnp.int32), which])
    return jnp.where((first_bad[0] < 0) & is_bad, new, first_bad)


def restore_latest(workdir: str | pathlib.Path, state: TrainState, *, keep: int = 3) -> tuple[TrainState, int]:
    """Restores the latest checkpoint of `workdir/checkpoints` into `state`'s structure.

    Returns `(state, step)`; `(state, 0)` unchanged when there is none.
    """
    manager = ckpt_lib.CheckpointManager(pathlib.Path(workdir) / "checkpoints", max_to_keep=keep)
    latest = manager.latest_step()
    if latest is None:
        return state, 0
    restored = manager.restore(latest, state.state_dict())
    manager.close()
    return state.load_state_dict(restored), int(latest)


def fit(
    state: TrainState,
    step_fn: Callable,
    batch_fn: Callable[[int], Any],
    *,
    num_steps: int,
    workdir: str | pathlib.Path,
    seed: int = 0,
    eval_fn: Callable[[TrainState], Mapping[str, Any]] | None = None,
    eval_every: int = 0,
    log_every: int = 50,
    checkpoint_every: int = 0,
    keep: int = 3,
    progress: bool = True,
    mesh: jax.sharding.Mesh | None = None,
    nan_guard: bool = True,
    desc: str = "train",
    stop_after: int | None = None,
) -> tuple[TrainState, list[dict]]:
    """Runs `step_fn` from the state's (or the latest checkpoint's) step to `num_steps`.

    Args:
      state: the initial state; replaced by the latest checkpoint in
        `workdir/checkpoints` when there is one (resume).
      step_fn: from `make_train_step`.
      batch_fn: `step -> batch`, a pure function of the step number.
      num_steps: total number of updates of the finished run.
      workdir: the run directory (metrics.jsonl and checkpoints/ go there).
      seed: the key of step `s` is `fold_in(key(seed), s)`.
      eval_fn: `state -> metrics`, run every `eval_every` steps and at the end; logged
        with an `eval_` prefix.
      log_every: fetch, check and write the training metrics every this many steps.
      checkpoint_every: save every this many steps (0: only at the end).
      keep: number of checkpoints kept.
      mesh: if given, the state is replicated and each batch sharded along `data`.
      nan_guard: stop with `NonFiniteError` (step and metric) on NaN/Inf; nothing
        non-finite is ever checkpointed.
      stop_after: stop (after checkpointing) once this step is reached, as if killed;
        used to test resumption.

    Returns:
      `(state, history)`, history being the logged metric rows of this call.
    """
    workdir = pathlib.Path(workdir)
    manager = ckpt_lib.CheckpointManager(workdir / "checkpoints", max_to_keep=keep)
    latest = manager.latest_step()
    if latest is not None:
        restored = manager.restore(latest, state.state_dict())
        state = state.load_state_dict(restored)
    start = int(jax.device_get(state.step))
    if mesh is not None:
        state = parallel.replicate(state, mesh)
    writer = metrics_lib.MetricWriter(workdir)
    root = jax.random.key(seed)
    history: list[dict] = []
    metric_names: list[str] | None = None
    first_bad = jnp.array([-1, -1], jnp.int32)
    end = num_steps if stop_after is None else min(num_steps, stop_after)
    t0, steps_done = time.perf_counter(), 0

    def guard(step_number: int) -> None:
        bad = np.asarray(jax.device_get(first_bad))
        if bad[0] >= 0:
            name = metric_names[int(bad[1])] if metric_names else "metric"
            raise NonFiniteError(int(bad[0]), name, "nan/inf")

    bar = progress_bar(range(start, end), desc=desc, initial=start, total=num_steps,
                       disable=None if progress else True)
    try:
        for s in bar:
            batch = batch_fn(s)
            if mesh is not None:
                batch = parallel.shard_batch(batch, mesh)
            key = jax.random.fold_in(root, s)
            state, metrics = step_fn(state, batch, key)
            steps_done += 1
            done = s + 1
            if nan_guard:
                if metric_names is None:
                    metric_names = sorted(metrics)
                first_bad = _track_nonfinite(first_bad, metrics, jnp.asarray(done, jnp.int32))
            last = done == end
            if done % log_every == 0 or last:
                if nan_guard:
                    guard(done)
                row = {k: float(np.mean(v)) for k, v in jax.device_get(metrics).items()}
                elapsed = time.perf_counter() - t0
                row["steps_per_sec"] = steps_done / max(elapsed, 1e-9)
                writer.write(done, row)
                history.append({"step": done, **row})
                bar.set_postfix(loss=f"{row['loss']:.4g}")
            if eval_fn is not None and ((eval_every and done % eval_every == 0) or last):
                if nan_guard:
                    guard(done)
                erow = {f"eval_{k}": float(np.asarray(v)) for k, v in dict(eval_fn(state)).items()}
                writer.write(done, erow)
                if history and history[-1]["step"] == done:
                    history[-1].update(erow)
                else:
                    history.append({"step": done, **erow})
            if (checkpoint_every and done % checkpoint_every == 0) or last:
                if nan_guard:
                    guard(done)
                manager.save(done, state.state_dict())
    finally:
        bar.close()
        writer.close()
        manager.close()
    return state, history
