"""Helpers of the experiment studies: distinct-net counting, the uniform baseline, intervals."""

import dataclasses

import numpy as np
import pytest

from jaxlab.vitas import studies
from jaxlab.vitas.configs import get_config
from jaxlab.vitas.report import interval
from jaxlab.vitas.space import Space


def _space():
    return Space(dataclasses.replace(get_config("default").space, depth=4))


def test_distinct_counts_collapse_placements():
    sp = _space()
    # one net (ops 1, 2 with qkv 3, 1 and mlp 2, 0) in three placements, plus a different net
    rows = [([1, 0, 2, 0], [3, 0, 1, 0], [2, 0, 0, 0]),
            ([0, 1, 0, 2], [0, 3, 0, 1], [0, 2, 0, 0]),
            ([1, 2, 0, 0], [3, 1, 0, 0], [2, 0, 0, 0]),
            ([2, 1, 0, 0], [1, 3, 0, 0], [0, 2, 0, 0])]
    g = np.array([[0, 1, *o, *q, *m] for o, q, m in rows])
    assert studies.distinct_counts(sp, g) == {"n": 4, "distinct_encodings": 4, "distinct_nets": 2,
                                              "distinct_op_encodings": 4, "distinct_op_sequences": 2}
    # qkv/mlp entries of identity blocks do not make a different net
    g2 = g.copy()
    g2[0, 2 + 4 + 1] = 2
    assert studies.distinct_counts(sp, np.vstack([g, g2]))["distinct_nets"] == 2


def test_uniform_baseline_is_uniform_and_closest():
    sp = _space()
    rng = np.random.default_rng(0)
    L = sp.depth
    for target in (sp.max_flops() * 0.3, sp.max_flops() * 0.6):
        g = studies.uniform_baseline(sp, target)
        a = sp.from_genome(g[None])
        d = int((a["ops"][0] > 0).sum())
        assert (a["ops"][0][:d] == a["ops"][0][0]).all() and (a["ops"][0][d:] == 0).all()
        assert len(set(a["qkv"][0][:d])) == 1 and len(set(a["mlp"][0][:d])) == 1
        err = abs(float(sp.flops(a)[0]) - target)
        for _ in range(50):  # no random uniform net is closer
            h, q, m = rng.integers(1, len(sp.heads) + 1), rng.integers(0, 4), rng.integers(0, 4)
            dd = rng.integers(1, L + 1)
            ops = np.array([h] * dd + [0] * (L - dd))
            o = np.concatenate([[rng.integers(0, 2), rng.integers(0, 4)], ops, np.where(ops > 0, q, 0),
                                np.where(ops > 0, m, 0)])
            assert abs(float(sp.flops(sp.from_genome(o[None]))[0]) - target) >= err
    # a target that is exactly a uniform net's FLOPs is met exactly
    ops = np.array([3, 3, 3, 0])
    exact = np.concatenate([[1, 2], ops, np.where(ops > 0, 1, 0), np.where(ops > 0, 2, 0)])
    f = float(sp.flops(sp.from_genome(exact[None]))[0])
    assert float(sp.flops(sp.from_genome(studies.uniform_baseline(sp, f)[None]))[0]) == f


def test_interval_hand_value():
    m, h, n = interval([1.0, 2.0, 3.0])
    assert (m, n) == (2.0, 3)
    assert h == pytest.approx(4.302652729911275 / np.sqrt(3))  # t_{0.975, 2} * sd(=1) / sqrt(3)
    assert np.isnan(interval([0.5])[1]) and interval([None])[2] == 0
