import numpy as np
import scipy.stats
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxlab.scalenet import sampler
from jaxlab.scalenet.space import Space, SpaceConfig

SP = Space(SpaceConfig())
PAPER_GRID = SpaceConfig().mult_grid


def test_stage_probabilities_paper():
    np.testing.assert_allclose(sampler.stage_probabilities(SP), np.array([1, 4, 5, 7]) / 17)


def test_hierarchical_statistics():
    rng = np.random.default_rng(0)
    n = 100_000
    archs, r, info = sampler.sample_batch(SP, rng, n)
    s = info["stage"]
    counts = np.bincount(s, minlength=4)
    p = scipy.stats.chisquare(counts, n * np.array([1, 4, 5, 7]) / 17).pvalue
    assert p > 1e-3
    # d, w uniform within the stage grid; r in R_s
    for k in range(4):
        sel = s == k
        grid = np.asarray(PAPER_GRID[k])
        dk = info["d"][sel]
        assert np.all(np.isin(dk, grid)) and np.all(np.isin(r[sel], SP.cfg.res_grid[k]))
        if len(grid) > 1:
            c = np.array([(np.isclose(dk, g)).sum() for g in grid])
            assert scipy.stats.chisquare(c).pvalue > 1e-3
    base = info["base"]
    depth = SP.base_depths(base)
    for st_ in range(SP.num_stages):
        c = np.bincount(depth[:, st_], minlength=SP.n_max[st_] + 1)[1:]
        assert scipy.stats.chisquare(c).pvalue > 1e-3  # n_b ~ U{1..n_max}
    ops = archs["ops"]
    for st_ in range(SP.num_stages):
        so = ops[:, SP.layer_stage == st_]
        nb = depth[:, st_]
        n_expect = np.minimum(np.ceil(nb * info["d"] - 1e-9).astype(int), SP.n_super[st_])
        n_got = (so != 0).sum(1)
        np.testing.assert_array_equal(n_got, n_expect)  # n = ceil(n_b d)
        # id only at the tail; copies of the last base op
        for i in range(0, n, 997):
            row = so[i]
            assert np.all(row[: n_got[i]] != 0) and np.all(row[n_got[i]:] == 0)
            assert np.all(row[nb[i]: n_got[i]] == row[nb[i] - 1])
    # ops uniform over kernels among the drawn base layers
    drawn = base[base != 0]
    assert scipy.stats.chisquare(np.bincount(drawn)[1:]).pvalue > 1e-3


def test_uniform_sampler_ignores_hierarchy():
    rng = np.random.default_rng(1)
    _, r, info = sampler.sample_batch(SP, rng, 20_000, kind="uniform")
    mults = np.unique(np.concatenate([np.asarray(g) for g in PAPER_GRID]))
    c = np.array([np.isclose(info["d"], m).sum() for m in mults])
    assert scipy.stats.chisquare(c).pvalue > 1e-3
    # same marginal of d, but the hierarchical sampler couples d, w and r to one stage
    archs, r2, info2 = sampler.sample_batch(SP, rng, 20_000)
    stage_of = lambda m: np.searchsorted(np.array([1.02, 1.18, 1.38]), m)
    assert np.all(stage_of(info2["d"]) == stage_of(info2["w"]))
    assert np.mean(stage_of(info["d"]) == stage_of(info["w"])) < 0.5
    one = sampler.sample(SP, rng, "uniform")
    assert one[0]["ops"].shape == (SP.num_layers,)


def _place(genes):
    """Base genes at the leading super-layers of each stage, without canonicalisation."""
    ops = np.zeros(SP.num_layers, np.int32)
    for s in range(SP.num_stages):
        cols = np.nonzero(SP.layer_stage == s)[0][: SP.n_max[s]]
        ops[cols] = genes[SP.base_stage == s]
    return ops


genes_st = st.lists(st.integers(0, SP.num_ops), min_size=SP.num_genes, max_size=SP.num_genes).map(np.array)


@settings(deadline=None, max_examples=50)
@given(genes_st, st.sampled_from([1.0, 1.2, 1.64]))
def test_check_basenet_properties(genes, w):
    genes = np.maximum(genes, SP.gene_lower)
    c = SP.canonical_base(genes)
    np.testing.assert_array_equal(SP.canonical_base(c), c)
    ch = np.ceil(SP.base_channels * w - 1e-9).astype(int)
    raw = SP.macs({"ops": _place(genes), "channels": ch}, 14)
    can = SP.macs({"ops": _place(c), "channels": ch}, 14)
    assert raw == can
    for s in range(SP.num_stages):
        assert sorted(genes[SP.base_stage == s]) == sorted(c[SP.base_stage == s])


def test_flops_ladder_feasible():
    base = SP.canonical_base(np.array([1, 2, 2, 1, 1, 2]))
    f0 = SP.base_macs(base)
    for s in range(1, 4):
        t = SP.scaling_triples(s)
        f = np.array([SP.macs(SP.scale(base, d, w), int(r)) for d, w, r in t])
        tol = 0.25 * f0 * 2 ** s
        assert np.any(np.abs(f - f0 * 2 ** s) <= tol), s
