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

The second half wires these attacks to MH-UI's networks: `attack_sets(config)` lists the
(network, attack, eps) sets a config asks for and `craft(config, nets, x, y)` makes them
all, batch by batch (the last batch padded, one compile per attack and network), with
random starts drawn from named streams of the config's seed (`rng`).
"""

from __future__ import annotations

import functools
import itertools
import time
from collections.abc import Callable
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxlab.core import evaluation, runtime
from jaxlab.core.config import ConfigError
from jaxlab.mhui import detect, dirichlet, models, rng

__all__ = [
    "cross_entropy_loss",
    "fgsm",
    "pgd",
    "bim",
    "cw_l2",
    "adaptive_loss",
    "make_attack",
    "LINF_ATTACKS",
    "attack_sets",
    "set_key",
    "parse_set_key",
    "adaptive_score",
    "craft",
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


# ----------------------------------------------------------------------------- wiring

LINF_ATTACKS = ("fgsm", "bim", "pgd_linf")


def attack_sets(config) -> list[tuple[str, str, float]]:
    """(network, attack, eps) triples of a config; C&W has eps 0 (it minimises the L2 size).

    The networks are "mhui", then "ensemble" and "prior_net" where the config trains them.
    """
    out = []
    targets = ["mhui"] + (["ensemble"] if config.baselines.ensemble_size else []) + \
        (["prior_net"] if config.baselines.prior_net else []) + \
        (["prior_net_fkl"] if config.baselines.forward_kl_prior_net else [])
    for t in targets:
        for a in config.attack.attacks:
            if a in LINF_ATTACKS:
                out += [(t, a, float(e)) for e in config.attack.eps_linf]
            elif a == "pgd_l2":
                out += [(t, a, float(e)) for e in config.attack.eps_l2]
            elif a == "cw_l2":
                out.append((t, a, 0.0))
            else:
                raise ConfigError(f"config field 'attack.attacks': unknown attack {a!r}; expected "
                                  "fgsm, bim, pgd_linf, pgd_l2 or cw_l2")
    return out


def set_key(target: str, attack: str, eps: float, weight: float | None = None) -> str:
    """The name of an adversarial set in attacks.npz: `mhui__pgd_linf__0.1` (`__w10` adaptive)."""
    return f"{target}__{attack}__{eps:g}" + ("" if weight is None else f"__w{weight:g}")


def parse_set_key(key: str) -> tuple[str, str, float, float | None]:
    """`(target, attack, eps, weight or None)` of a `set_key`."""
    parts = key.split("__")
    return parts[0], parts[1], float(parts[2]), (float(parts[3][1:]) if len(parts) > 3 else None)


def _attack_fn(name: str, acfg, logits_fn):
    """jitted `(params, extra, x, y, key, eps) -> x_adv` (eps traced: one compile per attack)."""

    def run(params, extra, x, y, key, eps):
        lf = functools.partial(logits_fn, params, extra)
        loss = cross_entropy_loss(lf)
        step = acfg.rel_step_size * eps / max(acfg.num_steps, 1)
        if name == "fgsm":
            return fgsm(loss, x, y, eps)
        if name == "bim":
            return bim(loss, x, y, eps=eps, step_size=step, num_steps=acfg.num_steps)
        if name in ("pgd_linf", "pgd_l2"):
            return pgd(loss, x, y, key, eps=eps, step_size=step, num_steps=acfg.num_steps, norm=name[4:])
        return cw_l2(lf, x, y, initial_c=acfg.cw_initial_c, binary_steps=acfg.cw_binary_steps,
                     num_steps=acfg.cw_steps, learning_rate=acfg.cw_lr, kappa=acfg.cw_kappa)

    return jax.jit(run, compiler_options=runtime.cpu_compiler_options())


def adaptive_score(dcfg) -> Callable[[jax.Array], jax.Array]:
    """Differentiable MH-UI detector term for the adaptive attack: `logits [H, B, K] -> [B]`.

    For `precision` and `epkl` it is -log alpha_0 (the same ranking, better scaled);
    otherwise the configured Dirichlet score.
    """

    def s(logits):
        probs = jax.nn.softmax(detect.select_heads(logits, dcfg.heads) / dcfg.head_temperature, -1)
        alpha = dirichlet.dirichlet_moment_match(probs, combine=dcfg.combine, var_floor=dcfg.var_floor,
                                                 min_precision=dcfg.min_precision)
        if dcfg.score in ("precision", "epkl"):
            return -jnp.log(jnp.sum(alpha, -1))
        return dirichlet.dirichlet_scores(alpha)[dcfg.score]

    return s


def _adaptive_fn(model, acfg, dcfg):
    """jitted `(params, extra, x, y, key, eps, weight) -> x_adv`: PGD-Linf on CE(final head) - w s(x)."""
    score = adaptive_score(dcfg)

    def run(params, extra, x, y, key, eps, weight):
        def loss(xx, yy):
            logits = models.forward(model, params, extra, xx)[0]
            return optax.softmax_cross_entropy_with_integer_labels(logits[-1], yy) - weight * score(logits)

        return pgd(loss, x, y, key, eps=eps, step_size=acfg.rel_step_size * eps / max(acfg.num_steps, 1),
                   num_steps=acfg.num_steps, norm="linf")

    return jax.jit(run, compiler_options=runtime.cpu_compiler_options())


def _batched(fn, x: np.ndarray, y: np.ndarray, key: jax.Array, batch_size: int) -> np.ndarray:
    """`fn(x, y, key)` over padded batches of `(x, y)`; batch j gets `fold_in(key, j)`."""
    outs = []
    for j, ((xb, yb), mask) in enumerate(evaluation.padded_batches((x, y), min(batch_size, len(x)))):
        outs.append(np.asarray(fn(jnp.asarray(xb), jnp.asarray(yb), jax.random.fold_in(key, j)))[mask])
    return np.concatenate(outs).astype(np.float32)


def _summary(adv: np.ndarray, x: np.ndarray, y: np.ndarray, pred: np.ndarray, seconds: float) -> dict:
    d = (adv - x).reshape(len(x), -1)
    return {"acc_under_attack": float(np.mean(pred == y)), "seconds": seconds,
            "mean_linf": float(np.abs(d).max(1).mean()), "mean_l2": float(np.linalg.norm(d, axis=1).mean())}


def craft(config, nets: dict, x: np.ndarray, y: np.ndarray, *, log=print) -> tuple[dict, dict]:
    """Every adversarial set of `config` against the networks `nets`.

    Args:
      nets: `{name: (model, params, extra)}`; the ensemble's params with a member axis.
      x, y: the clean test inputs `[N, ...]` in [0, 1] and labels `[N]`.

    Returns:
      `({set_key: x_adv [N, ...]}, {set_key: {"acc_under_attack", "seconds", "mean_linf",
      "mean_l2"}})`. Each non-adaptive set attacks its network's own classifier
      (`models.classifier_logits`); the adaptive sets attack MH-UI (`adaptive_score`).
    """
    acfg = config.attack
    advs, results, fns, predict = {}, {}, {}, {}
    for i, (target, name, eps) in enumerate(attack_sets(config)):
        model, params, extra = nets[target]
        logits_fn = models.classifier_logits(target, model)
        if (target, name) not in fns:
            fns[(target, name)] = _attack_fn(name, acfg, logits_fn)
            predict.setdefault(target, jax.jit(logits_fn))
        fn = fns[(target, name)]
        t0 = time.perf_counter()
        adv = _batched(lambda xb, yb, k, fn=fn, p=params, e=extra, eps=eps: fn(p, e, xb, yb, k, jnp.float32(eps)),
                       x, y, rng.key(config.seed, rng.ATTACK, i), acfg.batch_size)
        pred = np.asarray(predict[target](params, extra, jnp.asarray(adv))).argmax(-1)
        k = set_key(target, name, eps)
        advs[k], results[k] = adv, _summary(adv, x, y, pred, time.perf_counter() - t0)
        log(f"attack {k}: accuracy under attack {results[k]['acc_under_attack']:.3f} ({results[k]['seconds']:.1f}s)")
    if acfg.adaptive_weights:
        model, params, extra = nets["mhui"]
        adaptive = _adaptive_fn(model, acfg, config.detect)
        final = jax.jit(models.classifier_logits("mhui", model))
        pairs = itertools.product(acfg.adaptive_eps, acfg.adaptive_weights)
        for j, (eps, w) in enumerate(pairs):
            t0 = time.perf_counter()
            adv = _batched(lambda xb, yb, k, eps=eps, w=w: adaptive(params, extra, xb, yb, k, jnp.float32(eps),
                                                                    jnp.float32(w)),
                           x, y, rng.key(config.seed, rng.ADAPTIVE_ATTACK, j), acfg.batch_size)
            pred = np.asarray(final(params, extra, jnp.asarray(adv))).argmax(-1)
            k = set_key("mhui", "adaptive", float(eps), float(w))
            advs[k], results[k] = adv, _summary(adv, x, y, pred, time.perf_counter() - t0)
            log(f"attack {k}: accuracy under attack {results[k]['acc_under_attack']:.3f}")
    return advs, results
