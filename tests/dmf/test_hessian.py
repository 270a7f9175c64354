"""Lanczos smallest Hessian eigenvalue against dense eigvalsh; spectra at the origin."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab import dmf


@pytest.mark.parametrize("n,depth,num_iters,completion", [
    pytest.param(4, 3, 64, False, marks=pytest.mark.slow),  # CI: the finite-difference tests of test_escape
    pytest.param(6, 2, 40, False, marks=pytest.mark.slow),
    (4, 2, 64, True)])
def test_hessian_min_eig_matches_dense(n, depth, num_iters, completion):
    with jax.enable_x64(True):
        key = jax.random.PRNGKey(n * 10 + depth)
        target = dmf.low_rank_target(key, n, 2, (3.0, 1.5))
        fs = dmf.init_factors(jax.random.PRNGKey(1), n, depth, 0.5)
        mask = (jax.random.uniform(jax.random.PRNGKey(2), (n, n)) < 0.6).astype(jnp.float64) if completion else None
        lam = float(dmf.hessian_min_eig(fs, target, mask, key=jax.random.PRNGKey(3), num_iters=num_iters))
        # independent dense reference: NumPy eigvalsh of the full Hessian
        h = np.asarray(dmf.dense_hessian(fs, target, mask))
        # and the HVP agrees with the dense Hessian on a random direction
        v = [jax.random.normal(jax.random.PRNGKey(9 + i), f.shape, f.dtype) for i, f in enumerate(fs)]
        hv = np.concatenate([np.asarray(x).ravel() for x in dmf.hvp(fs, target, v, mask)])
    np.testing.assert_allclose(hv, h @ np.concatenate([np.asarray(x).ravel() for x in v]), rtol=1e-9, atol=1e-12)
    ref = np.linalg.eigvalsh(0.5 * (h + h.T))[0]
    np.testing.assert_allclose(lam, ref, rtol=1e-7, atol=1e-9)
    assert ref < 0  # a saddle-type point: the test is not vacuous


def test_depth2_origin_spectrum_is_plus_minus_sigma():
    n, sig = 5, np.array([3.0, 2.0, 0.5])
    with jax.enable_x64(True):
        target = dmf.low_rank_target(jax.random.PRNGKey(0), n, 3, tuple(sig))
        zeros = [jnp.zeros((n, n), jnp.float64)] * 2
        h = np.asarray(dmf.dense_hessian(zeros, target))
        lam = float(dmf.hessian_min_eig(zeros, target, key=jax.random.PRNGKey(1), num_iters=30))
    ev = np.sort(np.linalg.eigvalsh(h))
    # eigenvalues +-sigma_i, each with multiplicity n (one per hidden direction), zeros elsewhere
    expected = np.sort(np.concatenate([np.repeat(sig, n), -np.repeat(sig, n), np.zeros(2 * n * n - 2 * 3 * n)]))
    np.testing.assert_allclose(ev, expected, atol=1e-10)
    np.testing.assert_allclose(lam, -3.0, rtol=1e-9)


def test_depth3_origin_hessian_is_zero():
    n = 4
    with jax.enable_x64(True):
        target = dmf.low_rank_target(jax.random.PRNGKey(0), n, 2, (3.0, 1.0))
        zeros = [jnp.zeros((n, n), jnp.float64)] * 3
        h = np.asarray(dmf.dense_hessian(zeros, target))
        lam = float(dmf.hessian_min_eig(zeros, target, key=jax.random.PRNGKey(1), num_iters=20))
    assert np.all(h == 0)
    assert lam == 0.0
