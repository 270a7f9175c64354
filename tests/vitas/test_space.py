"""Cyclic channel usage, identity shifting and p_id tuning (NumPy only)."""

import dataclasses
import itertools

import numpy as np
import pytest

from jaxlab.nas import encoding, widths
from jaxlab.vitas.configs import get_config
from jaxlab.vitas.space import ArchError, Space


def test_paper_cyclic_offsets_and_usage():
    sp = Space(get_config("paper").space)
    assert sp.embed_widths.tolist() == [38, 77, 115, 154, 192, 230, 269, 307, 346, 384]
    assert sp.offsets.tolist() == [0, 38, 115, 230, 0, 192, 38, 307, 230, 192]
    u = widths.channel_usage(384, sp.embed_widths, "cyclic", offsets=sp.offsets)
    assert set(np.unique(u).tolist()) == {5.0, 6.0}
    pre = widths.channel_usage(384, sp.embed_widths, "prefix")
    assert pre.min() == 1 and pre.max() == 10


@pytest.mark.parametrize("seed", range(20))
def test_cyclic_usage_max_min_and_exact_uniformity(seed):
    rng = np.random.default_rng(seed)
    c = int(rng.integers(5, 60))
    k = int(rng.integers(1, 8))
    ds = rng.integers(1, c + 1, k)
    if seed % 2:  # force sum(d) = 0 mod C with the last width
        ds[-1] = (-ds[:-1].sum()) % c or c
    sp_off = widths.default_cyclic_offsets(c, ds)
    u = np.zeros(c)
    for d, s in zip(ds, sp_off):
        u[(s + np.arange(d)) % c] += 1  # independent count of the windows
    assert u.max() - u.min() <= 1
    assert (u.max() == u.min()) == (ds.sum() % c == 0)


def _space():
    return Space(dataclasses.replace(get_config("default").space, depth=5))


def test_identity_shifting_idempotent_flops_preserving():
    sp = _space()
    archs = sp.sample(np.random.default_rng(0), 200, 0.4, shift=False)
    can = sp.canonical(archs)
    again = sp.canonical(can)
    for k in archs:
        np.testing.assert_array_equal(again[k], can[k])
    np.testing.assert_allclose(sp.flops(can), sp.flops(archs))
    # active ops first, in their original order, each with its own ratios
    for i in range(20):
        act = archs["ops"][i] > 0
        d = int(act.sum())
        np.testing.assert_array_equal(can["ops"][i][:d], archs["ops"][i][act])
        np.testing.assert_array_equal(can["qkv"][i][:d], archs["qkv"][i][act])
        np.testing.assert_array_equal(can["mlp"][i][:d], archs["mlp"][i][act])
        assert (can["ops"][i][d:] == 0).all()
    np.testing.assert_array_equal(can["ops"], encoding.canonicalize_ops_np(archs["ops"], np.zeros(5, int)))


def test_identity_shifting_collapses_all_placements():
    sp = _space()
    L, ops, qkv, mlp = 5, [3, 1], [2, 0], [1, 3]
    placements = list(itertools.combinations(range(L), 2))
    assert len(placements) == 10  # C(5, 2)
    rows = []
    for pos in placements:
        a = {"patch": np.int32(1), "embed": np.int32(2), "ops": np.zeros(L, np.int32),
             "qkv": np.random.default_rng(len(rows)).integers(0, 4, L).astype(np.int32),
             "mlp": np.random.default_rng(99 + len(rows)).integers(0, 4, L).astype(np.int32)}
        for j, p in enumerate(pos):
            a["ops"][p], a["qkv"][p], a["mlp"][p] = ops[j], qkv[j], mlp[j]
        c = sp.canonical({k: np.asarray(v)[None] for k, v in a.items()})
        rows.append(sp.to_genome(c)[0])
    assert len(encoding.unique_rows(np.stack(rows))) == 1


def test_p_id_tuning_reaches_band_and_refuses_impossible_band():
    sp = _space()
    m = sp.max_flops()
    band = (0.2 * m, 0.25 * m)
    p, f = sp.tune_p_id(band, samples=300)
    assert band[0] <= f <= band[1]
    f_check = sp.flops(sp.sample(np.random.default_rng(0), 300, p)).mean()
    assert band[0] <= f_check <= band[1]
    with pytest.raises(ArchError, match="FLOPs band"):
        sp.tune_p_id((2 * m, 3 * m), samples=100)


def test_bad_architecture_is_named():
    sp = _space()
    a = {k: v[0] for k, v in sp.sample(np.random.default_rng(0), 1, 0.2).items()}
    a["ops"] = a["ops"].copy()
    a["ops"][0] = 9
    with pytest.raises(ArchError, match="'ops'"):
        sp.check(a)
    with pytest.raises(ArchError, match="lacks"):
        sp.check({"patch": 0})
