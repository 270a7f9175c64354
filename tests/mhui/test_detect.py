"""Detectors and Prior-Network losses against independent NumPy/SciPy computations."""

import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special
import scipy.stats

from jaxlab.core.config import ConfigError
from jaxlab.mhui import configs, detect, train


def _np_softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _np_pooled_alpha(p):
    m, v = p.mean(0), np.maximum(p.var(0, ddof=1), 1e-12)
    a0 = np.maximum((m * (1 - m)).sum(-1) / v.sum(-1) - 1, 1e-3)
    return m * a0[:, None]


def _np_dir_kl(a, b):
    """KL[Dir(a) || Dir(b)] row by row, SciPy special functions in float64."""
    a0, b0 = a.sum(-1), b.sum(-1)
    return (scipy.special.gammaln(a0) - scipy.special.gammaln(a).sum(-1) - scipy.special.gammaln(b0)
            + scipy.special.gammaln(b).sum(-1)
            + ((a - b) * (scipy.special.digamma(a) - scipy.special.digamma(a0)[:, None])).sum(-1))


LOGITS = np.random.default_rng(0).normal(size=(4, 7, 5)).astype(np.float32) * 2


def test_select_heads_matches_numpy_indexing():
    z = jnp.asarray(LOGITS)
    np.testing.assert_array_equal(np.asarray(detect.select_heads(z, ())), LOGITS)
    np.testing.assert_array_equal(np.asarray(detect.select_heads(z, (1, 3))), LOGITS[[1, 3]])
    np.testing.assert_array_equal(np.asarray(detect.select_heads(z, (-1, 0))), LOGITS[[3, 0]])
    with pytest.raises(ConfigError, match="detect.heads"):
        detect.select_heads(z, (0, 4))


@pytest.mark.parametrize("temperature", [0.5, 1.0, 3.0])
def test_head_temperature_divides_the_logits_before_softmax(temperature):
    dcfg = dataclasses.replace(configs.DetectConfig(), heads=(1, 2, 3), head_temperature=temperature)
    got = detect.mhui_scores(jnp.asarray(LOGITS), dcfg)
    alpha = _np_pooled_alpha(_np_softmax(LOGITS[1:].astype(np.float64) / temperature))
    np.testing.assert_allclose(np.asarray(got["precision"]), -alpha.sum(-1), rtol=2e-4)
    np.testing.assert_allclose(np.asarray(got["entropy"]), scipy.stats.entropy(alpha, axis=-1), rtol=1e-4)
    if temperature != 1.0:  # the temperature matters
        base = detect.mhui_scores(jnp.asarray(LOGITS), dataclasses.replace(dcfg, head_temperature=1.0))
        assert not np.allclose(np.asarray(base["precision"]), np.asarray(got["precision"]), rtol=1e-3)


def test_prior_net_scores_match_scipy():
    z = LOGITS[0]
    s = {k: np.asarray(v) for k, v in detect.prior_net_scores(jnp.asarray(z)).items()}
    alpha = np.exp(z.astype(np.float64))
    np.testing.assert_allclose(s["precision"], -alpha.sum(-1), rtol=1e-5)
    np.testing.assert_allclose(s["diff_entropy"], [scipy.stats.dirichlet(a).entropy() for a in alpha],
                               rtol=1e-3, atol=2e-3)
    np.testing.assert_allclose(s["max_prob"], -_np_softmax(z).max(-1), rtol=1e-5)
    np.testing.assert_allclose(s["epkl"], 4.0 / alpha.sum(-1), rtol=1e-5)


def test_sample_method_scores_match_numpy():
    dcfg = configs.DetectConfig()
    sample, dirich = detect.sample_method_scores(jnp.asarray(LOGITS), dcfg)
    p = _np_softmax(LOGITS.astype(np.float64))
    mean = p.mean(0)
    np.testing.assert_allclose(np.asarray(sample["entropy"]), scipy.stats.entropy(mean, axis=-1), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(sample["mutual_info"]),
                               scipy.stats.entropy(mean, axis=-1) - scipy.stats.entropy(p, axis=-1).mean(0),
                               rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(np.asarray(sample["max_prob"]), -mean.max(-1), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(dirich["precision"]), -_np_pooled_alpha(p).sum(-1), rtol=2e-4)


@pytest.mark.parametrize("loss_fn, forward", [(train.rkl_loss, False), (train.fkl_loss, True)])
def test_prior_net_losses_match_scipy_and_vanish_at_the_target(loss_fn, forward):
    rng = np.random.default_rng(2)
    zin, zood = rng.normal(size=(6, 5)), rng.normal(size=(4, 5))
    y = rng.integers(0, 5, size=6)
    kw = {"target_concentration": 50.0, "smoothing": 0.1, "ood_weight": 0.7}
    target = 1.0 + 50.0 * (0.9 * np.eye(5)[y] + 0.1 / 5)
    a_in, a_ood = np.exp(zin), np.exp(zood)
    flat = np.ones_like(a_ood)
    pairs = [(target, a_in), (flat, a_ood)] if forward else [(a_in, target), (a_ood, flat)]
    expected = _np_dir_kl(*pairs[0]).mean() + 0.7 * _np_dir_kl(*pairs[1]).mean()
    got = float(loss_fn(jnp.asarray(zin, jnp.float32), jnp.asarray(y), jnp.asarray(zood, jnp.float32), **kw))
    assert got == pytest.approx(expected, rel=1e-4)
    # logits = log(target) and flat OOD logits = 0 give a zero loss (KL of equal Dirichlets)
    zero = float(loss_fn(jnp.asarray(np.log(target), jnp.float32), jnp.asarray(y), jnp.zeros((4, 5)), **kw))
    assert zero == pytest.approx(0.0, abs=2e-3)
    # the two losses differ: the KL is not symmetric
    other = train.rkl_loss if forward else train.fkl_loss
    assert abs(float(other(jnp.asarray(zin, jnp.float32), jnp.asarray(y), jnp.asarray(zood, jnp.float32), **kw))
               - got) > 1e-2
