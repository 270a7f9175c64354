"""Nuclear-norm baseline: prox operator and recovery of a low-rank matrix."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab import dmf


def test_soft_threshold_svd_matches_numpy():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(6, 5))
    u, s, vt = np.linalg.svd(z, full_matrices=False)
    ref = (u * np.maximum(s - 0.7, 0)) @ vt
    with jax.enable_x64(True):
        out = np.asarray(dmf.soft_threshold_svd(jnp.asarray(z), 0.7))
    np.testing.assert_allclose(out, ref, atol=1e-12)


@pytest.mark.slow  # the studies use min_nuclear_norm_completion (fast tests below)
def test_nuclear_norm_completion_recovers_low_rank():
    n = 30
    with jax.enable_x64(True):
        target = dmf.low_rank_target(jax.random.PRNGKey(0), n, 2, (5.0, 3.0))
        mask = (jax.random.uniform(jax.random.PRNGKey(1), (n, n)) < 0.5).astype(jnp.float64)
        z = dmf.nuclear_norm_completion(target, mask, num_lambdas=20, iters=50)
        # only observed entries are used
        z2 = dmf.nuclear_norm_completion(target + 100.0 * (1 - mask), mask, num_lambdas=20, iters=50)
    err = np.linalg.norm(np.asarray(z) - np.asarray(target)) / np.linalg.norm(np.asarray(target))
    assert err < 1e-2, err
    np.testing.assert_allclose(np.asarray(z2), np.asarray(z), atol=1e-10)


def test_nuclear_norm_sensing_recovers_low_rank():
    n, m = 8, 50
    with jax.enable_x64(True):
        target = dmf.low_rank_target(jax.random.PRNGKey(0), n, 1, (3.0,))
        a = jax.random.normal(jax.random.PRNGKey(2), (m, n, n)) / n
        y = jnp.einsum("kij,ij->k", a, target)
        z = dmf.nuclear_norm_sensing(a, y, num_lambdas=20, iters=200)
    err = np.linalg.norm(np.asarray(z) - np.asarray(target)) / 3.0
    assert err < 2e-2, err


def _nuclear(z):
    return float(np.sum(np.linalg.svd(z, compute_uv=False)))


def test_min_nuclear_norm_completion_matches_a_direct_minimisation():
    """5x4 matrix with 3 unobserved entries: the optimum is a convex minimisation over 3
    numbers, solved here independently by SciPy (Nelder-Mead from 4 starts); the ADMM
    solution must reach the same nuclear norm, and its certified bounds must bracket it."""
    import scipy.optimize

    rng = np.random.default_rng(3)
    m = rng.normal(size=(5, 2)) @ rng.normal(size=(2, 4)) + 0.3 * rng.normal(size=(5, 4))
    mask = np.ones_like(m)
    free = [(0, 1), (2, 3), (4, 0)]
    for i, j in free:
        mask[i, j] = 0.0

    def value(x):
        z = m.copy()
        for (i, j), v in zip(free, x):
            z[i, j] = v
        return _nuclear(z)

    ref = min((scipy.optimize.minimize(value, x0, method="Nelder-Mead",
                                       options={"xatol": 1e-10, "fatol": 1e-13, "maxiter": 20000})
               for x0 in rng.normal(size=(4, 3))), key=lambda r: r.fun)
    sol = dmf.min_nuclear_norm_completion(np.where(mask > 0, m, 7.0), mask, tol=1e-9)
    assert sol.converged and sol.rel_gap <= 1e-9
    np.testing.assert_allclose(sol.z[mask > 0], m[mask > 0], atol=1e-12)  # feasible
    np.testing.assert_allclose(sol.nuclear_norm, _nuclear(sol.z), rtol=1e-12)
    np.testing.assert_allclose(sol.nuclear_norm, ref.fun, rtol=2e-8)
    assert sol.dual_bound <= ref.fun * (1 + 1e-12) and sol.nuclear_norm >= ref.fun * (1 - 1e-9)
    np.testing.assert_allclose([sol.z[i, j] for i, j in free], ref.x, atol=1e-4)


def test_min_nuclear_norm_completion_recovers_and_bounds_the_truth():
    """A 30x30 rank-2 matrix from 60% of its entries: recovered to 1e-6; the dual bound
    never exceeds ||M*||_* (M* is feasible), the unobserved values are not read. From half
    the entries this instance has a completion of smaller nuclear norm than M*, found and
    certified: the optimum is then below ||M*||_* and M* is not recovered."""
    n = 30
    with jax.enable_x64(True):
        target = np.asarray(dmf.low_rank_target(jax.random.PRNGKey(0), n, 2, (5.0, 3.0)))
    u = np.random.default_rng(1).uniform(size=(n, n))
    mask = np.asarray(u < 0.6, np.float64)
    sol = dmf.min_nuclear_norm_completion(target, mask, tol=1e-8)
    other = dmf.min_nuclear_norm_completion(target + 100.0 * (1 - mask), mask, tol=1e-8)
    assert sol.converged and sol.dual_bound <= _nuclear(target) * (1 + 1e-12)
    assert np.linalg.norm(sol.z - target) / np.linalg.norm(target) < 1e-6
    np.testing.assert_array_equal(other.z, sol.z)
    half = dmf.min_nuclear_norm_completion(target, np.asarray(u < 0.5, np.float64), tol=1e-8)
    assert half.converged and half.dual_bound > half.nuclear_norm * (1 - 1e-8)
    assert half.nuclear_norm < _nuclear(target) - 1e-3 and np.linalg.norm(half.z - target) > 1e-2
