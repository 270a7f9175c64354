"""Moment matching and Dirichlet scores against sampling, SciPy and analytic values."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special
import scipy.stats

from jaxlab.mhui import dirichlet


def _draw(alpha, h, b, seed):
    """`[H, B, K]` samples of Dir(alpha) (one alpha for every example), drawn by NumPy."""
    return jnp.asarray(np.random.default_rng(seed).dirichlet(alpha, size=(h, b)), jnp.float32)


@pytest.mark.parametrize("combine", ["pooled", "minka_log"])
def test_moment_match_recovers_alpha_with_shrinking_error(combine):
    alpha = np.array([4.0, 2.0, 1.0, 6.0, 3.0])  # alpha_0 = 16
    errors = {}
    for h in (4, 32, 512):
        tol = 1.2 / np.sqrt(h)  # measured: ~0.34-0.42 at H=4, ~0.1 at 32, ~0.025 at 512
        est = np.asarray(dirichlet.dirichlet_moment_match(_draw(alpha, h, 400, seed=h), combine=combine))
        a0 = est.sum(-1)
        err = np.median(np.abs(np.log(a0 / alpha.sum())))
        errors[h] = err
        assert err < tol, (combine, h, err)
        if h == 512:
            # the mean direction alpha / alpha_0 is recovered as well
            np.testing.assert_allclose(np.median(est / a0[:, None], 0), alpha / alpha.sum(), atol=0.01)
    assert errors[4] > errors[32] > errors[512]


def test_moment_match_exact_on_two_point_design():
    # H = 2, K = 2: p = (m +- d, 1 - m -+ d) gives m = (m, 1-m), v_k = 2 d^2 (unbiased)
    m, d = 0.3, 0.1
    probs = jnp.array([[[m + d, 1 - m - d]], [[m - d, 1 - m + d]]])
    a0 = m * (1 - m) / (2 * d * d) - 1
    for combine in ["pooled", "minka_log"]:
        est = dirichlet.dirichlet_moment_match(probs, combine=combine)
        np.testing.assert_allclose(np.asarray(est)[0], [m * a0, (1 - m) * a0], rtol=1e-5)


def test_permuting_classes_permutes_alpha():
    probs = jax.nn.softmax(np.random.default_rng(0).normal(size=(5, 7, 6)).astype(np.float32) * 2, -1)
    perm = np.array([3, 0, 5, 1, 4, 2])
    a = dirichlet.dirichlet_moment_match(probs)
    b = dirichlet.dirichlet_moment_match(probs[..., perm])
    np.testing.assert_allclose(np.asarray(b), np.asarray(a)[:, perm], rtol=1e-5)


def test_identical_heads_hit_variance_clamp():
    p = jax.nn.softmax(jnp.array([[1.0, 2.0, 0.5]]))
    probs = jnp.stack([p, p, p])
    alpha = dirichlet.dirichlet_moment_match(probs, var_floor=1e-12)
    a0 = float(alpha.sum())
    assert np.isfinite(a0) and a0 > 1e9
    scores = dirichlet.dirichlet_scores(alpha)
    assert all(np.all(np.isfinite(np.asarray(v))) for v in scores.values())


def test_negative_per_class_precision_is_guarded():
    # heads that disagree completely: v_k > m_k (1 - m_k) for every class
    probs = jnp.array([[[1.0, 0.0]], [[0.0, 1.0]]])
    for combine in ["pooled", "minka_log"]:
        alpha = dirichlet.dirichlet_moment_match(probs, combine=combine, min_precision=1e-3)
        assert np.all(np.isfinite(np.asarray(alpha)))
        assert float(alpha.sum()) == pytest.approx(1e-3, rel=1e-4)


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="H >= 2"):
        dirichlet.dirichlet_moment_match(jnp.ones((1, 2, 3)) / 3)
    with pytest.raises(ValueError, match=r"\[H, B, K\]"):
        dirichlet.dirichlet_moment_match(jnp.ones((2, 3)) / 3)
    with pytest.raises(ValueError, match="combine"):
        dirichlet.dirichlet_moment_match(jnp.ones((2, 1, 3)) / 3, combine="median")


def test_scores_match_scipy_and_monte_carlo():
    rng = np.random.default_rng(0)
    alpha = rng.uniform(0.3, 20.0, size=(6, 5))
    s = {k: np.asarray(v) for k, v in dirichlet.dirichlet_scores(jnp.asarray(alpha, jnp.float32)).items()}
    a0 = alpha.sum(-1)
    m = alpha / a0[:, None]
    np.testing.assert_allclose(s["precision"], -a0, rtol=1e-5)
    np.testing.assert_allclose(s["epkl"], 4.0 / a0, rtol=1e-5)
    np.testing.assert_allclose(s["max_prob"], -m.max(-1), rtol=1e-5)
    np.testing.assert_allclose(s["entropy"], scipy.stats.entropy(m, axis=-1), rtol=1e-5)
    de = [scipy.stats.dirichlet(a).entropy() for a in alpha]
    np.testing.assert_allclose(s["diff_entropy"], de, rtol=1e-4, atol=1e-3)
    # mutual information = H[E p] - E H[p], the expectation by Monte Carlo
    for i, a in enumerate(alpha):
        p = rng.dirichlet(a, size=200_000)
        exp_ent = np.mean(-np.sum(scipy.special.xlogy(p, p), -1))
        mi = scipy.stats.entropy(m[i]) - exp_ent
        assert s["mutual_info"][i] == pytest.approx(mi, abs=3e-3)


def test_scores_finite_at_tiny_alpha():
    alpha = dirichlet.dirichlet_moment_match(jnp.array([[[1.0, 0.0, 0.0]], [[0.0, 0.0, 1.0]]]))
    for name, v in dirichlet.dirichlet_scores(alpha).items():
        assert np.all(np.isfinite(np.asarray(v))), name


def test_sample_scores_match_numpy():
    probs = np.asarray(jax.nn.softmax(np.random.default_rng(1).normal(size=(8, 4, 5)).astype(np.float32), -1))
    s = dirichlet.sample_scores(jnp.asarray(probs))
    mean = probs.mean(0)
    ent = scipy.stats.entropy(mean, axis=-1)
    np.testing.assert_allclose(np.asarray(s["entropy"]), ent, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(s["mutual_info"]),
                               ent - scipy.stats.entropy(probs, axis=-1).mean(0), rtol=1e-4, atol=1e-6)


def _np_minka_log(probs, floor=1e-3):
    """Minka's log-mean precision over all K classes, in float64 NumPy (an independent computation)."""
    p = np.asarray(probs, np.float64)
    m, v = p.mean(0), np.maximum(p.var(0, ddof=1), 1e-12)
    per_class = np.maximum(m * (1 - m) / v - 1, floor)
    a0 = np.maximum(np.exp(np.log(per_class).mean(-1)), floor)
    return m * a0[:, None]


def test_minka_log_uses_every_class_and_matches_numpy():
    probs = np.asarray(jax.nn.softmax(np.random.default_rng(3).normal(size=(4, 9, 5)).astype(np.float32) * 1.5, -1))
    est = np.asarray(dirichlet.dirichlet_moment_match(jnp.asarray(probs), combine="minka_log"))
    np.testing.assert_allclose(est, _np_minka_log(probs), rtol=2e-4)
    # changing only how the heads spread on the last class changes alpha_0
    shifted = probs.copy()
    shifted[0, :, -1] += 0.05
    shifted[0, :, 0] -= 0.05
    shifted = np.clip(shifted, 1e-6, None)
    a = np.asarray(dirichlet.dirichlet_moment_match(jnp.asarray(shifted), combine="minka_log")).sum(-1)
    np.testing.assert_allclose(a, _np_minka_log(shifted).sum(-1), rtol=2e-4)


@pytest.mark.parametrize("combine", ["pooled", "minka_log"])
def test_permuting_classes_permutes_alpha_for_both_estimators(combine):
    probs = jax.nn.softmax(np.random.default_rng(5).normal(size=(3, 11, 6)).astype(np.float32) * 2, -1)
    for perm in (np.array([5, 0, 1, 2, 3, 4]), np.array([1, 2, 3, 4, 5, 0]), np.array([2, 4, 0, 5, 1, 3])):
        a = dirichlet.dirichlet_moment_match(probs, combine=combine)
        b = dirichlet.dirichlet_moment_match(probs[..., perm], combine=combine)
        np.testing.assert_allclose(np.asarray(b), np.asarray(a)[:, perm], rtol=1e-5)
