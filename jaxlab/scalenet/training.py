"""Super-supernet training, candidate scoring and retraining from scratch.

* `train_supernet`: one sampled sub-network per step (hierarchical or uniform sampler),
  the coupling side alternating with the step (`asyn=True`); SGD Nesterov with warm-up
  and cosine decay, label smoothing. A batch (architecture, resolution, images) is a
  pure function of `(seed, step)`, so an interrupted run resumes exactly
  (`jaxlab.core.train.fit`). The step is jitted once per input resolution.
* `make_scorer`: accuracy of a population of architectures at one resolution on held-out
  images, left + right logits summed, BN on batch statistics; a jitted, vmapped call per
  chunk of `eval_chunk` architectures (one compile per resolution).
* `retrain`: a standalone `SubNet` trained from scratch and tested.
"""

from __future__ import annotations

import functools
import pathlib
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxlab.core import train as train_lib
from jaxlab.nas.population import make_population_eval
from jaxlab.scalenet import sampler as sampler_lib
from jaxlab.scalenet.configs import ScaleNetConfig
from jaxlab.scalenet.models import SuperNet, init_params, subnet_from_arch
from jaxlab.scalenet.space import Space

__all__ = ["Data", "load_data", "make_optimizer", "init_supernet_state", "train_supernet", "make_scorer",
           "retrain", "all_resolutions"]


def all_resolutions(space: Space, extra=()) -> list[int]:
    rs = {int(r) for g in space.cfg.res_grid for r in g} | {int(r) for r in extra}
    return sorted(rs)


class Data:
    """Train / val / test splits of the procedural images, rendered lazily per resolution.

    Example i is the same scene at every resolution (`make_images` depends only on
    `(seed, index)`); val and test are disjoint from train.
    """

    def __init__(self, cfg: ScaleNetConfig, cache_dir: pathlib.Path | None = None):
        self.cfg = cfg.data
        self.cache_dir = cache_dir
        self._cache: dict = {}

    def get(self, split: str, resolution: int) -> tuple[np.ndarray, np.ndarray]:
        key = (split, int(resolution))
        if key not in self._cache:
            from jaxlab.data.synthetic import make_images

            c = self.cfg
            n = {"train": c.num_train, "val": c.num_val, "test": c.num_test}[split]
            start = {"train": 0, "val": c.num_train, "test": c.num_train + c.num_val}[split]
            self._cache[key] = make_images(n, resolution=int(resolution), num_classes=c.num_classes,
                                           seed=c.seed, start=start)
        return self._cache[key]


def load_data(cfg: ScaleNetConfig) -> Data:
    return Data(cfg)


def make_optimizer(lr: float, num_steps: int, warmup: int, weight_decay: float, momentum: float = 0.9):
    """SGD Nesterov, linear warm-up then cosine to 0; decoupled weight decay (not on BN/bias)."""
    sched = optax.warmup_cosine_decay_schedule(0.0, lr, max(1, min(warmup, num_steps - 1)), max(num_steps, 2))
    mask = lambda p: jax.tree_util.tree_map_with_path(
        lambda path, x: x.ndim > 1, p)
    return optax.chain(optax.add_decayed_weights(weight_decay, mask=mask),
                       optax.sgd(sched, momentum=momentum, nesterov=True))


def _ce(logits, y, smoothing, num_classes):
    t = optax.smooth_labels(jax.nn.one_hot(y, num_classes), smoothing)
    return optax.softmax_cross_entropy(logits, t).mean()


def init_supernet_state(cfg: ScaleNetConfig, space: Space) -> tuple[SuperNet, train_lib.TrainState]:
    net = SuperNet(space)
    r0 = int(space.cfg.res_grid[0][0])
    arch = space.scale(np.ones(space.num_genes, np.int64), 1.0, 1.0)
    params = init_params(net, cfg.seed, jnp.zeros((1, r0, r0, 3)), arch)["params"]
    s = cfg.supernet
    tx = make_optimizer(s.lr, s.num_steps, s.warmup_steps, s.weight_decay, s.momentum)
    return net, train_lib.TrainState.create(params=params, tx=tx)


def supernet_batch_fn(cfg: ScaleNetConfig, space: Space, data: Data) -> Callable[[int], dict]:
    """`step -> {"x", "y", "arch"}`: a pure function of `(seed, step)`."""
    s = cfg.supernet
    bilateral = space.cfg.coupling == "bilateral"

    def batch_fn(step: int) -> dict:
        rng = np.random.default_rng([cfg.seed, 1, step])
        side = (step % 2) if (bilateral and s.alternate_sides) else 0
        arch, r, _ = sampler_lib.sample(space, rng, s.sampler, side=side)
        x, y = data.get("train", r)
        idx = rng.integers(0, len(y), s.batch_size)
        return {"x": x[idx], "y": y[idx], "arch": arch}

    return batch_fn


def make_supernet_step(cfg: ScaleNetConfig, net: SuperNet):
    s = cfg.supernet
    k = net.space.cfg.num_classes

    def loss_fn(params, extra, batch, key):
        del key
        logits = net.apply({"params": params}, batch["x"], batch["arch"])
        loss = _ce(logits, batch["y"], s.label_smoothing, k)
        acc = jnp.mean(jnp.argmax(logits, -1) == batch["y"])
        return loss, ({"accuracy": acc}, extra)

    return train_lib.make_train_step(loss_fn)


def train_supernet(cfg: ScaleNetConfig, space: Space, workdir: pathlib.Path, data: Data | None = None,
                   stop_after: int | None = None, progress: bool = True):
    """Trains the super-supernet in `workdir` (resuming from its checkpoints)."""
    data = data or Data(cfg)
    net, state = init_supernet_state(cfg, space)
    step = make_supernet_step(cfg, net)
    s = cfg.supernet
    state, history = train_lib.fit(
        state, step, supernet_batch_fn(cfg, space, data), num_steps=s.num_steps, workdir=workdir,
        seed=cfg.seed, log_every=s.log_every, checkpoint_every=s.checkpoint_every, progress=progress,
        desc="supernet", stop_after=stop_after)
    return net, state, history


def load_supernet(cfg: ScaleNetConfig, space: Space, workdir: pathlib.Path):
    """Supernet module and parameters from the latest checkpoint of `workdir`."""
    net, state = init_supernet_state(cfg, space)
    state, step = train_lib.restore_latest(workdir, state)
    if step == 0:
        raise FileNotFoundError(f"no supernet checkpoint in {pathlib.Path(workdir) / 'checkpoints'}; "
                                "run `jaxlab scalenet train-supernet` first")
    return net, state.params, step


def make_scorer(cfg: ScaleNetConfig, space: Space, net: SuperNet, params, data: Data) -> Callable:
    """`score(archs [P, ...], r) -> accuracy [P]` on `search.eval_batch` held-out images.

    Left + right logits are summed under bilateral coupling. Populations are padded to a
    multiple of `search.eval_chunk`; each chunk is one vmapped call (compiled once per r).
    Counts evaluated architectures in `score.count`.
    """
    c = cfg.search
    coupling = space.cfg.coupling

    def apply(p, x, arch):
        a0 = dict(arch, side=jnp.int32(0))
        out = net.apply({"params": p}, x, a0)
        if coupling == "bilateral":
            out = out + net.apply({"params": p}, x, dict(arch, side=jnp.int32(1)))
        return out

    pop_eval = make_population_eval(apply)

    @functools.partial(jax.jit)
    def acc_chunk(p, x, y, archs):
        logits = pop_eval(p, x, archs)
        return jnp.mean((jnp.argmax(logits, -1) == y).astype(jnp.float32), -1)

    def score(archs: dict, r: int) -> np.ndarray:
        x, y = data.get("val", r)
        x, y = x[: c.eval_batch], y[: c.eval_batch]
        archs = {"ops": np.asarray(archs["ops"]), "channels": np.asarray(archs["channels"])}
        p = archs["ops"].shape[0]
        pad = (-p) % c.eval_chunk
        full = {k: np.concatenate([v, np.repeat(v[-1:], pad, 0)]) for k, v in archs.items()}
        full["side"] = np.zeros(p + pad, np.int32)
        out = []
        for i in range(0, p + pad, c.eval_chunk):
            chunk = {k: jnp.asarray(v[i: i + c.eval_chunk]) for k, v in full.items()}
            out.append(np.asarray(acc_chunk(params, jnp.asarray(x), jnp.asarray(y), chunk)))
        score.count += p
        return np.concatenate(out)[:p]

    score.count = 0
    return score


def retrain(cfg: ScaleNetConfig, space: Space, arch: dict, resolution: int, data: Data, seed: int = 0,
            workdir: pathlib.Path | None = None) -> dict:
    """Trains the standalone network of `arch` from scratch at `resolution`; test accuracy."""
    rc = cfg.retrain
    model = subnet_from_arch(space, arch)
    x_tr, y_tr = data.get("train", resolution)
    x_te, y_te = data.get("test", resolution)
    variables = init_params(model, seed, jnp.zeros((1, resolution, resolution, 3)), train=False)
    tx = make_optimizer(rc.lr, rc.num_steps, rc.warmup_steps, rc.weight_decay)
    state = train_lib.TrainState.create(params=variables["params"], tx=tx,
                                        extra={"batch_stats": variables["batch_stats"]})
    k = space.cfg.num_classes

    def loss_fn(params, extra, batch, key):
        logits, new = model.apply({"params": params, **extra}, batch["x"], train=True, mutable=["batch_stats"])
        loss = _ce(logits, batch["y"], rc.label_smoothing, k)
        return loss, ({"accuracy": jnp.mean(jnp.argmax(logits, -1) == batch["y"])}, dict(new))

    step = train_lib.make_train_step(loss_fn)
    t0 = time.perf_counter()
    for i in range(rc.num_steps):
        idx = np.random.default_rng([seed, 2, i]).integers(0, len(y_tr), rc.batch_size)
        state, m = step(state, {"x": x_tr[idx], "y": y_tr[idx]}, jax.random.key(i))
    jax.block_until_ready(state.params)
    train_time = time.perf_counter() - t0
    pred = jax.jit(lambda v, x: model.apply(v, x, train=False))
    variables = {"params": state.params, **state.extra}
    correct = 0
    for i in range(0, len(y_te), 250):
        correct += int(np.sum(np.argmax(np.asarray(pred(variables, x_te[i:i + 250])), -1) == y_te[i:i + 250]))
    return {"test_accuracy": correct / len(y_te), "train_loss": float(m["loss"]), "train_seconds": train_time,
            "macs": int(space.macs(arch, resolution)), "resolution": int(resolution)}
