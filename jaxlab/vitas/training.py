"""Superformer and retraining steps for `core.train.fit` (spec sec. 2.4).

Loss: soft-target cross-entropy with label smoothing eps, `-sum_k t_k log softmax(z)_k` with
`t = (1 - eps) y + eps / K` (y one-hot, or CutMix-mixed). Bilateral sharing (BCNet) runs the
subnet twice, left and right index sets, and sums the logits before the loss.

A supernet batch carries its architecture, sampled on the host from `(seed, ARCH_STREAM, step)`;
the patch size is static, so `make_supernet_step` holds one jitted step per patch size and
dispatches on the batch's `patch` field (at most one compile per patch size).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxlab.core import optim, runtime
from jaxlab.core import train as train_lib
from jaxlab.vitas import augment as aug_lib
from jaxlab.vitas import data as data_lib
from jaxlab.vitas import models
from jaxlab.vitas.configs import VitasConfig
from jaxlab.vitas.space import Space

ARCH_STREAM = 11
DATA_STREAM = 12
RETRAIN_DATA_STREAM = 13
INIT_STREAM = 14


def soft_ce(logits, targets, eps):
    k = logits.shape[-1]
    t = (1.0 - eps) * targets + eps / k
    return -jnp.sum(t * jax.nn.log_softmax(logits), -1).mean()


def optimizer(lr, weight_decay, warmup, steps):
    sched = optim.warmup_cosine(lr, warmup, steps)
    decay = lambda p: jax.tree.map(lambda a: a.ndim > 1, p)  # no decay on 1-D params and biases
    return optax.adamw(sched, weight_decay=weight_decay, mask=decay)


def supernet_forward(space: Space, params, x, arch, patch_index: int):
    """Logits of one subnet: summed over the two sides under bilateral sharing."""
    m = models.Superformer(space)
    return sum(m.apply({"params": params}, x, arch, patch_index=patch_index, side=s) for s in space.sides())


def init_supernet_state(config: VitasConfig, space: Space) -> train_lib.TrainState:
    key = jax.random.fold_in(jax.random.key(config.seed), INIT_STREAM)
    params = models.init_superformer(space, key)
    c = config.supernet
    return train_lib.TrainState.create(params=params, tx=optimizer(c.lr, c.weight_decay, c.warmup_steps,
                                                                   c.loop.num_steps))


def make_supernet_step(config: VitasConfig, space: Space):
    """`step(state, batch, key)` dispatching to one jitted step per patch size."""
    c = config.supernet
    k = space.cfg.num_classes
    steps = {}

    def make(pi):
        def loss_fn(params, extra, batch, key):
            x, y = aug_lib.augment(key, batch["x"], jax.nn.one_hot(batch["y"], k), c.aug)
            logits = supernet_forward(space, params, x, batch["arch"], pi)
            acc = jnp.mean(jnp.argmax(logits, -1) == batch["y"])
            return soft_ce(logits, y, c.label_smoothing), ({"accuracy": acc}, None)
        # YNNPACK also for reductions on the CPU (masked LayerNorms, softmaxes): 23 -> 17, 32 -> 25 and
        # 142 -> 131 ms on three sampled architectures of `default`, batch 64, one core
        return train_lib.make_train_step(loss_fn, compiler_options=runtime.cpu_compiler_options(reductions=True))

    def step(state, batch, key):
        pi = 0 if space.cfg.release_patch_bug else int(batch["patch"])
        if pi not in steps:
            steps[pi] = make(pi)
        return steps[pi](state, {kk: v for kk, v in batch.items() if kk != "patch"}, key)

    step.compiled = steps
    return step


def make_supernet_batches(config: VitasConfig, space: Space, p_id: float, train):
    xs, ys = train
    c = config.supernet

    def batch_fn(s):
        a = space.sample(np.random.default_rng([config.seed, ARCH_STREAM, s]), 1, p_id,
                         shift=c.identity_shifting)
        arch = {kk: v[0] for kk, v in a.items()}
        idx = data_lib.batch_indices(len(xs), c.batch_size, config.seed, DATA_STREAM, s)
        return {"x": xs[idx], "y": ys[idx], "arch": arch, "patch": int(arch["patch"])}

    return batch_fn


def make_retrain(config: VitasConfig, space: Space, arch: dict, train, test):
    """`(state, step, batch_fn, eval_fn, model)` training the standalone net of `arch` from scratch."""
    model = models.subnet_shape(space, arch)
    r = config.retrain
    s = space.cfg.image_size
    key = jax.random.fold_in(jax.random.key(config.seed), INIT_STREAM + 1)
    params = model.init(key, jnp.zeros((1, s, s, space.cfg.in_channels)))["params"]
    state = train_lib.TrainState.create(params=params, tx=optimizer(r.lr, r.weight_decay, r.warmup_steps,
                                                                    r.loop.num_steps))
    k = space.cfg.num_classes

    def loss_fn(params, extra, batch, key):
        x, y = aug_lib.augment(key, batch["x"], jax.nn.one_hot(batch["y"], k), r.aug)
        logits = model.apply({"params": params}, x)
        return soft_ce(logits, y, r.label_smoothing), ({"accuracy": jnp.mean(jnp.argmax(logits, -1) == batch["y"])},
                                                       None)

    xs, ys = train

    def batch_fn(st):
        idx = data_lib.batch_indices(len(xs), r.batch_size, config.seed, RETRAIN_DATA_STREAM, st)
        return {"x": xs[idx], "y": ys[idx]}

    acc_fn = jax.jit(lambda p, x, y: jnp.sum(jnp.argmax(model.apply({"params": p}, x), -1) == y))

    def eval_fn(state):
        xt, yt = test
        n = sum(int(acc_fn(state.params, xt[i:i + 256], yt[i:i + 256])) for i in range(0, len(xt), 256))
        return {"accuracy": n / len(xt)}

    return state, train_lib.make_train_step(loss_fn), batch_fn, eval_fn, model
