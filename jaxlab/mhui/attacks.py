"""White-box adversarial attacks in JAX: FGSM, BIM/PGD (L-inf, L2), C&W-L2, adaptive.

Every attack works on a batch `x [B, ...]` of inputs in [0, 1] with labels `y [B]` and
returns adversarial inputs of the same shape, clipped to [0, 1]. Epsilons are on the
[0, 1] scale. Attacks take a per-example loss

    loss_fn(x [B, ...], y [B]) -> [B]      (to be *maximised*)

or, for C&W, a logits function `logits_fn(x) -> [B, K]`. The examples of a batch are
independent (models in inference mode), so the gradient of the summed loss gives every
example its own gradient. Loops are `lax.scan`s; wrap a call in `jax.jit` with the
integer arguments static (or use `make_attack`, which does).

    FGSM (Goodfellow et al. 2015):  x' = clip(x + eps sign(grad_x L), 0, 1)
    BIM  (Kurakin et al. 2017):     T steps of FGSM with step a, projected to the eps-ball
    PGD  (Madry et al. 2018):       BIM from a uniform random start in the ball;
                                    L2: x <- Proj(x + a g / ||g||_2)
    C&W-L2 (Carlini & Wagner 2017): min_w ||x' - x||^2 + c max(Z_y - max_{j!=y} Z_j, -kappa),
                                    x' = (tanh(w) + 1) / 2, Adam on w, binary search on c
    Adaptive: PGD on  L_CE(final head) - lambda * detector_score  (evades MH-UI too)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import jax
import jax.numpy as jnp
import optax

__all__ = [
    "cross_entropy_loss",
    "fgsm",
    "pgd",
    "bim",
    "cw_l2",
    "adaptive_loss",
    "make_attack",
]

LossFn = Callable[[jax.Array, jax.Array], jax.Array]


def cross_entropy_loss(logits_fn: Callable[[jax.Array], jax.Array]) -> LossFn:
    """Per-example cross-entropy of `logits_fn(x) [B, K]` against `y [B]`."""

    def loss(x, y):
        return optax.softmax_cross_entropy_with_integer_labels(logits_fn(x), y)

    return loss


def _grad(loss_fn: LossFn, x, y):
    return jax.grad(lambda xx: jnp.sum(loss_fn(xx, y)))(x)


def _per_example_norm(g, eps=1e-12):
    axes = tuple(range(1, g.ndim))
    return jnp.sqrt(jnp.sum(g * g, axis=axes, keepdims=True) + eps)


def fgsm(loss_fn: LossFn, x: jax.Array, y: jax.Array, eps: float) -> jax.Array:
    """Fast gradient sign method: clip(x + eps * sign(grad_x L(x, y)), 0, 1)."""
    g = _grad(loss_fn, x, y)
    return jnp.clip(x + eps * jnp.sign(g), 0.0, 1.0)


def _project(delta, eps, norm):
    if norm == "linf":
        return jnp.clip(delta, -eps, eps)
    n = _per_example_norm(delta)
    return delta * jnp.minimum(1.0, eps / n)


def _random_start(key, x, eps, norm):
    if norm == "linf":
        return jax.random.uniform(key, x.shape, x.dtype, -eps, eps)
    # uniform in the L2 ball: random direction, radius eps * u^(1/d)
    k1, k2 = jax.random.split(key)
    d = x[0].size
    z = jax.random.normal(k1, x.shape, x.dtype)
    r = eps * jax.random.uniform(k2, (x.shape[0],) + (1,) * (x.ndim - 1), x.dtype) ** (1.0 / d)
    return z / _per_example_norm(z) * r


def pgd(
    loss_fn: LossFn,
    x: jax.Array,
    y: jax.Array,
    key: jax.Array | None,
    *,
    eps: float,
    step_size: float,
    num_steps: int,
    norm: Literal["linf", "l2"] = "linf",
    random_start: bool = True,
) -> jax.Array:
    """Projected gradient ascent on `loss_fn` inside the `norm` ball of radius eps.

    Each step: x <- clip(x0 + Proj_eps(x + a * d - x0), 0, 1) with d = sign(g) (linf) or
    g / ||g||_2 (l2). With `random_start`, x starts uniformly in the ball (needs `key`).
    """
    if norm not in ("linf", "l2"):
        raise ValueError(f"unknown norm {norm!r}; expected 'linf' or 'l2'")
    if random_start:
        if key is None:
            raise ValueError("pgd with random_start=True needs a PRNG key")
        x_adv = jnp.clip(x + _random_start(key, x, eps, norm), 0.0, 1.0)
    else:
        x_adv = x

    def step(xa, _):
        g = _grad(loss_fn, xa, y)
        d = jnp.sign(g) if norm == "linf" else g / _per_example_norm(g)
        xa = x + _project(xa + step_size * d - x, eps, norm)
        return jnp.clip(xa, 0.0, 1.0), None

    x_adv, _ = jax.lax.scan(step, x_adv, None, length=num_steps)
    return x_adv


def bim(loss_fn: LossFn, x, y, *, eps: float, step_size: float, num_steps: int) -> jax.Array:
    """Basic iterative method: L-inf PGD without random start."""
    return pgd(loss_fn, x, y, None, eps=eps, step_size=step_size, num_steps=num_steps,
               norm="linf", random_start=False)


def cw_l2(
    logits_fn: Callable[[jax.Array], jax.Array],
    x: jax.Array,
    y: jax.Array,
    *,
    initial_c: float = 1.0,
    binary_steps: int = 5,
    num_steps: int = 100,
    learning_rate: float = 0.01,
    kappa: float = 0.0,
) -> jax.Array:
    """Carlini-Wagner L2 attack (untargeted) with a per-example binary search over c.

    Minimises ||x' - x||_2^2 + c * max(Z_y(x') - max_{j != y} Z_j(x'), -kappa) over
    w with x' = (tanh(w) + 1) / 2 (so x' is always in [0, 1]), with Adam. After each
    of `binary_steps` searches, c is halved towards the last failure when the attack
    succeeded and multiplied by 10 (or bisected) when it failed. Returns the smallest
    successful x' found per example, or x itself where no c succeeded.
    """
    b = x.shape[0]
    bshape = (b,) + (1,) * (x.ndim - 1)
    # keep atanh finite at 0 and 1
    w0 = jnp.arctanh(jnp.clip(2.0 * x - 1.0, -1 + 1e-6, 1 - 1e-6))
    onehot = jax.nn.one_hot(y, logits_fn(x[:1]).shape[-1], dtype=x.dtype)
    tx = optax.adam(learning_rate)

    def margin(z):
        real = jnp.sum(onehot * z, axis=-1)
        other = jnp.max(z - 1e9 * onehot, axis=-1)
        return real - other  # < 0 <=> misclassified

    def objective(w, c):
        xa = (jnp.tanh(w) + 1.0) / 2.0
        l2 = jnp.sum((xa - x) ** 2, axis=tuple(range(1, x.ndim)))
        f = jnp.maximum(margin(logits_fn(xa)), -kappa)
        return jnp.sum(l2 + c * f), (xa, l2)

    def search(carry, _):
        c, lo, hi, best_l2, best_x = carry

        def inner(state, _):
            w, opt, found_l2, found_x = state
            (_, (xa, l2)), g = jax.value_and_grad(objective, has_aux=True)(w, c)
            succ = margin(logits_fn(xa)) < 0  # evaluated before this update
            better = succ & (l2 < found_l2)
            found_l2 = jnp.where(better, l2, found_l2)
            found_x = jnp.where(better.reshape(bshape), xa, found_x)
            upd, opt = tx.update(g, opt, w)
            return (optax.apply_updates(w, upd), opt, found_l2, found_x), None

        state = (w0, tx.init(w0), jnp.full((b,), jnp.inf, x.dtype), best_x)
        (_, _, found_l2, found_x), _ = jax.lax.scan(inner, state, None, length=num_steps)
        success = jnp.isfinite(found_l2)
        improved = found_l2 < best_l2
        best_x = jnp.where(improved.reshape(bshape), found_x, best_x)
        best_l2 = jnp.minimum(best_l2, found_l2)
        hi = jnp.where(success, jnp.minimum(hi, c), hi)
        lo = jnp.where(success, lo, jnp.maximum(lo, c))
        c = jnp.where(hi < 1e9, (lo + hi) / 2.0, c * 10.0)
        return (c, lo, hi, best_l2, best_x), None

    c0 = jnp.full((b,), initial_c, x.dtype)
    carry = (c0, jnp.zeros((b,), x.dtype), jnp.full((b,), 1e10, x.dtype),
             jnp.full((b,), jnp.inf, x.dtype), x)
    (_, _, _, _, best_x), _ = jax.lax.scan(search, carry, None, length=binary_steps)
    return best_x


def adaptive_loss(ce_loss: LossFn, detector_score: Callable[[jax.Array], jax.Array],
                  weight: float) -> LossFn:
    """Adaptive objective: L_CE(x, y) - weight * s(x), s = detector score (high = adversarial).

    PGD on this loss looks for inputs that are misclassified *and* look clean to the
    detector (Carlini & Wagner 2017b; Tramer et al. 2020).
    """

    def loss(x, y):
        return ce_loss(x, y) - weight * detector_score(x)

    return loss


def make_attack(name: str, *, eps: float = 0.0, num_steps: int = 10, step_size: float | None = None,
                rel_step_size: float = 2.5, cw_binary_steps: int = 5, cw_steps: int = 100,
                cw_lr: float = 0.01, cw_initial_c: float = 1.0, cw_kappa: float = 0.0):
    """`attack(loss_fn_or_logits_fn, x, y, key) -> x_adv` for one named attack.

    `name` is one of fgsm, bim, pgd_linf, pgd_l2, cw_l2. For iterative attacks the step
    is `step_size` or else `rel_step_size * eps / num_steps`. The first argument is a
    per-example loss (`cw_l2`: a logits function). The result is not jitted: call it
    inside a jitted function that takes the model parameters as an argument, e.g.
    `jax.jit(lambda params, x, y, key: attack(functools.partial(loss, params), x, y, key))`,
    so the parameters are not baked into the compiled program as constants.
    """
    a = step_size if step_size is not None else rel_step_size * eps / max(num_steps, 1)
    if name == "fgsm":
        fn = lambda f, x, y, key: fgsm(f, x, y, eps)
    elif name == "bim":
        fn = lambda f, x, y, key: bim(f, x, y, eps=eps, step_size=a, num_steps=num_steps)
    elif name in ("pgd_linf", "pgd_l2"):
        norm = name[4:]
        fn = lambda f, x, y, key: pgd(f, x, y, key, eps=eps, step_size=a, num_steps=num_steps,
                                      norm=norm, random_start=True)
    elif name == "cw_l2":
        fn = lambda f, x, y, key: cw_l2(f, x, y, initial_c=cw_initial_c, binary_steps=cw_binary_steps,
                                        num_steps=cw_steps, learning_rate=cw_lr, kappa=cw_kappa)
    else:
        raise ValueError(f"unknown attack {name!r}; expected fgsm, bim, pgd_linf, pgd_l2 or cw_l2")
    return fn
