"""Discrete gradient dynamics of deep matrix factorization as one jitted `lax.scan`.

`train` runs `steps` optimizer updates on the factors [W_1, ..., W_N] and records, every
`log_every` steps, the loss, the gradient norm (all factors together) and the singular
values of the end-to-end matrix W = W_N ... W_1. `sweep` vmaps the same computation over
seeds x init scales x learning rates in one compiled call.

Float64: call inside `with jax.enable_x64(True):` (small singular values sit below
float32 resolution); arrays created there (targets, factors) are float64 and so is the
whole trajectory.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import PartitionSpec as P

from jaxlab.core import parallel
from jaxlab.dmf import models
from jaxlab.dmf.optim import OPTIMIZERS, make_optimizer

__all__ = ["Trajectory", "train", "sweep", "advance", "trace_count"]

# Number of times the scan body has been traced (tests assert one compile per sweep).
_TRACES = {"train": 0}


def trace_count() -> int:
    return _TRACES["train"]


@flax.struct.dataclass
class Trajectory:
    """A logged DMF training run (a pytree; `sweep` stacks leading axes onto every array).

    Attributes:
      step: `[T]` number of updates applied before each log point (0, k, 2k, ...).
      loss: `[T]` training loss at those points.
      grad_norm: `[T]` Frobenius norm of the gradient in all factors together.
      singular_values: `[T, min(n, m)]` singular values of W, descending.
      test_error: `[T]` relative error ||W - M*||_F / ||M*||_F against the full target.
      factors: the factors after all `steps` updates.
      opt_state: the optimizer state after all updates (to continue a run).
      grad_u, grad_v: `[T, n]`, `[T, m]` top singular pair of -dl/dW (only with
        `track_escape=True`, else None); used by `escape_alignment`.
      reduction, observation: the loss reduction ("half_sum"/"mean") and observation model
        ("full"/"completion"/"sensing") (static).
    """

    step: jax.Array
    loss: jax.Array
    grad_norm: jax.Array
    singular_values: jax.Array
    test_error: jax.Array
    factors: Any
    opt_state: Any = None
    grad_u: jax.Array | None = None
    grad_v: jax.Array | None = None
    reduction: str = flax.struct.field(pytree_node=False, default="half_sum")
    observation: str = flax.struct.field(pytree_node=False, default="full")

    def select(self, *index) -> Trajectory:
        """The run at `index` of the leading (sweep) axes, e.g. `traj.select(seed, i, j)`."""
        return jax.tree.map(lambda x: x[index], self)

    def to_numpy(self) -> Trajectory:
        return jax.tree.map(np.asarray, self)


def _observation(mask, measurements) -> str:
    if mask is not None and measurements is not None:
        raise ValueError("train: give either mask (completion) or measurements (sensing), not both")
    return "sensing" if measurements is not None else ("completion" if mask is not None else "full")


def _check(factors, target, mask, measurements, steps, log_every, optimizer, loss_reduction):
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
    if loss_reduction not in (None,) + models.REDUCTIONS:
        raise ValueError(f"loss_reduction must be one of {models.REDUCTIONS} or None, got {loss_reduction!r}")
    if steps < 0 or log_every < 1:
        raise ValueError(f"need steps >= 0 and log_every >= 1, got steps={steps}, log_every={log_every}")
    w_shape = (factors[-1].shape[0], factors[0].shape[1])
    if tuple(target.shape) != w_shape:
        raise ValueError(f"target has shape {tuple(target.shape)} but the factors multiply to {w_shape}")
    if mask is not None and tuple(mask.shape) != w_shape:
        raise ValueError(f"mask has shape {tuple(mask.shape)}, expected {w_shape}")
    if measurements is not None:
        a, y = measurements
        if a.ndim != 3 or tuple(a.shape[1:]) != w_shape or y.shape != (a.shape[0],):
            raise ValueError(f"measurements (A, y) must be [m, {w_shape[0]}, {w_shape[1]}] and [m], "
                             f"got {a.shape}, {y.shape}")


# LAPACK calls of the logging, one matrix per call even under `vmap`. jaxlib 0.10.2's
# batched CPU LAPACK kernels (one custom call for a whole batch) split the batch over
# XLA's intra-op thread pool and block a pool thread until the pieces are done; when
# several programs run at once (the devices of a sharded `sweep`), every pool thread can
# end up blocked that way and the process deadlocks (seen on a 2-core host with 2 CPU
# devices). A `lax.map` of single-matrix calls avoids that and computes each matrix
# with the same LAPACK routine, so the numbers do not change.
@jax.custom_batching.custom_vmap
def _singular_values(w):
    return jnp.linalg.svd(w, compute_uv=False)


@_singular_values.def_vmap
def _singular_values_vmap(axis_size, in_batched, w):
    if not in_batched[0]:
        return _singular_values(w), False
    return jax.lax.map(_singular_values, w), True


@jax.custom_batching.custom_vmap
def _top_singular_pair(m):
    u, _, vt = jnp.linalg.svd(m, full_matrices=False)
    return u[:, 0], vt[0]


@_top_singular_pair.def_vmap
def _top_singular_pair_vmap(axis_size, in_batched, m):
    if not in_batched[0]:
        return _top_singular_pair(m), (False, False)
    return jax.lax.map(_top_singular_pair, m), (True, True)


def _simulate(factors, target, mask, measurements, opt_state, lr, *, steps, log_every, optimizer, reduction,
              track_escape, start_step=0):
    """Traced body shared by `train` and `sweep` (returns a Trajectory)."""
    _TRACES["train"] += 1
    factors = list(factors)
    tx = make_optimizer(optimizer, lr)
    if opt_state is None:
        opt_state = tx.init(factors)
    target_norm = jnp.linalg.norm(target)

    def loss_w(fs):
        w = models.end_to_end(fs)
        r = models.residuals(w, target, mask, measurements)
        sq = jnp.sum(r * r)
        if reduction == "half_sum":
            return 0.5 * sq, w
        return sq / models._count(target, mask, measurements), w

    def loss_of_w(w):
        r = models.residuals(w, target, mask, measurements)
        sq = jnp.sum(r * r)
        return 0.5 * sq if reduction == "half_sum" else sq / models._count(target, mask, measurements)

    grad_fn = jax.value_and_grad(loss_w, has_aux=True)

    def update(fs, os, g):
        upd, os = tx.update(g, os, fs)
        return optax.apply_updates(fs, upd), os

    def plain_step(_, carry):
        fs, os = carry
        (_, _), g = grad_fn(fs)
        return update(fs, os, g)

    def chunk(carry, _):
        fs, os = carry
        (loss, w), g = grad_fn(fs)
        gnorm = jnp.sqrt(sum(jnp.sum(x * x) for x in g))
        metrics = {
            "loss": loss,
            "grad_norm": gnorm,
            "singular_values": _singular_values(w),
            "test_error": jnp.linalg.norm(w - target) / target_norm,
        }
        if track_escape:
            gw = jax.grad(loss_of_w)(w)
            metrics["grad_u"], metrics["grad_v"] = _top_singular_pair(-gw)
        carry = update(fs, os, g)
        if log_every > 1:
            carry = jax.lax.fori_loop(0, log_every - 1, plain_step, carry)
        return carry, metrics

    t = steps // log_every
    (fs, os), ms = jax.lax.scan(chunk, (factors, opt_state), None, length=t)
    rest = steps - t * log_every
    if rest:
        fs, os = jax.lax.fori_loop(0, rest, plain_step, (fs, os))
    return Trajectory(
        step=start_step + jnp.arange(t) * log_every,
        loss=ms["loss"],
        grad_norm=ms["grad_norm"],
        singular_values=ms["singular_values"],
        test_error=ms["test_error"],
        factors=fs,
        opt_state=os,
        grad_u=ms.get("grad_u"),
        grad_v=ms.get("grad_v"),
        reduction=reduction,
        observation=_observation(mask, measurements),
    )


_STATIC = ("steps", "log_every", "optimizer", "reduction", "track_escape")


@functools.partial(jax.jit, static_argnames=_STATIC)
def _train_jit(factors, target, mask, measurements, opt_state, lr, start_step, *, steps, log_every, optimizer,
               reduction, track_escape):
    return _simulate(factors, target, mask, measurements, opt_state, lr, steps=steps, log_every=log_every,
                     optimizer=optimizer, reduction=reduction, track_escape=track_escape, start_step=start_step)


def train(
    factors: Sequence[jax.Array],
    target: jax.Array,
    *,
    mask: jax.Array | None = None,
    measurements: tuple | None = None,
    lr: float,
    steps: int,
    optimizer: str = "gd",
    log_every: int = 1,
    loss_reduction: str | None = None,
    track_escape: bool = False,
    opt_state: Any = None,
    start_step: int = 0,
) -> Trajectory:
    """Runs `steps` updates of `optimizer` on the factors; one jitted `lax.scan`.

        W_i <- W_i - lr * dl/dW_i,   dl/dW_i = (W_N...W_{i+1})^T grad_W l (W_{i-1}...W_1)^T

    for "gd" (the gradient by autodiff), GroupRMSprop or optax RMSProp otherwise.

    Args:
      factors: [W_1, ..., W_N] (e.g. from `init_factors`).
      target: `[n, m]` M* (the full target; for sensing it only feeds `test_error`).
      mask: `[n, m]` 0/1 observed entries (matrix completion).
      measurements: `(A [k, n, m], y [k])` (matrix sensing, y_i ~ <A_i, M*>).
      lr: learning rate (may be a traced scalar).
      steps: number of updates; log_every: log every that many updates; T = steps // log_every.
      loss_reduction: "half_sum" (default under full observation) or "mean" (default for
        completion and sensing); see `jaxlab.dmf.models`.
      track_escape: also record the top singular pair of -dl/dW (for `escape_alignment`).
      opt_state, start_step: continue a previous run (`traj.opt_state`, its step count).

    Returns:
      `Trajectory` with T log points; metrics at a log point describe the iterate before
      that update (step[0] = start_step is the initialization).
    """
    factors = list(factors)
    _check(factors, target, mask, measurements, steps, log_every, optimizer, loss_reduction)
    reduction = loss_reduction or models.default_reduction(mask, measurements)
    return _train_jit(factors, target, mask, measurements, opt_state, jnp.asarray(lr, target.dtype),
                      jnp.asarray(start_step),
                      steps=int(steps), log_every=int(log_every), optimizer=optimizer, reduction=reduction,
                      track_escape=bool(track_escape))


_SWEEP_STATIC = _STATIC + ("depth", "kind", "shape")


def _sweep_runs(key, target, mask, measurements, seeds, scales, lrs, *, depth, kind, shape, steps, log_every,
                optimizer, reduction, track_escape):
    """The vmapped runs of a flat `[R]` batch of (seed, scale, lr) (traced body of `sweep`)."""
    def one(seed, scale, lr):
        fs = models.init_factors(jax.random.fold_in(key, seed), shape, depth, scale, kind)
        return _simulate(fs, target, mask, measurements, None, lr, steps=steps, log_every=log_every,
                         optimizer=optimizer, reduction=reduction, track_escape=track_escape)

    return jax.vmap(one)(seeds, scales, lrs)


_sweep_jit = jax.jit(_sweep_runs, static_argnames=_SWEEP_STATIC)

@functools.partial(jax.jit, static_argnames=_SWEEP_STATIC + ("mesh",))
def _sweep_sharded_jit(key, target, mask, measurements, seeds, scales, lrs, *, mesh, **static):
    """`_sweep_runs` with the run axis split over the `data` axis of `mesh`
    (`parallel.make_mesh`): every device vmaps its own contiguous block of runs; nothing
    is communicated."""
    rep, split = P(), P(parallel.DATA)
    body = functools.partial(_sweep_runs, **static)
    return jax.shard_map(body, mesh=mesh, in_specs=(rep, rep, rep, rep, split, split, split),
                         out_specs=split, check_vma=False)(key, target, mask, measurements, seeds, scales, lrs)


def sweep(
    key: jax.Array,
    target: jax.Array,
    *,
    depth: int,
    seeds,
    init_scales: Sequence[float],
    lrs: Sequence[float],
    steps: int,
    log_every: int = 1,
    optimizer: str = "gd",
    kind: str = "gaussian",
    mask: jax.Array | None = None,
    measurements: tuple | None = None,
    loss_reduction: str | None = None,
    track_escape: bool = False,
    devices: int | None = None,
) -> Trajectory:
    """All combinations seeds x init_scales x lrs, vmapped in one compiled call.

    Run (s, i, j) starts from `init_factors(fold_in(key, seeds[s]), n, depth,
    init_scales[i], kind)` and trains with `lrs[j]`. `seeds` is a count (seeds 0..S-1)
    or a sequence of ints. Every array of the returned `Trajectory` has leading axes
    `[S, I, L]`; `traj.select(s, i, j)` is one run.

    `devices`: how many devices the runs use: None (default) all of `jax.devices()`, an
    int k the first k of them (at most one per run is used). With more than one device
    the flat run axis is split into contiguous blocks over the `data` axis of
    `jaxlab.core.parallel.make_mesh` (`shard_map`; the run
    count is padded up to a multiple of the device count by repeating the last run, and
    the padding is dropped), each device vmapping its block; the runs are independent, so
    the numbers are the same as with one device. On a CPU host, several devices need
    `jax.config.update("jax_num_cpu_devices", k)` (or the environment variable
    `JAX_NUM_CPU_DEVICES=k`) before JAX's first computation; each CPU device then runs its
    block on its own thread, so k up to the number of cores puts them all to work.
    A sharded call returns its result on the first device, as a one-device call does.
    In a run of several processes (`jaxlab.core.distributed`) the runs are split over
    the devices of all processes and every process gets all results, as host arrays.
    """
    seed_arr = np.arange(seeds) if np.ndim(seeds) == 0 else np.asarray(seeds)
    scales = np.asarray(init_scales, dtype=np.float64).reshape(-1)
    lr_arr = np.asarray(lrs, dtype=np.float64).reshape(-1)
    s_, i_, l_ = np.meshgrid(np.arange(len(seed_arr)), np.arange(len(scales)), np.arange(len(lr_arr)), indexing="ij")
    dummy = models.init_factors(jax.random.PRNGKey(0), tuple(target.shape), depth, 1.0, kind)
    _check(dummy, target, mask, measurements, steps, log_every, optimizer, loss_reduction)
    reduction = loss_reduction or models.default_reduction(mask, measurements)
    dt = target.dtype
    run_seeds, run_scales, run_lrs = seed_arr[s_.ravel()], scales[i_.ravel()], lr_arr[l_.ravel()]
    static = dict(depth=int(depth), kind=kind, shape=tuple(target.shape), steps=int(steps), log_every=int(log_every),
                  optimizer=optimizer, reduction=reduction, track_escape=bool(track_escape))
    runs = len(run_seeds)
    if devices is not None and not 1 <= int(devices) <= jax.device_count():
        raise ValueError(f"devices={devices}: need 1..{jax.device_count()} (jax.device_count())")
    num = min(jax.device_count() if devices is None else int(devices), max(runs, 1))  # no device gets only padding
    first = jax.devices()[0]
    if num == 1 or runs == 0:
        with jax.default_device(first):
            out = _sweep_jit(key, target, mask, measurements, jnp.asarray(run_seeds, jnp.uint32),
                             jnp.asarray(run_scales, dt), jnp.asarray(run_lrs, dt), **static)
    else:
        mesh = parallel.make_mesh(num)
        padded = -(-runs // num) * num
        pad = lambda a: np.concatenate([a, np.repeat(a[-1:], padded - runs)])
        split = parallel.data_sharding(mesh)
        put = lambda x, sh: None if x is None else jax.device_put(x, sh)
        rep = lambda x: None if x is None else parallel.replicate(x, mesh)
        out = _sweep_sharded_jit(rep(key), rep(target), rep(mask), rep(measurements),
                                 put(pad(run_seeds).astype(np.uint32), split), put(pad(run_scales).astype(dt), split),
                                 put(pad(run_lrs).astype(dt), split), mesh=mesh, **static)
        if jax.process_count() > 1:  # each process gets every run (host arrays)
            from jax.experimental import multihost_utils

            out = multihost_utils.process_allgather(out, tiled=True)
        else:  # gather onto the first device, where the one-device call leaves its result
            out = jax.device_put(out, first)
        if padded != runs:
            out = jax.tree.map(lambda x: x[:runs], out)
    lead = (len(seed_arr), len(scales), len(lr_arr))
    return jax.tree.map(lambda x: x.reshape(lead + x.shape[1:]), out)


@functools.partial(jax.jit, static_argnames=("optimizer", "reduction"))
def _advance_jit(factors, target, mask, measurements, lr, steps, *, optimizer, reduction):
    tx = make_optimizer(optimizer, lr)
    grad = jax.grad(lambda fs: models.loss_fn(fs, target, mask, measurements, reduction))

    def body(_, c):
        fs, os = c
        upd, os = tx.update(grad(fs), os, fs)
        return optax.apply_updates(fs, upd), os

    return jax.lax.fori_loop(0, steps, body, (list(factors), tx.init(list(factors))))[0]


def advance(factors, target, *, steps, lr, mask=None, measurements=None, optimizer="gd", loss_reduction=None):
    """The factors after `steps` updates from a fresh optimizer state, without logging.

    `steps` is a traced loop bound, so any number of steps reuses one compiled program
    (used to revisit points of a trajectory, e.g. for the Hessian at a saddle).
    """
    reduction = loss_reduction or models.default_reduction(mask, measurements)
    return _advance_jit(list(factors), target, mask, measurements, jnp.asarray(lr, target.dtype),
                        jnp.asarray(steps, jnp.int32), optimizer=optimizer, reduction=reduction)
