"""Convex baselines: nuclear-norm minimisation (own code, no solver package).

`min_nuclear_norm_completion` solves the completion problem exactly,

    min ||Z||_*  s.t.  Z_ij = M_ij for the observed (i, j),

by ADMM and stops at a certified relative duality gap (see its docstring). The
proximal-gradient path below approximates  min ||Z||_*  s.t. the observations of Z equal the data  by the path of
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
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["soft_threshold_svd", "nuclear_norm_completion", "nuclear_norm_sensing", "MinNuclearNorm",
           "min_nuclear_norm_completion"]


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


class MinNuclearNorm(NamedTuple):
    """Result of `min_nuclear_norm_completion`: `z` (feasible: equal to the data on the
    observed entries), `nuclear_norm` = ||z||_* (an upper bound on the optimum),
    `dual_bound` (a lower bound on it), `rel_gap` = (nuclear_norm - dual_bound) /
    nuclear_norm, `iterations`, `converged` (rel_gap <= tol)."""

    z: np.ndarray
    nuclear_norm: float
    dual_bound: float
    rel_gap: float
    iterations: int
    converged: bool


def _svt(a: np.ndarray, t: float) -> np.ndarray:
    u, s, vt = np.linalg.svd(a, full_matrices=False)
    k = int(np.sum(s > t))
    return (u[:, :k] * (s[:k] - t)) @ vt[:k]


def min_nuclear_norm_completion(target, mask, *, tol: float = 1e-6, max_iters: int = 20000,
                                check_every: int = 10) -> MinNuclearNorm:
    """Minimum-nuclear-norm completion  min ||Z||_* s.t. P(Z) = P(M)  (P keeps the entries
    where `mask` is 1; only those entries of `target` are read), NumPy float64.

    ADMM on the split X = Z (X: nuclear norm, Z: the affine set of matrices that agree
    with the data): X <- SVT_{1/rho}(Z - U), Z <- X + U with the observed entries reset to
    the data, U <- U + X - Z; rho adapted by residual balancing (Boyd et al. 2011, 3.4.1).
    U is zero off the observed entries after every step, so Y = -rho U is a dual candidate:
    for any Y supported on the observed entries with ||Y||_op <= 1 and any feasible Z,
    ||Z||_* >= <Y, Z> = <Y, P(M)> (weak duality). Every `check_every` iterations the
    feasible Z gives the upper bound ||Z||_* and Y / max(1, ||Y||_op) the lower bound
    <Y, P(M)>; the solver stops when the relative gap is <= `tol`, a certificate that
    ||Z||_* is within tol of the optimum (not that Z is close to the minimiser when the
    minimiser is not unique).
    """
    mask = np.asarray(mask).astype(bool)
    data = np.where(mask, np.asarray(target, np.float64), 0.0)
    scale = np.linalg.norm(data, 2)
    if scale == 0:
        return MinNuclearNorm(np.zeros_like(data), 0.0, 0.0, 0.0, 0, True)
    b = data / scale  # solve at unit operator norm; rescale the result
    z, u = b.copy(), np.zeros_like(b)
    rho = 1.0
    best = (np.inf, np.zeros_like(b), -np.inf)
    for it in range(1, max_iters + 1):
        x = _svt(z - u, 1.0 / rho)
        z_old = z
        z = np.where(mask, b, x + u)
        u = u + x - z
        r, s = np.linalg.norm(x - z), rho * np.linalg.norm(z - z_old)
        if r > 10 * s:
            rho, u = rho * 2, u / 2
        elif s > 10 * r:
            rho, u = rho / 2, u * 2
        if it % check_every and it != max_iters:
            continue
        primal = float(np.sum(np.linalg.svd(z, compute_uv=False)))
        y = -rho * u
        y = y / max(1.0, np.linalg.norm(y, 2))
        lower = float(np.sum(y * b))
        if primal < best[0]:
            best = (primal, z, best[2])
        best = (best[0], best[1], max(best[2], lower))
        gap = (best[0] - best[2]) / best[0]
        if gap <= tol:
            break
    primal, z, lower = best
    gap = (primal - lower) / primal
    return MinNuclearNorm(z * scale, primal * scale, lower * scale, gap, it, bool(gap <= tol))
