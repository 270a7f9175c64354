"""AUROC/AUPR against scikit-learn and the Mann-Whitney U statistic."""

import numpy as np
import pytest
import scipy.stats
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import average_precision_score, roc_auc_score

from jaxlab.mhui import metrics


@settings(deadline=None, max_examples=60)
@given(st.lists(st.integers(0, 6), min_size=1, max_size=30),
       st.lists(st.integers(0, 6), min_size=1, max_size=30))
def test_auroc_aupr_match_sklearn_with_ties(neg, pos):
    neg, pos = np.asarray(neg, float), np.asarray(pos, float)
    y = np.r_[np.zeros(neg.size), np.ones(pos.size)]
    s = np.r_[neg, pos]
    assert metrics.auroc(neg, pos) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert metrics.aupr(neg, pos) == pytest.approx(average_precision_score(y, s), abs=1e-12)


def test_auroc_is_mann_whitney():
    rng = np.random.default_rng(0)
    neg, pos = rng.normal(size=300), rng.normal(0.5, size=200)
    u = scipy.stats.mannwhitneyu(pos, neg).statistic
    assert metrics.auroc(neg, pos) == pytest.approx(u / (300 * 200))


def test_perfect_and_reversed():
    assert metrics.auroc([0, 1], [2, 3]) == 1.0
    assert metrics.auroc([2, 3], [0, 1]) == 0.0
    assert metrics.aupr([0, 1], [2, 3]) == 1.0


def test_detection_metrics_successful_only():
    clean = np.array([0.0, 0.1, 0.2, 0.3])
    adv = np.array([1.0, -1.0, 2.0, -2.0])
    success = np.array([True, False, True, False])
    out = metrics.detection_metrics(clean, adv, success)
    assert out["auroc_success"] == 1.0 and out["n_success"] == 2
    assert out["auroc"] == pytest.approx(0.5)
    out = metrics.detection_metrics(clean, adv, np.zeros(4, bool))
    assert np.isnan(out["auroc_success"])


def test_errors():
    with pytest.raises(ValueError, match="at least one"):
        metrics.auroc([], [1.0])
    with pytest.raises(ValueError, match="NaN"):
        metrics.auroc([np.nan], [1.0])
