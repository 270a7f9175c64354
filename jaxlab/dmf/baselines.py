"""Convex baseline: nuclear-norm minimisation by proximal gradient (own code, no solver).

Approximates  min ||Z||_*  s.t. the observations of Z equal the data  by the path of
regularised problems

    min_Z 1/2 sum_obs (obs(Z) - data)^2 + lam ||Z||_*,   lam = lam_0 ... lam_min (geometric),

each solved by warm-started accelerated proximal gradient (FISTA; Z <- S_{eta lam}(Y - eta
grad(Y)), Y the momentum point), where
S_t soft-thresholds the singular values. For completion with eta = 1 this is
soft-impute (Mazumder, Hastie & Tibshirani, 2010): Z <- S_lam(P_Omega(M) + P_Omega^perp(Z)).
This replaces the CVXPY/SCS solve of Arora et al.'s comparison.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

__all__ = ["soft_threshold_svd", "nuclear_norm_completion", "nuclear_norm_sensing"]


def soft_threshold_svd(z: jax.Array, t) -> jax.Array:
    """prox of t ||.||_*: U diag(max(s - t, 0)) V^T."""
    u, s, vt = jnp.linalg.svd(z, full_matrices=False)
    return (u * jnp.maximum(s - t, 0.0)) @ vt


def _path(grad, z0, lam0, eta, num_lambdas, iters, lam_ratio):
    lams = lam0 * lam_ratio ** (jnp.arange(num_lambdas) / max(num_lambdas - 1, 1))

    def outer(z, lam):
        def fista(_, c):  # accelerated proximal gradient (Beck & Teboulle), restarted per lam
            z, z_prev, t = c
            t_next = 0.5 * (1.0 + jnp.sqrt(1.0 + 4.0 * t * t))
            y = z + ((t - 1.0) / t_next) * (z - z_prev)
            return soft_threshold_svd(y - eta * grad(y), eta * lam), z, t_next

        z, _, _ = jax.lax.fori_loop(0, iters, fista, (z, z, jnp.ones((), z.dtype)))
        return z, None

    z, _ = jax.lax.scan(outer, z0, lams)
    return z


@functools.partial(jax.jit, static_argnames=("num_lambdas", "iters"))
def nuclear_norm_completion(target, mask, *, num_lambdas: int = 30, iters: int = 100, lam_ratio: float = 1e-5):
    """Soft-impute path for matrix completion; returns the `[n, m]` completed matrix.

    Only the observed entries of `target` (where `mask` is 1) are used. lam_0 is the
    largest singular value of P_Omega(M) (where the solution is 0); the path ends at
    lam_0 * lam_ratio, close to the minimum-nuclear-norm interpolant.
    """
    mask = mask.astype(target.dtype)
    data = mask * target
    lam0 = jnp.linalg.norm(data, 2)
    grad = lambda z: mask * z - data
    return _path(grad, jnp.zeros_like(target), lam0, 1.0, num_lambdas, iters, lam_ratio)


@functools.partial(jax.jit, static_argnames=("num_lambdas", "iters"))
def nuclear_norm_sensing(a, y, *, num_lambdas: int = 30, iters: int = 100, lam_ratio: float = 1e-5):
    """Proximal-gradient path for matrix sensing y_i = <A_i, Z>; A `[k, n, m]`, y `[k]`."""
    amat = a.reshape(a.shape[0], -1)
    # step 1/L with L = ||A||_op^2 (power iteration on A^T A)
    v = jnp.ones(amat.shape[1], amat.dtype) / jnp.sqrt(amat.shape[1])
    v = jax.lax.fori_loop(0, 100, lambda _, v: (lambda w: w / jnp.linalg.norm(w))(amat.T @ (amat @ v)), v)
    lip = jnp.dot(v, amat.T @ (amat @ v)) * 1.01
    grad = lambda z: (amat.T @ (amat @ z.ravel() - y)).reshape(z.shape)
    lam0 = jnp.linalg.norm(grad(jnp.zeros(a.shape[1:], a.dtype)), 2)
    return _path(grad, jnp.zeros(a.shape[1:], a.dtype), lam0, 1.0 / lip, num_lambdas, iters, lam_ratio)
