"""Joint training of the multi-exit heads (and of the ensemble and Prior Network baselines).

Multi-exit loss (deep supervision; reconstruction, the paper's loss is not published):

    L = sum_h w_h CE(softmax(z_h), y) / sum_h w_h,      z_h = head h's logits  [B, K]

A deep ensemble of M members is the same training vmapped over M independent
initialisations and batch streams: the parameters carry a leading member axis `[M, ...]`
and the loss is the sum of the members' losses, so each member gets its own gradient
(AdamW is element-wise, hence identical to M separate runs). The MH-UI network is the
M = 1 case. Batches are `[B, M, ...]`, so the data-parallel mesh splits the batch axis.

Reverse-KL Prior Network (Malinin & Gales 2019): a single-head network with
alpha = exp(z), trained with

    L = E_in KL[Dir(alpha(x)) || Dir(beta_y)] + w_ood E_ood KL[Dir(alpha(x~)) || Dir(1)],
    beta_y = 1 + tau ((1 - eps) onehot(y) + eps / K)

with uniform-noise images as the out-of-distribution inputs (reconstruction). The
forward-KL Prior Network (Malinin & Gales 2018) swaps the arguments of both KLs,
KL[Dir(beta_y) || Dir(alpha(x))] and KL[Dir(1) || Dir(alpha(x~))], with the same targets
(network "prior_net_fkl", config field `baselines.forward_kl_prior_net`).

Every network trains with `jaxlab.core.train.fit` in its own run directory, so each
resumes from its newest checkpoint; its initialisation, batches and step keys are
streams of the config's seed named by `rng.NETWORKS`.
"""

from __future__ import annotations

import functools
import json
import pathlib
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.scipy.special import digamma, gammaln

from jaxlab.core import config as config_lib
from jaxlab.core import evaluation, optim
from jaxlab.core import train as train_lib
from jaxlab.core.config import ConfigError
from jaxlab.mhui import models, rng

__all__ = ["make_optimizer", "multi_exit_loss", "init_network", "init_state", "network_model", "train_network",
           "networks_of", "dirichlet_kl", "rkl_loss", "head_accuracies", "make_test_metrics_fn", "make_accuracy_fn",
           "prior_alpha", "shift_augment", "batch_indices", "fkl_loss", "PRIOR_NETS"]

# The Prior Networks by name: True for the forward-KL loss.
PRIOR_NETS = {"prior_net": False, "prior_net_fkl": True}

# Final learning rate of the cosine decay, as a fraction of the peak.
END_LR_FRACTION = 0.01


def networks_of(config) -> dict[str, int]:
    """`{network: number of training steps}` of the networks a config trains, in order."""
    out = {"mhui": config.loop.num_steps}
    if config.baselines.ensemble_size:
        out["ensemble"] = config.loop.num_steps
    if config.baselines.prior_net:
        out["prior_net"] = config.baselines.rkl_num_steps or config.loop.num_steps
    if config.baselines.forward_kl_prior_net:
        out["prior_net_fkl"] = config.baselines.rkl_num_steps or config.loop.num_steps
    return out


def make_optimizer(tcfg, num_steps: int) -> optax.GradientTransformation:
    """AdamW with linear warmup and cosine decay to 1% of the peak rate.

    The same settings give the same (cached) object, so that a state built again (a
    resumed run in the same process) keeps its jitted step's cache.
    """
    return _adamw(tcfg.learning_rate, tcfg.warmup_steps, num_steps, tcfg.weight_decay)


@functools.lru_cache(maxsize=16)
def _adamw(lr: float, warmup_steps: int, num_steps: int, weight_decay: float) -> optax.GradientTransformation:
    schedule = optim.warmup_cosine(lr, warmup_steps, num_steps, end_lr=lr * END_LR_FRACTION)
    return optax.adamw(schedule, weight_decay=weight_decay)


def shift_augment(key, x, max_shift: int):
    """Random translation by up to `max_shift` pixels (zero padding), `[B, H, W, C]`."""
    if max_shift <= 0:
        return x
    b, h, w, _ = x.shape
    pad = jnp.pad(x, ((0, 0), (max_shift, max_shift), (max_shift, max_shift), (0, 0)))
    offs = jax.random.randint(key, (b, 2), 0, 2 * max_shift + 1)

    def crop(img, o):
        return jax.lax.dynamic_slice(img, (o[0], o[1], 0), (h, w, img.shape[-1]))

    return jax.vmap(crop)(pad, offs)


def _head_weights(tcfg, num_heads: int) -> jnp.ndarray:
    if not tcfg.head_weights:
        return jnp.ones((num_heads,), jnp.float32)
    if len(tcfg.head_weights) != num_heads:
        raise ConfigError(f"config field 'train.head_weights' has {len(tcfg.head_weights)} values but the "
                          f"model has {num_heads} heads")
    return jnp.asarray(tcfg.head_weights, jnp.float32)


def multi_exit_loss(logits: jax.Array, y: jax.Array, weights: jax.Array) -> tuple[jax.Array, jax.Array]:
    """`logits [H, B, K]`, `y [B]` -> (weighted mean CE, per-head CE `[H]`)."""
    ce = jax.vmap(lambda z: optax.softmax_cross_entropy_with_integer_labels(z, y).mean())(logits)
    return jnp.sum(weights * ce) / jnp.sum(weights), ce


def batch_indices(seed: int, stream: int, step: int, n: int, shape: tuple[int, ...]) -> np.ndarray:
    """Training-example indices of one step, a pure function of (seed, stream, step)."""
    return np.random.default_rng([seed, stream, step]).integers(0, n, size=shape)


def network_model(config, name: str, num_classes: int):
    """The Linen module of network `name`: multi-exit for "mhui" and "ensemble", the plain
    backbone for "prior_net"."""
    return models.build_model(config.model, num_classes, single_head=name in PRIOR_NETS)


def init_network(config, name: str, num_classes: int, input_shape: tuple[int, ...]):
    """`(model, TrainState)` of network `name` ("mhui", "ensemble" or "prior_net") before training.

    The multi-exit networks' params and extra carry a leading member axis (1 for "mhui",
    `baselines.ensemble_size` for "ensemble").
    """
    model = network_model(config, name, num_classes)
    return model, init_state(config, name, model, input_shape)


def init_state(config, name: str, model, input_shape: tuple[int, ...]) -> train_lib.TrainState:
    """The initial `TrainState` of network `name` (wrap in `jax.eval_shape` for a restore target)."""
    key = rng.key(config.seed, rng.NETWORKS[name], rng.INIT)
    members = 0 if name in PRIOR_NETS else config.baselines.ensemble_size if name == "ensemble" else 1
    params, extra = _init(model, key, tuple(input_shape), members)
    tx = make_optimizer(config.train, networks_of(config)[name])
    return train_lib.TrainState.create(params=params, tx=tx, extra=extra)


@functools.partial(jax.jit, static_argnums=(0, 2, 3))
def _init(model, key, input_shape: tuple[int, ...], members: int):
    """`(params, extra)`; with `members` > 0 a leading member axis of independent inits."""
    x = jnp.zeros((2, *input_shape), jnp.float32)
    if not members:
        return models.init_model(model, key, x)
    return jax.vmap(lambda k: models.init_model(model, k, x))(jax.random.split(key, members))


def make_test_metrics_fn(model, x: np.ndarray, y: np.ndarray, batch_size: int):
    """`(params, extra) -> {name: accuracy}` over `(x, y)` for M multi-exit networks (params
    and extra with a leading member axis), in padded batches (one compile).

    Names: `test_acc_head{h}` (head h, mean over members) and, for M > 1,
    `test_acc_member{m}` (member m's final head) and `test_acc_ensemble` (the argmax of
    the members' mean final-head softmax).
    """

    correct = _test_hits(model)

    def fn(params, extra) -> dict[str, float]:
        return evaluation.batched_sum(correct, (x, y), min(batch_size, len(x)), params, extra)

    return fn


@functools.lru_cache(maxsize=8)
def _test_hits(model):
    """jitted `(params, extra, (x, y)) -> {name: [B] 0/1}` of `make_test_metrics_fn` (one per model)."""

    @jax.jit
    def correct(params, extra, batch):
        xb, yb = batch
        logits = jax.vmap(lambda p, e: models.forward(model, p, e, xb)[0])(params, extra)  # [M, H, B, K]
        hit = (jnp.argmax(logits, -1) == yb).astype(jnp.float32)
        members, heads = hit.shape[:2]
        out = {f"test_acc_head{h}": hit[:, h].mean(0) for h in range(heads)}
        if members > 1:
            out.update({f"test_acc_member{m}": hit[m, -1] for m in range(members)})
            mean = jax.nn.logsumexp(jax.nn.log_softmax(logits[:, -1], -1), axis=0)
            out["test_acc_ensemble"] = (jnp.argmax(mean, -1) == yb).astype(jnp.float32)
        return out

    return correct


def make_accuracy_fn(kind: str, model, x: np.ndarray, y: np.ndarray, batch_size: int):
    """`(params, extra) -> accuracy` over `(x, y)` of the classifier of network `kind`
    (`models.classifier_logits`), in padded batches (one compile per kind and model)."""
    correct = _classifier_hits(kind, model)

    def fn(params, extra) -> float:
        return evaluation.batched_sum(correct, (x, y), min(batch_size, len(x)), params, extra)["acc"]

    return fn


@functools.lru_cache(maxsize=8)
def _classifier_hits(kind: str, model):
    logits_fn = models.classifier_logits(kind, model)

    @jax.jit
    def correct(params, extra, batch):
        xb, yb = batch
        return {"acc": (jnp.argmax(logits_fn(params, extra, xb), -1) == yb).astype(jnp.float32)}

    return correct


def head_accuracies(model, params, extra, x, y, batch_size: int = 512) -> np.ndarray:
    """Test accuracy of every head, `[H]` (params of one network, no member axis)."""
    params, extra = jax.tree.map(lambda a: a[None], (params, extra))
    out = make_test_metrics_fn(model, np.asarray(x), np.asarray(y), batch_size)(params, extra)
    return np.array([out[f"test_acc_head{h}"] for h in range(len(out))])


def _multi_exit_loss_fn(config, model, num_heads: int, stream: int):
    weights = _head_weights(config.train, num_heads)

    def member_loss(p, e, xb, yb, key):
        ka, kd = jax.random.split(key)
        xb = shift_augment(ka, xb, config.train.augment_shift)
        logits, new_e = models.forward(model, p, e, xb, train=True, dropout_key=kd)
        loss, ce = multi_exit_loss(logits, yb, weights)
        acc = jnp.mean(jnp.argmax(logits, -1) == yb[None], axis=-1)
        return loss, (ce, acc, new_e)

    def loss_fn(p, e, batch, key):
        members = batch["y"].shape[1]
        keys = jax.random.split(rng.from_step_key(key, stream), members)
        loss, (ce, acc, new_e) = jax.vmap(member_loss, in_axes=(0, 0, 1, 1, 0))(p, e, batch["x"], batch["y"], keys)
        metrics = {f"ce_head{h}": ce[:, h].mean() for h in range(num_heads)}
        metrics.update({f"acc_head{h}": acc[:, h].mean() for h in range(num_heads)})
        return jnp.sum(loss), (metrics, new_e)

    return loss_fn


def _prior_net_loss_fn(config, model, stream: int, forward: bool = False):
    bcfg = config.baselines
    loss_of = fkl_loss if forward else rkl_loss

    def loss_fn(p, e, batch, key):
        ka, kd, ko = jax.random.split(rng.from_step_key(key, stream), 3)
        xb = shift_augment(ka, batch["x"], config.train.augment_shift)
        ood = jax.random.uniform(ko, xb.shape, xb.dtype)
        both, new_e = models.forward(model, p, e, jnp.concatenate([xb, ood]), train=True, dropout_key=kd)
        zin, zood = both[: xb.shape[0]], both[xb.shape[0]:]
        loss = loss_of(zin, batch["y"], zood, target_concentration=bcfg.rkl_target_concentration,
                        smoothing=bcfg.rkl_smoothing, ood_weight=bcfg.rkl_ood_weight)
        return loss, ({"acc": jnp.mean(jnp.argmax(zin, -1) == batch["y"])}, new_e)

    return loss_fn


def train_network(config, name: str, data: dict, workdir: str | pathlib.Path, *, mesh=None,
                  stop_after: int | None = None) -> tuple[Any, Any, list[dict]]:
    """Trains (or resumes) network `name` in `workdir` with `jaxlab.core.train.fit`.

    Returns `(model, state, history)`; the multi-exit networks' params carry a member
    axis. Eval rows hold the `make_test_metrics_fn` names with an `eval_` prefix
    (multi-exit networks) or `eval_test_acc` (the Prior Network).
    """
    stream = rng.NETWORKS[name]
    xtr, ytr = np.asarray(data["x_train"]), np.asarray(data["y_train"])
    xte, yte = np.asarray(data["x_test"]), np.asarray(data["y_test"])
    model, state = init_network(config, name, data["num_classes"], xtr.shape[1:])
    bs = config.train.batch_size
    if name in PRIOR_NETS:
        loss_fn = _prior_net_loss_fn(config, model, stream, forward=PRIOR_NETS[name])
        num_steps = config.baselines.rkl_num_steps or config.loop.num_steps
        shape: tuple[int, ...] = (bs,)
        accuracy = make_accuracy_fn(name, model, xte, yte, config.eval_batch_size)

        def eval_fn(st):
            return {"test_acc": accuracy(st.params, st.extra)}
    else:
        members = config.baselines.ensemble_size if name == "ensemble" else 1
        num_heads = config.model.num_heads
        loss_fn = _multi_exit_loss_fn(config, model, num_heads, stream)
        num_steps = config.loop.num_steps
        shape = (bs, members)
        test_metrics = make_test_metrics_fn(model, xte, yte, config.eval_batch_size)

        def eval_fn(st):
            return test_metrics(st.params, st.extra)

    def batch_fn(step):
        idx = batch_indices(config.seed, stream, step, len(xtr), shape)
        return {"x": xtr[idx], "y": ytr[idx]}

    if mesh is not None and bs % mesh.size:
        raise ConfigError(f"config field 'train.batch_size' ({bs}) must be a multiple of the {mesh.size} devices "
                          "of the mesh (config field 'loop.num_devices')")
    state, history = train_lib.fit(
        state, _train_step(config, name, model, loss_fn), batch_fn, workdir=workdir, loop=config.loop,
        num_steps=num_steps, seed=config.seed, eval_fn=eval_fn, mesh=mesh, stop_after=stop_after,
        desc=f"mhui train ({name})")
    return model, state, history


_STEPS: dict[str, Any] = {}


def _train_step(config, name: str, model, loss_fn):
    """The jitted step of `loss_fn`, one per (network, model, train and baseline settings) in
    a process, so that a resumed or repeated training in the same process compiles once."""
    key = json.dumps([name, repr(model), config_lib.to_dict(config.train), config_lib.to_dict(config.baselines)])
    if key not in _STEPS:
        while len(_STEPS) >= 8:
            _STEPS.pop(next(iter(_STEPS)))
        _STEPS[key] = train_lib.make_train_step(loss_fn)
    return _STEPS[key]


def dirichlet_kl(alpha: jax.Array, beta: jax.Array) -> jax.Array:
    """KL[Dir(alpha) || Dir(beta)], `[B, K], [B, K] -> [B]`.

    = lnG(a0) - sum lnG(a_k) - lnG(b0) + sum lnG(b_k) + sum (a_k - b_k)(psi(a_k) - psi(a0))
    """
    a0 = jnp.sum(alpha, -1)
    b0 = jnp.sum(beta, -1)
    return (gammaln(a0) - jnp.sum(gammaln(alpha), -1) - gammaln(b0) + jnp.sum(gammaln(beta), -1)
            + jnp.sum((alpha - beta) * (digamma(alpha) - digamma(a0)[:, None]), -1))


def prior_alpha(logits: jax.Array) -> jax.Array:
    """Prior Network concentration alpha = exp(z) (logits clipped to [-20, 20])."""
    return jnp.exp(jnp.clip(logits, -20.0, 20.0))


def rkl_loss(logits_in, y, logits_ood, *, target_concentration: float, smoothing: float, ood_weight: float):
    """Reverse-KL Prior Network loss (see the module docstring)."""
    k = logits_in.shape[-1]
    target = 1.0 + target_concentration * ((1.0 - smoothing) * jax.nn.one_hot(y, k) + smoothing / k)
    loss = jnp.mean(dirichlet_kl(prior_alpha(logits_in), target))
    if logits_ood is not None and ood_weight > 0:
        flat = jnp.ones_like(logits_ood)
        loss = loss + ood_weight * jnp.mean(dirichlet_kl(prior_alpha(logits_ood), flat))
    return loss


def fkl_loss(logits_in, y, logits_ood, *, target_concentration: float, smoothing: float, ood_weight: float):
    """Forward-KL Prior Network loss (Malinin & Gales 2018): the KLs of `rkl_loss` with
    their arguments swapped, KL[target || Dir(alpha(x))]."""
    k = logits_in.shape[-1]
    target = 1.0 + target_concentration * ((1.0 - smoothing) * jax.nn.one_hot(y, k) + smoothing / k)
    loss = jnp.mean(dirichlet_kl(target, prior_alpha(logits_in)))
    if logits_ood is not None and ood_weight > 0:
        flat = jnp.ones_like(logits_ood)
        loss = loss + ood_weight * jnp.mean(dirichlet_kl(flat, prior_alpha(logits_ood)))
    return loss
