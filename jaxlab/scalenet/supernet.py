"""Super-supernet training and the scoring of architectures with inherited weights.

* `train`: one sampled sub-network per step (hierarchical or uniform sampler), the
  coupling side alternating with the step (`asyn=True`); SGD Nesterov with warm-up and
  cosine decay, label smoothing (spec sec. 2.4). A batch (architecture, resolution,
  images) is a pure function of `(seed, step)` and training goes through
  `jaxlab.core.train.fit`, so a killed run resumes bit-identically from its checkpoints.
  The step is jitted once per input resolution, or once per (bucket, resolution) with
  `supernet.buckets` on (the default for long runs on CPU): the masked forward on the supernet cut to
  the smallest width/depth bucket that holds the architecture (`buckets.py`), the same
  update to float tolerance.
* `make_scorer`: accuracy of a population of architectures at one resolution on
  held-out images, left + right logits summed, BN on batch statistics; one jitted,
  vmapped call per chunk of `search.eval_chunk` architectures (one compile per r).
* `stage_accuracy`: mean inherited accuracy of sampled sub-networks per scaling stage.
"""

from __future__ import annotations

import pathlib
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxlab.core import train as train_lib
from jaxlab.core import workdir as workdir_lib
from jaxlab.nas.population import make_population_eval
from jaxlab.scalenet import buckets as buckets_lib
from jaxlab.scalenet import sampler as sampler_lib
from jaxlab.scalenet.configs import ScaleNetConfig
from jaxlab.scalenet.data import Data
from jaxlab.scalenet.models import SuperNet, ensemble_logits, init_params
from jaxlab.scalenet.space import Space
from jaxlab.scalenet.training import make_optimizer, smoothed_cross_entropy

__all__ = ["BATCH_STREAM", "STAGE_ACCURACY_STREAM", "init_state", "batch_fn", "make_step", "train", "load",
           "make_scorer", "stage_accuracy"]

BATCH_STREAM = 1            # default_rng([seed, BATCH_STREAM, step]): architecture, side and images of a step
STAGE_ACCURACY_STREAM = 5   # default_rng([seed, STAGE_ACCURACY_STREAM]): sub-networks of `stage_accuracy`


def init_state(cfg: ScaleNetConfig, space: Space) -> tuple[SuperNet, train_lib.TrainState]:
    """The supernet module and its initial train state (host-side init from `cfg.seed`)."""
    net = SuperNet(space)
    r0 = int(space.cfg.res_grid[0][0])
    arch = space.scale(np.ones(space.num_genes, np.int64), 1.0, 1.0)
    params = init_params(net, cfg.seed, jnp.zeros((1, r0, r0, 3)), arch)["params"]
    s = cfg.supernet
    tx = make_optimizer(s.lr, s.loop.num_steps, s.warmup_steps, s.weight_decay, s.momentum,
                        conv_decay_multiplier=s.conv_decay_multiplier)
    return net, train_lib.TrainState.create(params=params, tx=tx)


def batch_fn(cfg: ScaleNetConfig, space: Space, data: Data) -> Callable[[int], dict]:
    """`step -> {"x" [B, r, r, 3], "y" [B], "arch"}`: a pure function of `(seed, step)`."""
    s = cfg.supernet
    bilateral = space.cfg.coupling == "bilateral"

    def make(step: int) -> dict:
        rng = np.random.default_rng([cfg.seed, BATCH_STREAM, step])
        side = (step % 2) if (bilateral and s.alternate_sides) else 0
        arch, r, _ = sampler_lib.sample(space, rng, s.sampler, side=side)
        x, y = data.get("train", r)
        idx = rng.integers(0, len(y), s.batch_size)
        return {"x": x[idx], "y": y[idx], "arch": arch}

    return make


def make_step(cfg: ScaleNetConfig, net: SuperNet) -> Callable:
    """`step(state, batch, key) -> (state, metrics)` of the supernet.

    With buckets (`supernet.buckets`, see `buckets.py`) a host-side dispatcher picks the
    bucket of `batch["arch"]` and calls that bucket's jitted step (compiled on first
    use); otherwise one jitted masked step.
    """
    smoothing = cfg.supernet.label_smoothing
    space = net.space

    def make(view) -> Callable:
        sub = net if view is None else SuperNet(view, dtype=net.dtype)
        shapes = None

        def loss_fn(params, extra, batch, key):
            del key
            arch = batch["arch"]
            p = params
            if view is not None:
                p = buckets_lib.slice_params(params, shapes, arch["side"])
                arch = dict(arch, ops=jnp.asarray(arch["ops"])[view.layer_ids])
            logits = sub.apply({"params": p}, batch["x"], arch)
            loss = smoothed_cross_entropy(logits, batch["y"], smoothing)
            acc = jnp.mean(jnp.argmax(logits, -1) == batch["y"])
            return loss, ({"accuracy": acc}, extra)

        if view is not None:
            r0 = int(space.cfg.res_grid[0][0])
            a0 = {"ops": np.ones(len(view.layers), np.int32), "channels": view.super_channels,
                  "side": np.int32(0)}
            shapes = jax.eval_shape(lambda: sub.init(jax.random.key(0), jnp.zeros((1, r0, r0, 3)), a0))["params"]
        return train_lib.make_train_step(loss_fn)

    if not buckets_lib.use_buckets(cfg.supernet.buckets, cfg.supernet.loop.num_steps):
        return make(None)
    steps: dict[float, Callable] = {}

    def step(state, batch, key):
        m = buckets_lib.choose_bucket(space, batch["arch"])
        if m not in steps:
            steps[m] = make(buckets_lib.bucket_view(space, m))
        return steps[m](state, batch, key)

    return step


def train(cfg: ScaleNetConfig, space: Space, workdir: pathlib.Path, data: Data,
          stop_after: int | None = None) -> tuple[SuperNet, train_lib.TrainState, list[dict]]:
    """Trains the super-supernet in `workdir` (resuming from its checkpoints).

    Returns the module, the final state and the history of the whole run (`fit`'s).
    `stop_after` stops once that step is checkpointed, as if killed (tests).
    """
    net, state = init_state(cfg, space)
    state, history = train_lib.fit(
        state, make_step(cfg, net), batch_fn(cfg, space, data), workdir=workdir, loop=cfg.supernet.loop,
        seed=cfg.seed, desc="supernet", stop_after=stop_after)
    return net, state, history


def load(cfg: ScaleNetConfig, space: Space, workdir: pathlib.Path) -> tuple[SuperNet, train_lib.TrainState, int]:
    """The supernet module, the newest intact checkpointed state of `workdir` and its step."""
    net, state = init_state(cfg, space)
    try:
        state, step = train_lib.load_state(workdir, state, keep=cfg.supernet.loop.keep)
    except workdir_lib.WorkdirError as e:
        raise workdir_lib.WorkdirError(f"{e}: no supernet there; run `jaxlab scalenet train-supernet` "
                                       "first (or set search.supernet_dir)") from None
    return net, state, step


def make_scorer(cfg: ScaleNetConfig, space: Space, net: SuperNet, params, data: Data) -> Callable:
    """`score(archs [P, ...], r) -> accuracy [P]` on the first `search.eval_batch` held-out images.

    Left + right logits are summed under bilateral coupling. Populations are padded to a
    multiple of `search.eval_chunk`; each chunk is one population call (compiled once per r).

    With `supernet.buckets` on (as resolved for training, see `buckets.py`) every
    architecture is scored on the supernet cut to the smallest bucket that holds it: the
    same logits to float tolerance at a fraction of the full width's multiply-adds, one
    compile per (bucket, r).
    """
    c = cfg.search
    bucketed = buckets_lib.use_buckets(cfg.supernet.buckets, cfg.supernet.loop.num_steps)
    calls: dict = {}

    def accuracy_fn(mult):
        if mult in calls:
            return calls[mult]
        if mult is None:
            apply_fn = net.apply
        else:
            view = buckets_lib.bucket_view(space, mult)
            sub = SuperNet(view, dtype=net.dtype)
            r0 = int(space.cfg.res_grid[0][0])
            a0 = {"ops": np.ones(len(view.layers), np.int32), "channels": view.super_channels, "side": np.int32(0)}
            shapes = jax.eval_shape(lambda: sub.init(jax.random.key(0), jnp.zeros((1, r0, r0, 3)), a0))["params"]

            def apply_fn(variables, x, arch):
                p = buckets_lib.slice_params(variables["params"], shapes, arch["side"])
                return sub.apply({"params": p}, x, dict(arch, ops=jnp.asarray(arch["ops"])[view.layer_ids]))

        pop_eval = make_population_eval(
            lambda p, x, arch: ensemble_logits(apply_fn, {"params": p}, x, arch, space.cfg.coupling))

        @jax.jit
        def accuracy(p, x, y, archs):
            logits = pop_eval(p, x, archs)
            return jnp.mean((jnp.argmax(logits, -1) == y).astype(jnp.float32), -1)

        calls[mult] = accuracy
        return accuracy

    def score_group(archs: dict, x, y, mult) -> np.ndarray:
        accuracy = accuracy_fn(mult)
        p = archs["ops"].shape[0]
        pad = (-p) % c.eval_chunk
        full = {k: np.concatenate([v, np.repeat(v[-1:], pad, 0)]) for k, v in archs.items()}
        full["side"] = np.zeros(p + pad, np.int32)
        out = [np.asarray(accuracy(params, x, y, {k: jnp.asarray(v[i: i + c.eval_chunk]) for k, v in full.items()}))
               for i in range(0, p + pad, c.eval_chunk)]
        return np.concatenate(out)[:p]

    def score(archs: dict, r: int) -> np.ndarray:
        x, y = data.get("val", r)
        x, y = jnp.asarray(x[: c.eval_batch]), jnp.asarray(y[: c.eval_batch])
        archs = {"ops": np.asarray(archs["ops"]), "channels": np.asarray(archs["channels"])}
        p = archs["ops"].shape[0]
        if not bucketed:
            return score_group(archs, x, y, None)
        mults = np.array([buckets_lib.choose_bucket(space, {k: v[i] for k, v in archs.items()}) for i in range(p)])
        out = np.zeros(p, np.float32)
        for m in np.unique(mults):
            sel = mults == m
            out[sel] = score_group({k: v[sel] for k, v in archs.items()}, x, y, float(m))
        return out

    return score


def stage_accuracy(cfg: ScaleNetConfig, space: Space, net: SuperNet, params, data: Data) -> dict:
    """`{"stage<s>": mean accuracy}` of `supernet.stage_archs` hierarchically sampled
    sub-networks per scaling stage (the same draws for every supernet of a seed)."""
    n = cfg.supernet.stage_archs
    score = make_scorer(cfg, space, net, params, data)
    rng = np.random.default_rng([cfg.seed, STAGE_ACCURACY_STREAM])
    archs, r, info = sampler_lib.sample_batch(space, rng, 40 * n)
    out = {}
    for s in range(space.num_scaling_stages):
        idx = np.nonzero(info["stage"] == s)[0][:n]
        accs = []
        for res in np.unique(r[idx]):
            sel = idx[r[idx] == res]
            accs.extend(score({k: v[sel] for k, v in archs.items()}, int(res)).tolist())
        out[f"stage{s}"] = float(np.mean(accs)) if accs else None
    return out
