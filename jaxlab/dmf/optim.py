"""Optimizers for DMF: gradient descent, GroupRMSprop (Arora et al.'s code) and RMSProp.

All are optax `GradientTransformation`s; the learning rate may be a traced scalar so that
`sweep` can vmap over learning rates.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

__all__ = ["GroupRMSpropState", "group_rmsprop", "make_optimizer", "OPTIMIZERS"]

OPTIMIZERS = ("gd", "group_rmsprop", "rmsprop")


class GroupRMSpropState(NamedTuple):
    count: jax.Array  # number of updates so far, int32 []
    square_avg: jax.Array  # EMA of the squared norm of the whole gradient []


def group_rmsprop(learning_rate, alpha: float = 0.99, eps: float = 1e-4) -> optax.GradientTransformation:
    """One global RMSProp step size from the squared norm of the whole gradient.

        v_t = alpha v_{t-1} + (1 - alpha) ||g_t||^2          (g: all factors together)
        u_t = -lr g_t / (sqrt(v_t / (1 - alpha^t)) + eps)

    This is the `GroupRMSprop` of Arora et al.'s code (a single bias-corrected
    second-moment estimate for the parameter group, not per coordinate as in
    `optax.rmsprop`); eps = 1e-4 as there.
    """

    def init_fn(params):
        leaves = jax.tree.leaves(params)
        dt = leaves[0].dtype if leaves else jnp.float32
        return GroupRMSpropState(count=jnp.zeros((), jnp.int32), square_avg=jnp.zeros((), dt))

    def update_fn(updates, state, params=None):
        del params
        sq = sum(jnp.sum(g * g) for g in jax.tree.leaves(updates))
        count = state.count + 1
        v = alpha * state.square_avg + (1.0 - alpha) * sq
        denom = jnp.sqrt(v / (1.0 - alpha ** count.astype(v.dtype))) + eps
        scale = -learning_rate / denom
        return jax.tree.map(lambda g: scale * g, updates), GroupRMSpropState(count, v)

    return optax.GradientTransformation(init_fn, update_fn)


def make_optimizer(name: str, learning_rate) -> optax.GradientTransformation:
    """`gd` (optax.sgd), `group_rmsprop` (above) or `rmsprop` (optax.rmsprop, decay 0.9)."""
    if name == "gd":
        return optax.sgd(learning_rate)
    if name == "group_rmsprop":
        return group_rmsprop(learning_rate)
    if name == "rmsprop":
        return optax.rmsprop(learning_rate)
    raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {name!r}")
