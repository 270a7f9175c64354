import numpy as np
import pytest

from jaxlab.core import stats


def test_mean_ci_matches_a_hand_computed_t_interval():
    v = [1.0, 2.0, 3.0, 4.0]
    m, half, n = stats.mean_ci(v)
    # t_{0.975, 3} = 3.182446; s = sqrt(5/3); half = t * s / 2
    assert (m, n) == (2.5, 4)
    assert half == pytest.approx(3.182446 * np.sqrt(5 / 3) / 2, rel=1e-6)


def test_mean_ci_coverage_on_gaussian_draws():
    rng = np.random.default_rng(0)
    hits = 0
    for _ in range(2000):
        m, half, _ = stats.mean_ci(rng.normal(1.0, 2.0, 5))
        hits += abs(m - 1.0) <= half
    assert 0.93 < hits / 2000 < 0.97


def test_paired_diff_cancels_shared_seed_variation_and_drops_nan():
    base = np.array([0.3, 0.9, 0.5, 0.7, 0.1])
    d, half, n = stats.paired_diff(base + 0.02 + np.array([0, 1e-3, -1e-3, 0, 0]), base)
    assert d == pytest.approx(0.02) and half < 0.002 and n == 5
    _, _, n = stats.paired_diff([1.0, np.nan, 2.0], [0.0, 0.0, 0.0])
    assert n == 2
    with pytest.raises(ValueError, match="as many values"):
        stats.paired_diff([1.0], [1.0, 2.0])


def test_fmt_ci():
    assert stats.fmt_ci(0.72, 0.0191) == "0.720 ± 0.019"
    assert stats.fmt_ci(0.72, float("nan")) == "0.720"
    assert stats.fmt_ci(float("nan"), float("nan")) == "-"
    assert stats.fmt_ci(0.0123, 0.001, 1, scale=100) == "1.2 ± 0.1"
