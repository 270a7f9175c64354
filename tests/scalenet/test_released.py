"""The released family S0-S5 against both columns of the spec's table (sec. 2.6), and the
two FLOPs counting rules (official floor vs true ceil output sizes)."""

import numpy as np
import pytest

from jaxlab.core.config import ConfigError
from jaxlab.scalenet import configs, released, search
from jaxlab.scalenet.space import Space, SpaceConfig

PAPER = Space(configs.get_config("paper").space)

# spec sec. 2.6: stage -> (blocks, FLOPs by the official counter, MACs of the true shapes)
SPEC_TABLE = {0: (14, 355e6, 355e6), 1: (21, 805e6, 805e6), 2: (23, 1.51e9, 1.63e9), 3: (23, 2.77e9, 3.04e9),
              4: (26, 5.97e9, 6.42e9), 5: (28, 10.2e9, 10.9e9)}


@pytest.mark.parametrize("member", released.released_members(PAPER), ids=lambda m: f"S{m['stage']}")
def test_released_family_matches_both_columns(member):
    blocks, official, true = SPEC_TABLE[member["stage"]]
    sp, arch, r = member["space"], member["arch"], member["r"]
    assert int((np.asarray(arch["ops"]) != 0).sum()) == blocks  # S5: 28 blocks, deeper than the supernet
    assert abs(sp.macs(arch, r, rule="official") / official - 1) < 0.005
    assert abs(sp.macs(arch, r) / true - 1) < 0.005
    assert abs(search.scaled_macs(PAPER, released.released_base(PAPER), member["d"], member["w"], r, "official")
               / official - 1) < 0.005


def test_released_family_json_and_errors(tmp_path):
    fam = released.released_family(PAPER)
    assert sorted(fam["scaling"]) == ["1", "2", "3"] and sorted(fam["extrapolated"]) == ["4", "5"]
    rows = search.family(PAPER, fam["base"], {int(k): tuple(v) for k, v in {**fam["scaling"],
                                                                            **fam["extrapolated"]}.items()})
    for row in rows:
        assert abs(row["official_ratio"] * 355e6 / SPEC_TABLE[row["stage"]][1] - 1) < 0.006
    with pytest.raises(ValueError, match="does not fit"):
        released.released_base(Space(SpaceConfig(stages=((1, 1, 8, 1),) * 7)))
    cfg = configs.get_config("smoke")
    cfg.retrain.family_preset = "released"
    from jaxlab.scalenet import run
    with pytest.raises(ConfigError, match="family_preset"):  # the smoke space cannot hold the released base
        run.retrain(cfg, tmp_path / "w")


def _hand_official(r, stem, blocks, head, classes, se_div=4):
    """Independent floor-rule count from a block list `(c_in, c_out, expand, k, stride)`."""
    n = r // 2
    total = n * n * 9 * 3 * stem
    for c_in, c_out, t, k, s in blocks:
        hid = c_in * t
        if t != 1:
            total += n * n * c_in * hid
        n = n // s
        total += n * n * k * k * hid + 2 * hid * (hid // se_div) + n * n * hid * c_out
    return total + n * n * blocks[-1][1] * head + head * classes


def test_official_rule_is_floor_and_differs_only_on_odd_maps():
    sp = Space(SpaceConfig(stem_channels=4, stem_stride=2, stages=((1, 1, 4, 1), (1, 2, 8, 2), (1, 2, 8, 2)),
                           kernels=(3,), head_channels=16, num_classes=5, mult_grid=((1.0,),), res_grid=((8,),)))
    arch = sp.scale(np.ones(sp.num_genes, np.int64), 1.0, 1.0)
    blocks = [(4, 4, 1, 3, 1), (4, 8, 2, 3, 2), (8, 8, 2, 3, 2)]
    for r in (8, 10, 12, 14):
        assert sp.macs(arch, r, rule="official") == _hand_official(r, 4, blocks, 16, 5)
    assert sp.macs(arch, 8, rule="official") == sp.macs(arch, 8)       # 8 -> 4 -> 2 -> 1: all even
    assert sp.macs(arch, 10, rule="official") < sp.macs(arch, 10)      # 10 -> 5 -> 2 vs 3
    with pytest.raises(ValueError, match="rule"):
        sp.macs(arch, 8, rule="floor")


def test_search_limits_use_the_configured_rule():
    """(1.36, 1.24, 304) on the released base: the official count is inside the S2 ladder
    (4x +- 4 * 50M/306M of S0), the true-shape count above it (odd maps from 19 on)."""
    cfg = configs.get_config("paper").search
    base = released.released_base(PAPER)
    t = (1.36, 1.24, 304)
    sp = PAPER
    for rule, inside in (("official", True), ("true", False)):
        ratio = sp.macs(sp.scale(base, 1.36, 1.24), 304, rule=rule) / sp.base_macs(base, rule=rule)
        assert (abs(ratio - 4) <= 4 * cfg.ladder_tol) == inside, (rule, ratio)
    assert cfg.flops_rule == "official"
    assert bool(search.ladder_ok(PAPER, cfg, base, t, 2))
    cfg.flops_rule = "true"
    assert not bool(search.ladder_ok(PAPER, cfg, base, t, 2))
