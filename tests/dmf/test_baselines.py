"""Nuclear-norm baseline: prox operator and recovery of a low-rank matrix."""

import jax
import jax.numpy as jnp
import numpy as np

from jaxlab import dmf


def test_soft_threshold_svd_matches_numpy():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(6, 5))
    u, s, vt = np.linalg.svd(z, full_matrices=False)
    ref = (u * np.maximum(s - 0.7, 0)) @ vt
    with jax.enable_x64(True):
        out = np.asarray(dmf.soft_threshold_svd(jnp.asarray(z), 0.7))
    np.testing.assert_allclose(out, ref, atol=1e-12)


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
