"""Detectors: MH-UI and the baselines, as scores computed from network outputs.

Every detector maps network outputs of N inputs to `{score_name: [N]}` with
*higher = more likely adversarial*:

    MH-UI            Dirichlet moment matching over the heads  `[H, N, K]` logits
    MSP              -max softmax of the final head             `[N, K]`
    MC dropout       sample entropy / mutual information of T dropout passes `[T, N, K]`
    MCD + Dirichlet  the same moment matching over the T dropout passes (separates the
                     depth of the heads from the estimator)
    Ensemble         sample entropy / mutual information of M members `[M, N, K]`
    Ensemble + Dir.  moment matching over the M members
    RKL Prior Net    the scores of Dir(exp z)                   `[N, K]`
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxlab.mhui import dirichlet as D
from jaxlab.mhui.train import prior_alpha

__all__ = ["mhui_scores", "msp_scores", "sample_method_scores", "prior_net_scores", "select_heads"]


def select_heads(logits: jax.Array, heads: tuple[int, ...]) -> jax.Array:
    """The heads `heads` (() = all) of `logits [H, N, K]`; negative indices count from the end."""
    if not heads:
        return logits
    h = logits.shape[0]
    bad = [i for i in heads if not -h <= i < h]
    if bad:
        raise ValueError(f"config field 'detect.heads' names heads {bad}, but the model has {h} heads")
    return logits[jnp.asarray(heads)]


def _mm(probs, dcfg):
    return D.dirichlet_moment_match(probs, combine=dcfg.combine, var_floor=dcfg.var_floor,
                                    min_precision=dcfg.min_precision)


def mhui_scores(logits: jax.Array, dcfg, heads: tuple[int, ...] | None = None) -> dict[str, jax.Array]:
    """MH-UI: all Dirichlet scores of the moment-matched heads. `logits [H, N, K]`."""
    z = select_heads(logits, dcfg.heads if heads is None else heads)
    probs = jax.nn.softmax(z / dcfg.head_temperature, axis=-1)
    return D.dirichlet_scores(_mm(probs, dcfg))


def msp_scores(logits: jax.Array) -> dict[str, jax.Array]:
    """Maximum softmax probability of one head, `[N, K]` -> {"max_prob": -max p}."""
    return {"max_prob": -jnp.max(jax.nn.softmax(logits, -1), -1)}


def sample_method_scores(logits: jax.Array, dcfg) -> tuple[dict[str, jax.Array], dict[str, jax.Array]]:
    """`logits [S, N, K]` of S samples (dropout passes or members) ->
    (sample scores {entropy, max_prob, mutual_info}, moment-matched Dirichlet scores)."""
    probs = jax.nn.softmax(logits, -1)
    return D.sample_scores(probs), D.dirichlet_scores(_mm(probs, dcfg))


def prior_net_scores(logits: jax.Array) -> dict[str, jax.Array]:
    """Scores of the Prior Network's own Dirichlet, alpha = exp(z), `[N, K]`."""
    return D.dirichlet_scores(prior_alpha(logits))
