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

import collections
import concurrent.futures
import pathlib
import threading
import time
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import serialization

from jaxlab.core import checkpoint as ckpt_lib
from jaxlab.core import distributed, parallel, runtime
from jaxlab.core import metrics as metrics_lib
from jaxlab.core import workdir as workdir_lib
from jaxlab.core.config import LoopConfig
from jaxlab.core.progress import progress as progress_bar

__all__ = [
    "TrainState",
    "NonFiniteError",
    "make_train_step",
    "fit",
    "restore_latest",
    "load_state",
    "save_state",
    "run_times",
    "check_finite",
    "compile_seconds",
]

LossFn = Callable[[Any, Any, Any, jax.Array], tuple[jax.Array, tuple[Mapping[str, jax.Array], Any]]]


_COMPILE_EVENTS = frozenset({
    "/jax/core/compile/jaxpr_trace_duration",
    "/jax/core/compile/jaxpr_to_mlir_module_duration",
    "/jax/core/compile/backend_compile_duration",
})
_compile_lock = threading.Lock()
_compile_total = [0.0]
_compile_listening = [False]


def _on_duration(event: str, duration: float, **_: Any) -> None:
    if event in _COMPILE_EVENTS:
        with _compile_lock:
            _compile_total[0] += duration


def compile_seconds() -> float:
    """Seconds this process has spent tracing, lowering and compiling with XLA since
    `fit` (or this function) was first called: the sum of jax's compile-duration events
    (`jax.monitoring`). Differences of two calls time the compiles in between."""
    if not _compile_listening[0]:
        jax.monitoring.register_event_duration_secs_listener(_on_duration)
        _compile_listening[0] = True
    with _compile_lock:
        return _compile_total[0]


class _Prefetcher:
    """Calls `batch_fn` for the next `depth` steps on one host thread while the device
    runs the current one. One worker keeps the calls in step order (a `batch_fn` with
    bookkeeping sees steps in order, as without prefetching); `busy_s` is the host time
    spent inside `batch_fn`, `wait_s` the time the loop waited for a batch."""

    def __init__(self, batch_fn: Callable[[int], Any], start: int, end: int, depth: int):
        self.batch_fn, self.next, self.end, self.depth = batch_fn, start, end, depth
        self.busy_s = 0.0
        self.wait_s = 0.0
        self.pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="jaxlab-prefetch") if depth else None
        self.queue: collections.deque = collections.deque()

    def _timed(self, step: int) -> Any:
        t0 = time.perf_counter()
        batch = self.batch_fn(step)
        self.busy_s += time.perf_counter() - t0
        return batch

    def get(self, step: int) -> Any:
        t0 = time.perf_counter()
        if self.pool is None:
            batch = self._timed(step)
        else:
            while self.next < self.end and len(self.queue) <= self.depth:
                self.queue.append((self.next, self.pool.submit(self._timed, self.next)))
                self.next += 1
            s, future = self.queue.popleft()
            if s != step:
                raise RuntimeError(f"prefetcher out of order: asked for step {step}, holds step {s}")
            batch = future.result()
        self.wait_s += time.perf_counter() - t0
        return batch

    def close(self) -> None:
        if self.pool is not None:
            for _, future in self.queue:
                future.cancel()
            self.pool.shutdown(wait=True)


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
    def create(cls, *, params: Any, tx: optax.GradientTransformation, extra: Any = None) -> TrainState:
        return cls(
            step=jnp.zeros((), jnp.int32),
            params=params,
            opt_state=tx.init(params),
            extra={} if extra is None else extra,
            tx=tx,
        )

    def apply_gradients(self, grads: Any, extra: Any = None) -> TrainState:
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

    def load_state_dict(self, d: Mapping[str, Any]) -> TrainState:
        return self.replace(step=d["step"], params=d["params"], opt_state=d["opt_state"], extra=d["extra"])


def make_train_step(loss_fn: LossFn, *, donate: bool = True, jit: bool = True,
                    compiler_options: Mapping[str, Any] | str | None = "auto") -> Callable:
    """Builds `step(state, batch, key) -> (state, metrics)` from a loss function.

    Args:
      loss_fn: `(params, extra, batch, key) -> (loss, (metrics, new_extra))`; `new_extra`
        may be None to keep `extra` unchanged.
      donate: donate the input state's buffers (the caller must not reuse it).
      jit: compile with `jax.jit` (turn off to debug).
      compiler_options: XLA options for the jitted step; "auto" (the default) takes
        `jaxlab.core.runtime.cpu_compiler_options()` (YNNPACK for dots only on the CPU
        backend, nothing elsewhere), None XLA's defaults.

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
    if compiler_options == "auto":
        compiler_options = runtime.cpu_compiler_options()
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


def _step_of(state: Any) -> int:
    step = state["step"] if isinstance(state, Mapping) else state.step
    return int(jax.device_get(step))


def _restore(workdir: pathlib.Path, state: Any, keep: int, *, move_aside: bool
             ) -> tuple[Any, int, dict]:
    """The newest intact checkpoint of `workdir/checkpoints` in `state`'s structure."""
    manager = ckpt_lib.CheckpointManager(workdir / "checkpoints", max_to_keep=keep)
    try:
        tree, step = manager.restore_newest_intact(
            serialization.to_state_dict(state),
            move_aside=workdir / "corrupt-checkpoints" if move_aside else None)
        if step is None:
            return state, 0, {}
        return serialization.from_state_dict(state, tree), int(step), manager.meta(step)
    finally:
        manager.close()


def restore_latest(workdir: str | pathlib.Path, state: Any, *, keep: int = 3) -> tuple[Any, int]:
    """Restores the newest intact checkpoint of `workdir/checkpoints` into `state`'s structure.

    `state` is any pytree that flax can serialise (a `TrainState`, a dict of states, a
    struct with several optimizers). Corrupt steps are skipped with a warning naming
    them. Returns `(state, step)`; `(state, 0)` unchanged when there is none.
    """
    state, step, _ = _restore(pathlib.Path(workdir), state, keep, move_aside=False)
    return state, step


def load_state(workdir: str | pathlib.Path, state: Any, *, keep: int = 3) -> tuple[Any, int]:
    """Like `restore_latest`, for reading a run: no finished checkpoint is a `WorkdirError`.

    The step used is returned (and, when older than the latest because the latest is
    corrupt, named in a warning), so callers can report which checkpoint they read.
    """
    state, step = restore_latest(workdir, state, keep=keep)
    if step == 0:
        raise workdir_lib.WorkdirError(f"{pathlib.Path(workdir) / 'checkpoints'} holds no finished checkpoint")
    return state, step


def save_state(workdir: str | pathlib.Path, state: Any, step: int, *, keep: int = 3,
               meta: dict | None = None) -> pathlib.Path:
    """Saves `state` as checkpoint `step` of `workdir/checkpoints`, as `fit` saves its own, so that
    `load_state` and a resumed `fit` read it: for a state made outside `fit` (a converted model).
    Returns the step's directory."""
    if int(step) <= 0:
        raise ValueError(f"save_state: step must be positive (step 0 is a run with no checkpoint), got {step}")
    manager = ckpt_lib.CheckpointManager(pathlib.Path(workdir) / "checkpoints", max_to_keep=keep)
    try:
        manager.save(int(step), serialization.to_state_dict(state), meta=meta)
        return manager.step_dir(step)
    finally:
        manager.close()


def logged_values(workdir: str | pathlib.Path, metric: str) -> dict[int, float]:
    """`{step: value}` of the finite `metric` logged in `workdir/metrics.jsonl` (all segments)."""
    rows = metrics_lib.merge_by_step(metrics_lib.read_metrics(pathlib.Path(workdir) / "metrics.jsonl"))
    return {int(r["step"]): float(r[metric]) for r in rows
            if isinstance(r.get(metric), (int, float)) and np.isfinite(r[metric])}


def restore_best(workdir: str | pathlib.Path, state: Any, metric: str | Callable[[Any], float], *,
                 keep: int = 3, mode: str = "min") -> tuple[Any, int, dict]:
    """Restores the kept checkpoint whose logged `metric` is best: model selection on validation.

    `metric` names a value of the evaluation rows of `workdir/metrics.jsonl` (for example
    `"eval_loss"`, logged by `fit`'s `eval_fn` at the steps it evaluates), or is a function
    `state -> float` that scores each kept checkpoint after the run (a metric too costly to
    compute during training, say BLEU of beam-searched outputs). The candidates are the kept
    checkpoints that verify and have a value; the best wins, the earliest on ties. Evaluate at
    every checkpoint and keep them all (`eval_every = checkpoint_every`, `keep` >= the number
    of checkpoints) for an argmin over the whole run. Every kept step is
    verified, and a corrupt one is named in a warning. Without any candidate (say, a run killed
    between an evaluation and its checkpoint) the newest intact checkpoint is used, with a
    warning.

    Returns:
      `(state, step, info)`, where `info` holds `value` (the chosen step's, None after a
      fallback), `candidates` (`{step: value}`), `latest_step` (the newest kept step) and
      `fallback` (whether the newest intact checkpoint was used instead).
    """
    if mode not in ("min", "max"):
        raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
    workdir = pathlib.Path(workdir)
    values = {} if callable(metric) else logged_values(workdir, metric)
    manager = ckpt_lib.CheckpointManager(workdir / "checkpoints", max_to_keep=keep)
    try:
        kept = manager.all_steps()
        candidates, best = {}, None  # best: (key, state) of the best scored so far (a function's scores)
        sign = 1.0 if mode == "min" else -1.0
        template = serialization.to_state_dict(state)

        def load(step):
            return serialization.from_state_dict(state, manager.restore(step, template))

        for step in kept:
            try:
                ckpt_lib.verify(step, manager.step_dir(step))
            except ckpt_lib.CorruptCheckpointError as e:
                warnings.warn(f"{e}; it is not a selection candidate", RuntimeWarning, stacklevel=2)
                continue
            if callable(metric):  # scored restored: keep the best rather than restore it twice
                restored = load(step)
                candidates[step] = float(metric(restored))
                if best is None or (sign * candidates[step], step) < best[0]:
                    best = ((sign * candidates[step], step), restored)
            elif step in values:
                candidates[step] = values[step]
        info = {"candidates": candidates, "latest_step": max(kept) if kept else None}
        if candidates:
            step = min(candidates, key=lambda s: (sign * candidates[s], s))
            chosen = best[1] if best is not None else load(step)
            return chosen, step, dict(info, value=candidates[step], fallback=False)
    finally:
        manager.close()
    what = "a score" if callable(metric) else f"a logged {metric!r}"
    warnings.warn(f"{workdir}: no intact kept checkpoint (steps {kept}) has {what}; "
                  "using the newest intact checkpoint", RuntimeWarning, stacklevel=2)
    state, step = load_state(workdir, state, keep=keep)
    return state, step, dict(info, value=None, fallback=True)


def run_times(workdir: str | pathlib.Path) -> dict:
    """Timing of a whole run, over all of its segments (a resumed run has several).

    Returns `{"train_time_s", "eval_time_s", "wall_time_s", "segments": [...]}`, where
    `train_time_s` is the time spent in training steps and data (compiles included,
    evaluation and checkpointing excluded) from step 0 to the last step reached,
    `compile_time_s` the part of it spent tracing and compiling, and each
    segment row records one call of `fit` that ended normally or with an exception (start
    and end step, its own times, the duration of its first step, which includes
    compilation); a segment killed by a signal leaves no row, and the totals count the
    steps that led to the final state: work redone after a resume is counted once.
    """
    rows = metrics_lib.read_metrics(pathlib.Path(workdir) / SEGMENTS)
    last = rows[-1] if rows else {}
    return {"train_time_s": last.get("cum_train_time_s", 0.0), "eval_time_s": last.get("cum_eval_time_s", 0.0),
            "wall_time_s": last.get("cum_wall_time_s", 0.0),
            "compile_time_s": last.get("cum_compile_time_s", 0.0), "segments": rows}


SEGMENTS = "segments.jsonl"


def fit(
    state: Any,
    step_fn: Callable,
    batch_fn: Callable[[int], Any],
    *,
    workdir: str | pathlib.Path,
    loop: LoopConfig | None = None,
    num_steps: int | None = None,
    seed: int = 0,
    eval_fn: Callable[[Any], Mapping[str, Any]] | None = None,
    eval_every: int | None = None,
    log_every: int | None = None,
    checkpoint_every: int | None = None,
    keep: int | None = None,
    progress: bool | None = None,
    mesh: jax.sharding.Mesh | None = None,
    nan_guard: bool = True,
    desc: str = "train",
    stop_after: int | None = None,
    prefetch: int = 0,
) -> tuple[Any, list[dict]]:
    """Runs `step_fn` from the state's (or the newest intact checkpoint's) step to the end.

    Args:
      state: the initial state, any pytree with a `step` (attribute or key) that flax can
        serialise: a `TrainState`, or a struct holding several (a GAN's generator and
        discriminator, a population). Replaced by the newest intact checkpoint in
        `workdir/checkpoints` when there is one (resume); corrupt steps are moved aside
        into `workdir/corrupt-checkpoints/` with a warning naming them.
      step_fn: `(state, batch, key) -> (state, metrics)`, e.g. from `make_train_step`.
      batch_fn: `step -> batch`, a pure function of the step number.
      workdir: the run directory (metrics.jsonl, segments.jsonl and checkpoints/ go there).
      loop: the `LoopConfig` (steps, periods, keep, devices, progress); the keyword
        arguments of the same names override it. With `loop` and no `mesh`, the mesh is
        built from `loop.num_devices` (0: all devices; 1: no mesh).
      seed: the key of step `s` is `fold_in(key(seed), s)`.
      eval_fn: `state -> metrics`, run every `eval_every` steps and at the end; logged
        with an `eval_` prefix, with `train_time_s` (training time so far, evaluation
        excluded) beside them.
      mesh: if given, the state is replicated and each batch sharded along `data`. In a
        multi-process run (`jaxlab.core.distributed`) the mesh spans every process's
        devices and `batch_fn` returns this process's rows of the global batch.
      nan_guard: stop with `NonFiniteError` (step and metric) on NaN/Inf; nothing
        non-finite is ever checkpointed.
      stop_after: stop (after checkpointing) once this step is reached, as if killed;
        used to test resumption.
      prefetch: produce the batches of the next `prefetch` steps on a host thread
        while the device runs the current step (0: call `batch_fn` in the loop). For
        host-side data (graph samplers); the batches and results are the same.

    Returns:
      `(state, history)`: history holds the logged rows of the *whole* run (rows of
      earlier segments read back from metrics.jsonl, one row per step, eval metrics merged
      in), so best-of summaries are right after a resume. Rows logged after the
      checkpoint a resumed run starts from are dropped from metrics.jsonl first, since
      the run logs them again. Timing over all segments: `run_times(workdir)`.
    """
    given_loop = loop is not None
    loop = loop if given_loop else LoopConfig()
    num_steps = loop.num_steps if num_steps is None else num_steps
    eval_every = loop.eval_every if eval_every is None else eval_every
    log_every = loop.log_every if log_every is None else log_every
    checkpoint_every = loop.checkpoint_every if checkpoint_every is None else checkpoint_every
    keep = loop.keep if keep is None else keep
    progress = loop.progress if progress is None else progress
    if mesh is None and (jax.process_count() > 1 or (given_loop and loop.num_devices != 1)):
        mesh = parallel.make_mesh((loop.num_devices or None) if given_loop else None)
    workdir = pathlib.Path(workdir)
    state, start, meta = _restore(workdir, state, keep, move_aside=True)
    if start == 0:
        start = _step_of(state)
    metrics_lib.truncate_after(workdir / "metrics.jsonl", start)
    distributed.sync("jaxlab-fit-start")  # every process reads the truncated metrics
    past = metrics_lib.merge_by_step(metrics_lib.read_metrics(workdir / "metrics.jsonl"))
    cum_train = float(meta.get("train_time_s", 0.0))
    cum_eval = float(meta.get("eval_time_s", 0.0))
    cum_wall = float(meta.get("wall_time_s", 0.0))
    cum_compile = float(meta.get("compile_time_s", 0.0))
    manager = ckpt_lib.CheckpointManager(workdir / "checkpoints", max_to_keep=keep)
    if mesh is not None:
        state = parallel.replicate(state, mesh)
    writer = metrics_lib.MetricWriter(workdir)
    root = jax.random.key(seed)
    history: list[dict] = []
    metric_names: list[str] | None = None
    first_bad = jnp.array([-1, -1], jnp.int32)
    end = num_steps if stop_after is None else min(num_steps, stop_after)
    seg = {"start_step": start, "end_step": start, "train_time_s": 0.0, "eval_time_s": 0.0,
           "checkpoint_time_s": 0.0, "first_step_s": None, "compile_time_s": 0.0,
           "data_time_s": 0.0, "data_wait_s": 0.0}
    fetcher = _Prefetcher(batch_fn, start, end, prefetch)
    compile_start = compile_seconds()
    compile_skip = 0.0  # compiles inside evaluation and checkpoint windows
    t_seg = time.perf_counter()
    t_mark, steps_done = t_seg, 0

    def guard() -> None:
        bad = np.asarray(jax.device_get(first_bad))
        if bad[0] >= 0:
            name = metric_names[int(bad[1])] if metric_names else "metric"
            raise NonFiniteError(int(bad[0]), name, "nan/inf")

    def pause() -> float:
        """Waits for the device, books the time since the last mark as training."""
        nonlocal t_mark
        jax.block_until_ready(state)
        now = time.perf_counter()
        seg["train_time_s"] += now - t_mark
        t_mark = now
        return now

    def times() -> dict:
        wall = time.perf_counter() - t_seg
        seg["compile_time_s"] = compile_seconds() - compile_start - compile_skip
        return {"train_time_s": cum_train + seg["train_time_s"], "eval_time_s": cum_eval + seg["eval_time_s"],
                "wall_time_s": cum_wall + wall, "compile_time_s": cum_compile + seg["compile_time_s"]}

    bar = progress_bar(range(start, end), desc=desc, initial=start, total=num_steps,
                       disable=None if progress else True)
    ended = "interrupted"
    try:
        for s in bar:
            batch = fetcher.get(s)
            if mesh is not None:
                batch = parallel.shard_batch(batch, mesh)
            key = jax.random.fold_in(root, s)
            state, metrics = step_fn(state, batch, key)
            steps_done += 1
            done = s + 1
            seg["end_step"] = done
            if seg["first_step_s"] is None:
                jax.block_until_ready(metrics)
                seg["first_step_s"] = time.perf_counter() - t_seg
            if nan_guard:
                if metric_names is None:
                    metric_names = sorted(metrics)
                first_bad = _track_nonfinite(first_bad, metrics, jnp.asarray(done, jnp.int32))
            last = done == end
            if done % log_every == 0 or last:
                if nan_guard:
                    guard()
                row = {k: float(np.mean(v)) for k, v in jax.device_get(metrics).items()}
                row["steps_per_sec"] = steps_done / max(seg["train_time_s"] + time.perf_counter() - t_mark, 1e-9)
                now = times()
                row["train_time_s"] = now["train_time_s"] + time.perf_counter() - t_mark
                row["compile_time_s"] = now["compile_time_s"]
                writer.write(done, row)
                history.append({"step": done, **row})
                bar.set_postfix(loss=f"{row.get('loss', float('nan')):.4g}")
            if eval_fn is not None and ((eval_every and done % eval_every == 0) or last):
                if nan_guard:
                    guard()
                t0 = pause()
                c0 = compile_seconds()
                erow = {f"eval_{k}": _to_float(v) for k, v in dict(eval_fn(state)).items()}
                compile_skip += compile_seconds() - c0
                now = times()
                erow["train_time_s"], erow["compile_time_s"] = now["train_time_s"], now["compile_time_s"]
                writer.write(done, erow)
                if history and history[-1]["step"] == done:
                    history[-1].update(erow)
                else:
                    history.append({"step": done, **erow})
                t_mark = time.perf_counter()
                seg["eval_time_s"] += t_mark - t0
            if (checkpoint_every and done % checkpoint_every == 0) or last:
                if nan_guard:
                    guard()
                t0 = pause()
                c0 = compile_seconds()
                manager.save(done, serialization.to_state_dict(state), meta=times())
                compile_skip += compile_seconds() - c0
                t_mark = time.perf_counter()
                seg["checkpoint_time_s"] += t_mark - t0
    except BaseException as e:
        ended = type(e).__name__
        raise
    else:
        ended = "finished" if seg["end_step"] >= num_steps else "stopped"
    finally:
        fetcher.close()
        seg["data_time_s"], seg["data_wait_s"] = fetcher.busy_s, fetcher.wait_s
        bar.close()
        writer.close()
        manager.close()
        if steps_done:
            if ended in ("finished", "stopped"):
                pause()
            tt = times()
            seg_row = {**seg, "ended": ended, "cum_train_time_s": tt["train_time_s"],
                       "cum_eval_time_s": tt["eval_time_s"], "cum_wall_time_s": tt["wall_time_s"],
                       "cum_compile_time_s": tt["compile_time_s"],
                       "wall_time_s": time.perf_counter() - t_seg}
            metrics_lib.append_jsonl(workdir / SEGMENTS, seg_row)
    return state, metrics_lib.merge_by_step(past + history)


def _to_float(v: Any) -> Any:
    a = np.asarray(v)
    return float(a) if a.size == 1 else a.tolist()
