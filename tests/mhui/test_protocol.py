"""The validation-split protocol: split, threshold, detector choice, best-of PGD."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab.mhui import metrics, protocol, rng


def test_split_is_disjoint_covering_and_seeded():
    v, t = protocol.split_val_test(101, seed=3)
    assert len(v) == 50 and len(t) == 51 and not set(v) & set(t) and set(v) | set(t) == set(range(101))
    v2, _ = protocol.split_val_test(101, seed=3)
    v3, _ = protocol.split_val_test(101, seed=4)
    np.testing.assert_array_equal(v, v2)
    assert not np.array_equal(v, v3)
    with pytest.raises(ValueError, match="empty"):
        protocol.split_val_test(3, seed=0, val_fraction=0.01)


def test_tpr_at_fpr_hand_worked():
    # threshold = 95% quantile of 0..99 = 94.05: positives 95, 99, 200 pass, 50 does not
    tpr, fpr = protocol.tpr_at_fpr(np.arange(100.0), np.arange(100.0), np.array([50.0, 95, 99, 200]), 0.05)
    assert tpr == 0.75 and fpr == 0.05


def test_choose_detector_flips_an_inverted_score():
    r = np.random.default_rng(0)
    # MSP: adversarial inputs *more* confident than clean ones -> the chosen sign is -1
    clean = r.normal(size=(1, 200, 10)) + 4.0 * np.eye(10)[r.integers(0, 10, 200)]
    adv = r.normal(size=(1, 150, 10)) + 9.0 * np.eye(10)[r.integers(0, 10, 150)]
    det, auc, table = protocol.choose_detector("MSP", clean, [adv[:, :70], adv[:, 70:]], num_heads=1)
    raw = dict((c.score, a) for c, a in table)
    assert det.sign == -1.0 and auc == pytest.approx(1.0 - raw[det.score]) and auc > 0.9
    # the signed score of the choice reproduces its AUROC
    s_c = np.asarray(protocol.signed_score(det, jnp.asarray(clean)))
    s_a = np.asarray(protocol.signed_score(det, jnp.asarray(adv)))
    assert metrics.auroc(s_c, s_a) == pytest.approx(auc)


def test_mhui_candidates_cover_heads_estimators_scores():
    cands = protocol._candidates("MH-UI", 3)
    # subsets {01, 02, 12, 012} x 2 estimators x 6 scores, all distinct, sign +1 (the choice flips it)
    assert len(set(cands)) == len(cands) == 4 * 2 * 6
    assert {c.heads for c in cands} == {(0, 1), (0, 2), (1, 2), (0, 1, 2)}
    assert {c.combine for c in cands} == {"pooled", "minka_log"} and {c.sign for c in cands} == {1.0}
    # the choice scores every candidate: each table entry is that candidate's AUROC, computed alone
    z = np.random.default_rng(1).normal(size=(2, 40, 5))
    adv = z[:, :20] * 3.0
    det, _, table = protocol.choose_detector("MH-UI", z, [adv[:, :12], adv[:, 12:]], num_heads=2)
    assert len(table) == 2 * 6 and det.method == "MH-UI" and det.heads == (0, 1)
    for cand, auc in table[::5]:
        neg, pos = protocol.signed_score(cand, jnp.asarray(z)), protocol.signed_score(cand, jnp.asarray(adv))
        assert auc == pytest.approx(metrics.auroc(np.asarray(neg), np.asarray(pos)), abs=1e-6)


def test_precision_score_is_minus_log_alpha0():
    z = jnp.asarray(np.random.default_rng(2).normal(size=(7, 5)))
    s = protocol.raw_scores("RKL Prior Net", z)
    np.testing.assert_allclose(np.asarray(s["precision"]), -np.log(np.exp(np.asarray(z)).sum(-1)), rtol=1e-5)


def test_best_of_pgd_keeps_the_lowest_score_misclassified_iterate():
    # 2 classes, logits (x.w, -x.w); label 0 everywhere; score = distance of x from a point c
    d, b = 6, 16
    r = np.random.default_rng(0)
    w = jnp.asarray(r.normal(size=d), jnp.float32)
    x = jnp.asarray(r.uniform(0.3, 0.7, size=(b, d)), jnp.float32)
    x = x.at[:, 0].add(jnp.where(jnp.arange(b) < 4, 10.0, 0.0))  # out of [0, 1]: kept apart below
    x = jnp.clip(x, 0, 1)
    y = jnp.zeros(b, jnp.int32)
    c = jnp.asarray(r.uniform(size=d), jnp.float32)
    margin_shift = jnp.asarray(r.uniform(-0.3, 0.3, size=b), jnp.float32) + jnp.where(jnp.arange(b) < 4, 50.0, 0.0)

    def logits(xx):
        m = xx @ w + margin_shift  # examples 0-3 cannot be flipped inside the ball
        return jnp.stack([m, -m], -1)

    def score(xx, k):
        return jnp.sum((xx - c) ** 2, -1)

    def check(xx, k):
        return logits(xx).argmax(-1) != y, score(xx, k)

    def objective(xx, k):
        z = logits(xx)
        return jnp.maximum(z[:, 0] - z[:, 1] + 0.5, 0.0) + 0.3 * score(xx, k)

    eps = 0.2
    bx, bs = protocol.best_of_pgd(objective, check, x, x, rng.key(0), eps=eps, step_size=0.02, num_steps=30)
    bx, bs = np.asarray(bx), np.asarray(bs)
    assert np.all(np.abs(bx - np.asarray(x)) <= eps + 1e-6) and bx.min() >= 0 and bx.max() <= 1
    found = np.isfinite(bs)
    assert not found[:4].any() and found[4:].sum() >= 3
    np.testing.assert_array_equal(bx[~found], np.asarray(x)[~found])
    mis, s = check(jnp.asarray(bx), None)
    assert np.all(np.asarray(mis)[found])
    np.testing.assert_allclose(np.asarray(s)[found], bs[found], rtol=1e-5)
    # the kept iterate is the best one: no iterate of the same trajectory is misclassified with a lower score
    xa, lowest = x, np.full(b, np.inf)
    m0, s0 = check(x, None)
    lowest = np.where(np.asarray(m0), np.asarray(s0), lowest)
    grad = jax.grad(lambda xx: jnp.sum(objective(xx, None)))
    replay = jax.jit(lambda xa: jnp.clip(x + jnp.clip(xa - 0.02 * jnp.sign(grad(xa)) - x, -eps, eps), 0, 1))
    check_jit = jax.jit(lambda xx: check(xx, None))
    for _ in range(30):
        xa = replay(xa)
        m, s_ = check_jit(xa)
        lowest = np.where(np.asarray(m), np.minimum(lowest, np.asarray(s_)), lowest)
    np.testing.assert_allclose(bs, lowest, rtol=1e-5)


def test_paired_difference_is_scipys_paired_t_interval():
    import scipy.stats

    from jaxlab.mhui import report

    a, b = np.array([0.84, 0.80, 0.90, 0.77]), np.array([0.86, 0.85, 0.88, 0.80])
    mean, half = report.paired_difference(a, b)
    ci = scipy.stats.ttest_rel(a, b).confidence_interval(0.95)
    assert mean == pytest.approx(np.mean(a - b)) and half == pytest.approx((ci.high - ci.low) / 2)
    # NaN pairs are dropped; one pair has no interval
    mean, half = report.paired_difference([0.5, np.nan, 0.7], [0.4, 0.3, 0.5])
    assert mean == pytest.approx(0.15) and half == pytest.approx(scipy.stats.t.ppf(0.975, 1) * np.std([0.1, 0.2],
                                                                                                     ddof=1) / 2 ** 0.5)
    assert np.isnan(report.paired_difference([0.5], [0.4])[1])
