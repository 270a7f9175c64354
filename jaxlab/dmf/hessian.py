"""Curvature of the DMF loss in the factors: Hessian-vector products and Lanczos.

The Hessian H of l(W_1, ..., W_N) over all N n^2 factor entries is never formed:
`hvp` is forward-over-reverse (`jax.jvp` of `jax.grad`), and `hessian_min_eig` runs
Lanczos with full reorthogonalisation on it. At depth 2 the Hessian at the origin has
spectrum {+-sigma_i*} (each n times) and zeros; at depth >= 3 it is identically 0 there.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from jaxlab.dmf import models

__all__ = ["hvp", "hessian_min_eig", "hessian_extremes", "lanczos", "lanczos_eigh", "dense_hessian",
           "end_to_end_directions", "escape_direction"]


def _flat_loss(factors, target, mask, measurements, loss_reduction):
    flat, unravel = ravel_pytree(list(factors))

    def f(x):
        return models.loss_fn(unravel(x), target, mask, measurements, loss_reduction)

    return f, flat


def hvp(factors, target, vector_factors, mask=None, measurements=None, loss_reduction=None):
    """H v for v given as factors-shaped arrays: d/de grad l(factors + e v) at e = 0."""
    g = lambda fs: jax.grad(models.loss_fn)(fs, target, mask, measurements, loss_reduction)
    return jax.jvp(g, (list(factors),), (list(vector_factors),))[1]


@functools.partial(jax.jit, static_argnames=("loss_reduction",))
def _dense(factors, target, mask, measurements, loss_reduction):
    f, x = _flat_loss(factors, target, mask, measurements, loss_reduction)
    return jax.hessian(f)(x)


def dense_hessian(factors, target, mask=None, measurements=None, loss_reduction=None):
    """The full `[d, d]` Hessian over the flattened factors (tests and tiny problems only)."""
    return _dense(list(factors), target, mask, measurements, loss_reduction)


def lanczos(matvec, v0, num_iters: int, key):
    """Lanczos tridiagonalisation with full reorthogonalisation.

    Returns the Ritz values (eigenvalues of the `[k, k]` tridiagonal T, ascending). On
    breakdown (beta ~ 0: an invariant subspace was found) the next basis vector is a
    fresh random vector orthogonalised against the basis, with beta = 0, so T stays the
    exact projection of the operator onto the basis.
    """
    return lanczos_eigh(matvec, v0, num_iters, key)[0]


def lanczos_eigh(matvec, v0, num_iters: int, key):
    """Ritz values (ascending, `[k]`) and Ritz vectors (`[d, k]`, unit columns) of `lanczos`.

    The Ritz vector of the smallest Ritz value approximates the eigenvector of the
    smallest eigenvalue. From one start vector Lanczos finds one vector per distinct
    eigenvalue: inside a degenerate eigenspace it returns the start vector's projection.
    """
    d = v0.shape[0]
    k = int(min(num_iters, d))
    dt = v0.dtype
    q = jnp.zeros((k, d), dt)
    alpha = jnp.zeros((k,), dt)
    beta = jnp.zeros((k,), dt)
    v = v0 / jnp.linalg.norm(v0)

    def orth(w, q):
        w = w - q.T @ (q @ w)
        return w - q.T @ (q @ w)

    def body(i, carry):
        q, alpha, beta, v = carry
        q = q.at[i].set(v)
        w = matvec(v)
        a = jnp.dot(w, v)
        w = orth(w, q)
        b = jnp.linalg.norm(w)
        scale = jnp.maximum(jnp.max(jnp.abs(alpha)), jnp.abs(a)) + 1e-300
        broke = b <= 1e-10 * scale
        r = orth(jax.random.normal(jax.random.fold_in(key, i), (d,), dt), q)
        nxt = jnp.where(broke, r / jnp.linalg.norm(r), w / jnp.where(broke, 1.0, b))
        return q, alpha.at[i].set(a), beta.at[i].set(jnp.where(broke, 0.0, b)), nxt

    q, alpha, beta, _ = jax.lax.fori_loop(0, k, body, (q, alpha, beta, v))
    t = jnp.diag(alpha) + jnp.diag(beta[:-1], 1) + jnp.diag(beta[:-1], -1)
    vals, y = jnp.linalg.eigh(t)
    return vals, q.T @ y


@functools.partial(jax.jit, static_argnames=("num_iters", "loss_reduction"))
def _min_eig(factors, target, mask, measurements, key, *, num_iters, loss_reduction):
    f, x = _flat_loss(factors, target, mask, measurements, loss_reduction)
    matvec = lambda v: jax.jvp(jax.grad(f), (x,), (v,))[1]
    k0, k1 = jax.random.split(key)
    v0 = jax.random.normal(k0, x.shape, x.dtype)
    return lanczos(matvec, v0, num_iters, k1)[0]


def hessian_min_eig(factors, target, mask: jax.Array | None = None, *, key, num_iters: int = 64,
                    measurements=None, loss_reduction: str | None = None) -> jax.Array:
    """Smallest eigenvalue of the Hessian of the loss in the factors (Lanczos on HVPs).

    `num_iters` Lanczos steps (capped at the dimension N n^2; then it is exact up to
    rounding). Lanczos converges fastest to the extreme eigenvalues; with 64 steps the
    smallest one is accurate to many digits on the problems of the tests, but a tightly
    clustered bottom of the spectrum may need more.
    """
    return _min_eig(list(factors), target, mask, measurements, key, num_iters=int(num_iters),
                    loss_reduction=loss_reduction)


@functools.partial(jax.jit, static_argnames=("num_iters", "loss_reduction"))
def _extremes(factors, target, mask, measurements, key, *, num_iters, loss_reduction):
    f, x = _flat_loss(factors, target, mask, measurements, loss_reduction)
    _, unravel = ravel_pytree(list(factors))
    matvec = lambda v: jax.jvp(jax.grad(f), (x,), (v,))[1]
    k0, k1 = jax.random.split(key)
    vals, vecs = lanczos_eigh(matvec, jax.random.normal(k0, x.shape, x.dtype), num_iters, k1)
    return vals[0], vals[-1], unravel(vecs[:, 0])


def hessian_extremes(factors, target, mask: jax.Array | None = None, *, key, num_iters: int = 64,
                     measurements=None, loss_reduction: str | None = None):
    """(lambda_min, lambda_max, eigenvector of lambda_min as factors-shaped arrays) of the
    Hessian in the factors (one Lanczos run on HVPs; the vector has unit norm over all
    factors together, its sign is arbitrary). 2 / lambda_max is GD's stability limit."""
    lo, hi, vec = _extremes(list(factors), target, mask, measurements, key, num_iters=int(num_iters),
                            loss_reduction=loss_reduction)
    return lo, hi, list(vec)


def end_to_end_directions(factors, direction):
    """(D1, D2): the first- and second-order terms of W(factors + t V) = W + t D1 + t^2 D2 + ...

    D1 = sum_i W_N..V_i..W_1 (the Jacobian of the end-to-end map applied to V), D2 = the sum
    over pairs i < j of the products with V in places i and j. At a saddle whose escape
    direction V leaves the used hidden directions, D1 = 0 and the escape shows in W at
    second order, through D2 (depth 2 at the origin: V = (e v^T, u e^T)/sqrt 2 gives D1 = 0,
    D2 = u v^T / 2).
    """
    fs, vs = [jnp.asarray(f) for f in factors], [jnp.asarray(v) for v in direction]
    if len(fs) != len(vs):
        raise ValueError(f"end_to_end_directions: {len(fs)} factors but {len(vs)} direction blocks")
    g = lambda t: models.end_to_end([f + t * v for f, v in zip(fs, vs)])
    t0 = jnp.zeros((), fs[0].dtype)
    d1_fn = lambda t: jax.jvp(g, (t,), (jnp.ones_like(t0),))[1]
    d1, dd1 = jax.jvp(d1_fn, (t0,), (jnp.ones_like(t0),))
    return d1, 0.5 * dd1


def escape_direction(factors, direction):
    """The W-space direction of a factor-space direction V: the top singular pair (u, v) of
    D2 (`end_to_end_directions`), the sign-invariant part of the end-to-end change,
    W(f + tV) + W(f - tV) - 2W(f) = 2 t^2 D2 + O(t^4).

    Why D2 and not D1: a Hessian eigenvector's sign is arbitrary, so only the even part of
    the change along it is defined; and at a saddle whose escaping direction uses hidden
    directions the factors do not yet use, D1 = 0 (exactly at the saddle) and the escape
    enters W at second order.
    """
    _, d2 = end_to_end_directions(factors, direction)
    u, _, vt = np.linalg.svd(np.asarray(d2))
    return u[:, 0], vt[0]
