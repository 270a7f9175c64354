"""Targets, initialisation, losses and gradients of jaxlab.dmf against NumPy references."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab import dmf
from jaxlab.dmf import models


def test_low_rank_target_has_exact_singular_values():
    with jax.enable_x64(True):
        t = dmf.low_rank_target(jax.random.PRNGKey(3), 12, 3, (7.0, 3.0, 0.5))
        assert t.dtype == jnp.float64 and t.shape == (12, 12)
    s = np.linalg.svd(np.asarray(t), compute_uv=False)
    np.testing.assert_allclose(s[:3], [7.0, 3.0, 0.5], rtol=1e-12)
    assert s[3] < 1e-12
    with jax.enable_x64(True):
        d = np.linalg.svd(np.asarray(dmf.low_rank_target(jax.random.PRNGKey(0), 20, 3)), compute_uv=False)
    np.testing.assert_allclose(d[:3], [10.0, 5.0, 2.0], rtol=1e-12)
    with pytest.raises(ValueError, match="singular_values"):
        dmf.low_rank_target(jax.random.PRNGKey(0), 5, 2, (1.0,))


@pytest.mark.parametrize("kind", ["gaussian", "orthogonal", "identity"])
def test_init_factors_end_to_end_norm(kind):
    n, depth, scale = 64, 3, 1e-3
    with jax.enable_x64(True):
        fs = dmf.init_factors(jax.random.PRNGKey(1), n, depth, scale, kind=kind)
        w = np.asarray(dmf.end_to_end(fs))
    assert len(fs) == depth and all(f.shape == (n, n) for f in fs)
    ratio = np.linalg.norm(w) / (scale * np.sqrt(n))
    if kind == "gaussian":
        assert 0.6 < ratio < 1.6, ratio
        # per-layer std init_scale^(1/N) / sqrt(n)
        np.testing.assert_allclose(np.std(np.asarray(fs[0])), scale ** (1 / 3) / np.sqrt(n), rtol=0.05)
    else:
        np.testing.assert_allclose(ratio, 1.0, rtol=1e-10)


def test_arora_target_norm_and_rank():
    with jax.enable_x64(True):
        w = np.asarray(dmf.arora_target(jax.random.PRNGKey(0), 30, 4))
    np.testing.assert_allclose(np.linalg.norm(w), 30.0, rtol=1e-12)
    assert np.linalg.matrix_rank(w) == 4


def _np_loss(fs, target, mask=None, meas=None, reduction="half_sum"):
    w = fs[0]
    for f in fs[1:]:
        w = f @ w
    if meas is not None:
        r = np.einsum("kij,ij->k", meas[0], w) - meas[1]
        cnt = len(r)
    elif mask is not None:
        r = (w - target)[mask > 0]
        cnt = mask.sum()
    else:
        r = w - target
        cnt = r.size
    return 0.5 * np.sum(r**2) if reduction == "half_sum" else np.sum(r**2) / cnt


@pytest.mark.parametrize("obs", ["full", "completion", "sensing"])
@pytest.mark.parametrize("reduction", ["half_sum", "mean"])
def test_loss_and_gradient_against_numpy_and_finite_differences(obs, reduction):
    rng = np.random.default_rng(0)
    n, depth = 5, 3
    fs = [rng.normal(size=(n, n)) * 0.7 for _ in range(depth)]
    target = rng.normal(size=(n, n))
    mask = (rng.random((n, n)) < 0.5).astype(np.float64) if obs == "completion" else None
    meas = (rng.normal(size=(7, n, n)), rng.normal(size=7)) if obs == "sensing" else None
    with jax.enable_x64(True):
        jm = None if mask is None else jnp.asarray(mask)
        jmeas = None if meas is None else tuple(map(jnp.asarray, meas))
        f = lambda fs_: models.loss_fn(fs_, jnp.asarray(target), jm, jmeas, reduction)
        val = float(f([jnp.asarray(x) for x in fs]))
        grads = [np.asarray(g) for g in jax.grad(f)([jnp.asarray(x) for x in fs])]
    np.testing.assert_allclose(val, _np_loss(fs, target, mask, meas, reduction), rtol=1e-12)
    eps = 1e-6
    for i in range(depth):
        for idx in [(0, 0), (1, 3), (4, 2)]:
            up = [x.copy() for x in fs]
            dn = [x.copy() for x in fs]
            up[i][idx] += eps
            dn[i][idx] -= eps
            fd = (_np_loss(up, target, mask, meas, reduction) - _np_loss(dn, target, mask, meas, reduction)) / (2 * eps)
            np.testing.assert_allclose(grads[i][idx], fd, rtol=1e-6, atol=1e-8)


def test_plateau_levels():
    with jax.enable_x64(True):
        t = dmf.low_rank_target(jax.random.PRNGKey(0), 20, 3)
    np.testing.assert_allclose(dmf.plateau_levels(t), [64.5, 14.5, 2.0], rtol=1e-12)
    np.testing.assert_allclose(dmf.plateau_levels(t, "mean"), np.array([129.0, 29.0, 4.0]) / 400, rtol=1e-12)
