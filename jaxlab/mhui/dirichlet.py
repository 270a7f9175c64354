"""Dirichlet moment matching over prediction heads and Dirichlet uncertainty scores.

MH-UI treats the softmax outputs of H heads at different depths as i.i.d. draws
p^(1..H) ~ Dir(alpha) and estimates alpha by moment matching (Minka 2000):

    m_k = (1/H) sum_h p_k^(h)                 (sample mean)
    v_k = 1/(H-1) sum_h (p_k^(h) - m_k)^2     (unbiased sample variance)
    E[p_k] = alpha_k / alpha_0,   Var[p_k] = m_k (1 - m_k) / (alpha_0 + 1)
    =>  per-class precision   alpha_0^(k) = m_k (1 - m_k) / v_k - 1

and combines the per-class precisions into one alpha_0 (config `precision_combine`):

    pooled:    alpha_0 = sum_k m_k (1 - m_k) / sum_k v_k - 1
    minka_log: log alpha_0 = 1/K sum_k log(m_k (1 - m_k) / v_k - 1)

`minka_log` averages the logs over all K classes, so alpha_0 does not depend on the order
of the classes (permuting the classes permutes alpha). Minka's note writes the sum over
the first K-1 classes only, which makes the estimate depend on which class comes last;
earlier versions of this module did that. Finally alpha_k = m_k alpha_0. Applying the
estimator to the heads of one network is MH-UI's idea; which combination rule the paper used is not published
(reconstruction: `pooled` by default).

Scores (all oriented so that *higher = more uncertain = more likely adversarial*):

    precision       -alpha_0
    diff_entropy    sum_k [lnG(alpha_k) - (alpha_k - 1)(psi(alpha_k) - psi(alpha_0))] - lnG(alpha_0)
    mutual_info     H[m] + sum_k m_k (psi(alpha_k + 1) - psi(alpha_0 + 1))
    epkl            (K - 1) / alpha_0
    entropy         H[m] = -sum_k m_k log m_k           (entropy of the mean prediction)
    max_prob        -max_k m_k
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp
from jax.scipy.special import digamma, gammaln

__all__ = [
    "SCORES",
    "dirichlet_moment_match",
    "precision",
    "differential_entropy",
    "mutual_information",
    "epkl",
    "entropy_of_mean",
    "max_probability",
    "dirichlet_scores",
    "sample_scores",
    "score_from_probs",
]

SCORES = ("precision", "diff_entropy", "mutual_info", "epkl", "entropy", "max_prob")


def dirichlet_moment_match(
    probs: jax.Array,
    *,
    combine: Literal["pooled", "minka_log"] = "pooled",
    var_floor: float = 1e-12,
    min_precision: float = 1e-3,
    alpha_floor: float = 1e-6,
) -> jax.Array:
    """Moment-matched Dirichlet parameters of H probability vectors per example.

    Args:
      probs: `[H, B, K]` probabilities (each `[K]` row sums to 1), H >= 2.
      combine: how per-class precisions are combined: `pooled` (ratio of sums) or
        `minka_log` (mean of the logs over all K classes, after Minka 2000).
      var_floor: lower clamp on the variances v_k (identical heads give v = 0: the
        clamp turns that into a large, finite alpha_0).
      min_precision: lower clamp on alpha_0 and on each per-class precision before its
        log (per-class estimates can be negative when v_k > m_k (1 - m_k)).
      alpha_floor: lower clamp on each alpha_k (keeps digamma/gammaln finite).

    Returns:
      alpha `[B, K]`, alpha_k = m_k alpha_0.
    """
    probs = jnp.asarray(probs)
    if probs.ndim != 3:
        raise ValueError(f"dirichlet_moment_match expects probs [H, B, K], got shape {probs.shape}")
    h = probs.shape[0]
    if h < 2:
        raise ValueError(f"dirichlet_moment_match needs H >= 2 samples per example, got H={h}")
    m = jnp.mean(probs, axis=0)  # [B, K]
    v = jnp.sum((probs - m) ** 2, axis=0) / (h - 1)
    v = jnp.maximum(v, var_floor)
    mm = m * (1.0 - m)
    if combine == "pooled":
        a0 = jnp.sum(mm, axis=-1) / jnp.sum(v, axis=-1) - 1.0
    elif combine == "minka_log":
        per_class = jnp.maximum(mm / v - 1.0, min_precision)  # [B, K]
        a0 = jnp.exp(jnp.mean(jnp.log(per_class), axis=-1))
    else:
        raise ValueError(f"unknown precision combine rule {combine!r}; expected 'pooled' or 'minka_log'")
    a0 = jnp.maximum(a0, min_precision)
    return jnp.maximum(m * a0[:, None], alpha_floor)


def precision(alpha: jax.Array) -> jax.Array:
    """alpha_0 = sum_k alpha_k, `[B, K] -> [B]` (low = uncertain)."""
    return jnp.sum(alpha, axis=-1)


def differential_entropy(alpha: jax.Array) -> jax.Array:
    """Differential entropy of Dir(alpha), `[B, K] -> [B]`.

    H = sum_k lnG(alpha_k) - lnG(alpha_0) + (alpha_0 - K) psi(alpha_0) - sum_k (alpha_k - 1) psi(alpha_k)
    """
    a0 = jnp.sum(alpha, axis=-1)
    return (jnp.sum(gammaln(alpha) - (alpha - 1.0) * (digamma(alpha) - digamma(a0)[..., None]), axis=-1)
            - gammaln(a0))


def entropy_of_mean(mean: jax.Array) -> jax.Array:
    """Shannon entropy H[m] = -sum_k m_k log m_k (0 log 0 = 0), `[B, K] -> [B]`."""
    return -jnp.sum(jnp.where(mean > 0, mean * jnp.log(jnp.where(mean > 0, mean, 1.0)), 0.0), axis=-1)


def mutual_information(alpha: jax.Array) -> jax.Array:
    """I[y, pi] = H[E pi] - E H[pi] under Dir(alpha), `[B, K] -> [B]`.

    E_Dir[H[pi]] = -sum_k m_k (psi(alpha_k + 1) - psi(alpha_0 + 1)), m = alpha / alpha_0.
    """
    a0 = jnp.sum(alpha, axis=-1, keepdims=True)
    m = alpha / a0
    return entropy_of_mean(m) + jnp.sum(m * (digamma(alpha + 1.0) - digamma(a0 + 1.0)), axis=-1)


def epkl(alpha: jax.Array) -> jax.Array:
    """Expected pairwise KL divergence of Dir(alpha): (K - 1) / alpha_0, `[B, K] -> [B]`."""
    return (alpha.shape[-1] - 1) / jnp.sum(alpha, axis=-1)


def max_probability(mean: jax.Array) -> jax.Array:
    """max_k m_k, `[B, K] -> [B]` (low = uncertain)."""
    return jnp.max(mean, axis=-1)


def dirichlet_scores(alpha: jax.Array) -> dict[str, jax.Array]:
    """All six scores of Dir(alpha), `[B, K] -> {name: [B]}`, higher = more uncertain."""
    m = alpha / jnp.sum(alpha, axis=-1, keepdims=True)
    return {
        "precision": -precision(alpha),
        "diff_entropy": differential_entropy(alpha),
        "mutual_info": mutual_information(alpha),
        "epkl": epkl(alpha),
        "entropy": entropy_of_mean(m),
        "max_prob": -max_probability(m),
    }


def sample_scores(probs: jax.Array) -> dict[str, jax.Array]:
    """Sample-based scores of S predictive samples `[S, B, K]` (MC dropout, ensembles).

    entropy = H[mean], max_prob = -max mean, mutual_info = H[mean] - mean_s H[p_s]
    (the usual BALD estimate, no Dirichlet assumption). Higher = more uncertain.
    """
    mean = jnp.mean(probs, axis=0)
    ent = entropy_of_mean(mean)
    exp_ent = jnp.mean(jax.vmap(entropy_of_mean)(probs), axis=0)
    return {"entropy": ent, "max_prob": -max_probability(mean), "mutual_info": ent - exp_ent}


def score_from_probs(probs: jax.Array, score: str, *, combine: str = "pooled", **mm_kwargs) -> jax.Array:
    """MH-UI detector: moment-match `probs [H, B, K]` and return one score `[B]`."""
    if score not in SCORES:
        raise ValueError(f"unknown score {score!r}; expected one of {SCORES}")
    alpha = dirichlet_moment_match(probs, combine=combine, **mm_kwargs)
    return dirichlet_scores(alpha)[score]
