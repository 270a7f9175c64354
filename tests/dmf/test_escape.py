"""Curvature against independent references and the Hessian's escape direction.

* the Hessian of the loss in the factors against central finite differences of a NumPy
  gradient written from the formula dl/dW_i = (W_N..W_{i+1})^T G (W_{i-1}..W_1)^T
  (full, completion, sensing; depth 2 and 3) -- no autodiff in the reference;
* the escape direction at an exact depth-2 rank-k saddle, known analytically:
  lambda_min = -sigma*_{k+1}, eigenvector V = (e v*^T, u* e^T)/sqrt 2 with e a hidden
  direction the factors do not use, so D1 = 0 and D2 = u* v*^T / 2;
* the W-map of a factor direction against the hand-expanded NumPy products;
* the best rank-k fit (plateau levels of completion/sensing) against Eckart-Young and
  against SciPy's L-BFGS from many starts.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize

from jaxlab import dmf
from jaxlab.dmf import data, hessian, models


def _chain(ms, n):
    out = np.eye(n)
    for m in ms:
        out = m @ out
    return out


def _np_grad(fs, target, mask, meas, reduction):
    """dl/dW_i from the chain-rule formula, NumPy only."""
    n = target.shape[0]
    w = _chain(fs, n)
    if meas is not None:
        a, y = meas
        r = np.einsum("kij,ij->k", a, w) - y
        g = np.einsum("k,kij->ij", r, a)
        count = len(y)
    else:
        g = (w - target) * (1.0 if mask is None else mask)
        count = target.size if mask is None else mask.sum()
    g = g if reduction == "half_sum" else 2.0 * g / count
    return [_chain(fs[i + 1:], n).T @ g @ _chain(fs[:i], n).T for i in range(len(fs))]


def _fd_hessian(fs, target, mask, meas, reduction, h=1e-5):
    shapes = [f.shape for f in fs]
    x0 = np.concatenate([f.ravel() for f in fs])
    split = np.cumsum([np.prod(s) for s in shapes])[:-1]
    unflat = lambda x: [p.reshape(s) for p, s in zip(np.split(x, split), shapes)]
    grad = lambda x: np.concatenate([g.ravel() for g in _np_grad(unflat(x), target, mask, meas, reduction)])
    cols = []
    for j in range(x0.size):
        e = np.zeros_like(x0)
        e[j] = h
        cols.append((grad(x0 + e) - grad(x0 - e)) / (2 * h))
    return np.stack(cols, 1)


@pytest.mark.parametrize("depth,obs", [pytest.param(2, "full", marks=pytest.mark.slow),
                                       pytest.param(3, "full", marks=pytest.mark.slow), (3, "completion"),
                                       (2, "sensing")])
def test_hessian_matches_finite_differences_of_a_numpy_gradient(depth, obs):
    n = 4
    with jax.enable_x64(True):
        target = dmf.low_rank_target(jax.random.key(0), n, 2, (3.0, 1.5))
        fs = dmf.init_factors(jax.random.key(1), n, depth, 0.7)
        mask = data.random_mask(jax.random.key(2), (n, n), 10) if obs == "completion" else None
        meas = data.random_sensing(jax.random.key(3), target, 12) if obs == "sensing" else None
        red = "half_sum" if obs == "full" else "mean"
        h = np.asarray(dmf.dense_hessian(fs, target, mask, meas, red))
        lam = float(dmf.hessian_min_eig(fs, target, mask, key=jax.random.key(4), num_iters=64,
                                        measurements=meas, loss_reduction=red))
    np_meas = None if meas is None else tuple(np.asarray(x) for x in meas)
    ref = _fd_hessian([np.asarray(f) for f in fs], np.asarray(target), None if mask is None else np.asarray(mask),
                      np_meas, red)
    scale = np.abs(ref).max()
    np.testing.assert_allclose(h, ref, atol=1e-7 * scale)
    ev = np.linalg.eigvalsh(0.5 * (ref + ref.T))
    np.testing.assert_allclose(lam, ev[0], atol=1e-6 * scale)
    assert ev[0] < -1e-3 * scale  # a point with negative curvature: lambda_min is not trivially 0


@pytest.mark.parametrize("k", [0, 1, 2])
def test_escape_direction_at_an_exact_depth2_saddle(k):
    n, sig = 5, (3.0, 2.0, 1.0)
    with jax.enable_x64(True):
        target = np.asarray(dmf.low_rank_target(jax.random.key(5), n, 3, sig))
        u, s, vt = np.linalg.svd(target)
        w1, w2 = np.zeros((n, n)), np.zeros((n, n))
        w1[:k] = np.sqrt(s[:k])[:, None] * vt[:k]  # the rank-k critical point, balanced factors
        w2[:, :k] = u[:, :k] * np.sqrt(s[:k])
        g = _np_grad([w1, w2], target, None, None, "half_sum")
        assert max(np.abs(x).max() for x in g) < 1e-12  # a critical point
        lo, hi, vec = hessian.hessian_extremes([w1, w2], jnp.asarray(target), key=jax.random.key(6), num_iters=50)
        d1, d2 = (np.asarray(x) for x in hessian.end_to_end_directions([w1, w2], vec))
        ue, ve = hessian.escape_direction([w1, w2], vec)
    np.testing.assert_allclose(float(lo), -sig[k], rtol=1e-9)
    assert np.linalg.norm(d1) < 1e-9 and np.linalg.norm(d2) == pytest.approx(0.5, rel=1e-8)
    assert abs(ue @ u[:, k]) * abs(ve @ vt[k]) > 1 - 1e-9
    # and not with any other target pair
    for j in set(range(3)) - {k}:
        assert abs(ue @ u[:, j]) * abs(ve @ vt[j]) < 1e-6


def test_end_to_end_directions_match_the_expanded_products():
    rng = np.random.default_rng(0)
    fs = [rng.standard_normal((3, 3)) for _ in range(3)]
    vs = [rng.standard_normal((3, 3)) for _ in range(3)]
    with jax.enable_x64(True):
        d1, d2 = (np.asarray(x) for x in hessian.end_to_end_directions(fs, vs))
    w1, w2, w3 = fs
    v1, v2, v3 = vs
    np.testing.assert_allclose(d1, w3 @ w2 @ v1 + w3 @ v2 @ w1 + v3 @ w2 @ w1, rtol=1e-12)
    np.testing.assert_allclose(d2, w3 @ v2 @ v1 + v3 @ w2 @ v1 + v3 @ v2 @ w1, rtol=1e-12)


def test_best_rank_k_fit_levels():
    with jax.enable_x64(True):
        target = np.asarray(dmf.low_rank_target(jax.random.key(0), 6, 3, (10.0, 5.0, 2.0)))
        mask = np.asarray(data.random_mask(jax.random.key(1), (6, 6), 24))
    # full observation: Eckart-Young, also through the ALS path (a mask of ones)
    np.testing.assert_allclose(models.best_rank_k_losses(target, np.ones((6, 6)), loss_reduction="half_sum",
                                                         max_rank=3), [64.5, 14.5, 2.0], rtol=1e-8)
    lv = models.best_rank_k_losses(target, mask, max_rank=3, restarts=4)
    np.testing.assert_allclose(lv[0], np.sum(mask * target**2) / 24, rtol=1e-12)
    # rank 1: L-BFGS from 20 starts (an independent optimiser) finds no better fit
    f = lambda x: np.sum(mask * (np.outer(x[:6], x[6:]) - target) ** 2) / 24
    rng = np.random.default_rng(0)
    best = min(scipy.optimize.minimize(f, rng.standard_normal(12), method="L-BFGS-B").fun for _ in range(20))
    assert lv[1] == pytest.approx(best, rel=1e-6)
    assert lv[0] > lv[1] > lv[2] > 0


def test_hessian_lambda_max_bounds_the_stable_step():
    """2 / lambda_max is GD's stability limit: just below it GD converges, above it diverges
    (depth 1 = a quadratic, whose Hessian is the identity times 1: limit lr = 2)."""
    with jax.enable_x64(True):
        target = dmf.low_rank_target(jax.random.key(0), 4, 2, (3.0, 1.0))
        fs = [jnp.zeros((4, 4))]
        _, hi, _ = hessian.hessian_extremes(fs, target, key=jax.random.key(1), num_iters=20)
        assert float(hi) == pytest.approx(1.0, rel=1e-12)
        for lr in (1.9, 2.1):
            tr = dmf.train(fs, target, lr=lr, steps=200, log_every=200)
            w = np.asarray(tr.factors[0])
            err = np.linalg.norm(w - np.asarray(target))
            assert (err < 1e-3) == (lr < 2.0 / float(hi)), (lr, err)
