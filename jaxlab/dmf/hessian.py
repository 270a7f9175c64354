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
from jax.flatten_util import ravel_pytree

from jaxlab.dmf import models

__all__ = ["hvp", "hessian_min_eig", "lanczos", "dense_hessian"]


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
    return jnp.linalg.eigvalsh(t)


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
