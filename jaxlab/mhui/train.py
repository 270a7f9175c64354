"""Joint training of the multi-exit heads (and of the ensemble and Prior Network baselines).

Multi-exit loss (deep supervision; reconstruction, the paper's loss is not published):

    L = sum_h w_h CE(softmax(z_h), y) / sum_h w_h,      z_h = head h's logits  [B, K]

A deep ensemble of M members is the same training vmapped over M independent
initialisations and batch streams: the parameters carry a leading member axis `[M, ...]`
and the loss is the sum of the members' losses, so each member gets its own gradient
(AdamW is element-wise, hence identical to M separate runs). The MH-UI network is the
M = 1 case.

Reverse-KL Prior Network (Malinin & Gales 2019): a single-head network with
alpha = exp(z), trained with

    L = E_in KL[Dir(alpha(x)) || Dir(beta_y)] + w_ood E_ood KL[Dir(alpha(x~)) || Dir(1)],
    beta_y = 1 + tau ((1 - eps) onehot(y) + eps / K)

with uniform-noise images as the out-of-distribution inputs (reconstruction).
"""

from __future__ import annotations

import pathlib
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.scipy.special import digamma, gammaln

from jaxlab.core import train as train_lib
from jaxlab.mhui import models

__all__ = ["make_optimizer", "multi_exit_loss", "train_multi_exit", "train_prior_net",
           "dirichlet_kl", "rkl_loss", "head_accuracies", "prior_alpha", "shift_augment"]


def make_optimizer(tcfg, num_steps: int) -> optax.GradientTransformation:
    """AdamW with linear warmup and cosine decay."""
    sched = optax.warmup_cosine_decay_schedule(0.0, tcfg.learning_rate, min(tcfg.warmup_steps, num_steps - 1),
                                               max(num_steps, 2), end_value=tcfg.learning_rate * 0.01)
    return optax.adamw(sched, weight_decay=tcfg.weight_decay)


def shift_augment(key, x, max_shift: int):
    """Random translation by up to `max_shift` pixels (zero padding), `[B, H, W, C]`."""
    if max_shift <= 0:
        return x
    b, h, w, _ = x.shape
    pad = jnp.pad(x, ((0, 0), (max_shift, max_shift), (max_shift, max_shift), (0, 0)))
    offs = jax.random.randint(key, (b, 2), 0, 2 * max_shift + 1)
    crop = lambda img, o: jax.lax.dynamic_slice(img, (o[0], o[1], 0), (h, w, img.shape[-1]))
    return jax.vmap(crop)(pad, offs)


def _head_weights(tcfg, num_heads: int) -> jnp.ndarray:
    if not tcfg.head_weights:
        return jnp.ones((num_heads,), jnp.float32)
    if len(tcfg.head_weights) != num_heads:
        raise ValueError(f"config field 'train.head_weights' has {len(tcfg.head_weights)} values but the "
                         f"model has {num_heads} heads")
    return jnp.asarray(tcfg.head_weights, jnp.float32)


def multi_exit_loss(logits: jax.Array, y: jax.Array, weights: jax.Array) -> tuple[jax.Array, jax.Array]:
    """`logits [H, B, K]`, `y [B]` -> (weighted mean CE, per-head CE `[H]`)."""
    ce = jax.vmap(lambda z: optax.softmax_cross_entropy_with_integer_labels(z, y).mean())(logits)
    return jnp.sum(weights * ce) / jnp.sum(weights), ce


def head_accuracies(model, params, extra, x, y, batch_size: int = 1024, *, pred_fn=None) -> np.ndarray:
    """Test accuracy of every head, `[H]` (params of one network, no member axis)."""
    fn = pred_fn or make_pred_fn(model)
    preds = np.concatenate([np.asarray(fn(params, extra, x[i:i + batch_size]))
                            for i in range(0, len(x), batch_size)], axis=-1)
    return (preds == np.asarray(y)[None]).mean(-1)


def make_pred_fn(model):
    """Jitted `(params, extra, x) -> argmax of every head [H, B]`."""
    return jax.jit(lambda p, e, xb: jnp.argmax(models.forward(model, p, e, xb)[0], -1))


def _sample_batches(seed: int, n: int, members: int, batch_size: int):
    def batch_idx(step: int) -> np.ndarray:
        rng = np.random.default_rng([seed, step])
        return rng.integers(0, n, size=(members, batch_size))
    return batch_idx


def train_multi_exit(cfg, data: dict, workdir: str | pathlib.Path, *, members: int = 1, seed: int = 0,
                     progress: bool = True) -> tuple[Any, Any, Any, list[dict]]:
    """Trains `members` multi-exit networks jointly (all heads) with `jaxlab.core.train.fit`.

    Returns `(model, params, extra, history)`; params/extra carry a leading member axis.
    """
    model = models.build_model(cfg.model, data["num_classes"])
    xtr, ytr = jnp.asarray(data["x_train"]), jnp.asarray(data["y_train"])
    keys = jax.random.split(jax.random.key(seed), members)
    params, extra = jax.jit(jax.vmap(lambda k: models.init_model(model, k, xtr[:2])))(keys)
    num_heads = jax.eval_shape(lambda p, e: models.forward(model, p, e, xtr[:2])[0],
                               jax.tree.map(lambda a: a[0], params), jax.tree.map(lambda a: a[0], extra)).shape[0]
    weights = _head_weights(cfg.train, num_heads)
    tx = make_optimizer(cfg.train, cfg.train.num_steps)
    state = train_lib.TrainState.create(params=params, tx=tx, extra=extra)

    def member_loss(p, e, xb, yb, key):
        ka, kd = jax.random.split(key)
        xb = shift_augment(ka, xb, cfg.train.augment_shift)
        logits, new_e = models.forward(model, p, e, xb, train=True, dropout_key=kd)
        loss, ce = multi_exit_loss(logits, yb, weights)
        acc = jnp.mean(jnp.argmax(logits, -1) == yb[None], axis=-1)
        return loss, (ce, acc, new_e)

    def loss_fn(p, e, batch, key):
        ks = jax.random.split(key, members)
        loss, (ce, acc, new_e) = jax.vmap(member_loss)(p, e, batch["x"], batch["y"], ks)
        metrics = {f"ce_head{h}": ce[:, h].mean() for h in range(num_heads)}
        metrics.update({f"acc_head{h}": acc[:, h].mean() for h in range(num_heads)})
        return jnp.sum(loss), (metrics, new_e)

    step_fn = train_lib.make_train_step(loss_fn)
    idx_fn = _sample_batches(seed, len(xtr), members, cfg.train.batch_size)

    def batch_fn(step):
        idx = jnp.asarray(idx_fn(step))
        return {"x": xtr[idx], "y": ytr[idx]}

    xte, yte = data["x_test"], data["y_test"]
    pred_fn = make_pred_fn(model)

    def eval_fn(st):
        accs = [head_accuracies(model, jax.tree.map(lambda a: a[m], st.params),
                                jax.tree.map(lambda a: a[m], st.extra), xte, yte, pred_fn=pred_fn)
                for m in range(members)]
        accs = np.mean(accs, axis=0)
        return {f"test_acc_head{h}": float(a) for h, a in enumerate(accs)}

    state, history = train_lib.fit(
        state, step_fn, batch_fn, num_steps=cfg.train.num_steps, workdir=workdir, seed=seed,
        eval_fn=eval_fn, eval_every=cfg.train.eval_every, log_every=cfg.train.log_every,
        checkpoint_every=cfg.train.checkpoint_every, progress=progress,
        desc=f"mhui train ({members} net{'s' if members > 1 else ''})")
    return model, state.params, state.extra, history


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


def train_prior_net(cfg, data: dict, workdir: str | pathlib.Path, *, seed: int = 0, progress: bool = True):
    """Trains the single-head reverse-KL Prior Network. Returns `(model, params, extra, history)`."""
    bcfg = cfg.baselines
    model = models.build_model(cfg.model, data["num_classes"], single_head=True)
    xtr, ytr = jnp.asarray(data["x_train"]), jnp.asarray(data["y_train"])
    params, extra = jax.jit(lambda k: models.init_model(model, k, xtr[:2]))(jax.random.key(seed))
    num_steps = bcfg.rkl_num_steps or cfg.train.num_steps
    state = train_lib.TrainState.create(params=params, tx=make_optimizer(cfg.train, num_steps), extra=extra)

    def loss_fn(p, e, batch, key):
        ka, kd, ko = jax.random.split(key, 3)
        xb = shift_augment(ka, batch["x"], cfg.train.augment_shift)
        ood = jax.random.uniform(ko, xb.shape, xb.dtype)
        both, new_e = models.forward(model, p, e, jnp.concatenate([xb, ood]), train=True, dropout_key=kd)
        zin, zood = both[: xb.shape[0]], both[xb.shape[0]:]
        loss = rkl_loss(zin, batch["y"], zood, target_concentration=bcfg.rkl_target_concentration,
                        smoothing=bcfg.rkl_smoothing, ood_weight=bcfg.rkl_ood_weight)
        acc = jnp.mean(jnp.argmax(zin, -1) == batch["y"])
        return loss, ({"acc": acc}, new_e)

    idx_fn = _sample_batches(seed + 1000, len(xtr), 1, cfg.train.batch_size)

    def batch_fn(step):
        idx = jnp.asarray(idx_fn(step)[0])
        return {"x": xtr[idx], "y": ytr[idx]}

    xte, yte = jnp.asarray(data["x_test"]), np.asarray(data["y_test"])
    pred_fn = jax.jit(lambda p, e, x: jnp.argmax(models.forward(model, p, e, x)[0], -1))

    def eval_fn(st):
        return {"test_acc": float(np.mean(np.asarray(pred_fn(st.params, st.extra, xte)) == yte))}

    state, history = train_lib.fit(
        state, train_lib.make_train_step(loss_fn), batch_fn, num_steps=num_steps, workdir=workdir,
        seed=seed, eval_fn=eval_fn, eval_every=cfg.train.eval_every, log_every=cfg.train.log_every,
        checkpoint_every=cfg.train.checkpoint_every, progress=progress, desc="mhui train (prior net)")
    return model, state.params, state.extra, history
