"""The released ScaleNet family S0-S5 as a preset (spec sec. 2.6).

Base kernels per stage of the official configs (commit `785322a`,
`config/config_scaling-24-03/s{0..5}-3.yaml`): 5 | 5 | 7,7,5,3 | 5,5 | 7,7 | 7,5,7 | 5,
all MBConv+SE, in the search space of `get_config("paper")`. The scaling triples are the
configs' `(d, w)` with the grid resolution (the configs store `r / 224` rounded, so S1
is 256, not `round(224 * 1.14)`); S4 and S5 are the configs' extrapolated members.

`released_family()` has the layout of a search's `family.json` (`base`, `scaling`,
`extrapolated`), so `retrain.family_preset="released"` retrains it instead of a searched
family. The members deeper than the super-supernet (S5 has 8 layers in a 4-layer stage)
are built with `Space.with_depth`.
"""

from __future__ import annotations

import numpy as np

from jaxlab.scalenet.space import Space

__all__ = ["RELEASED_KERNELS", "RELEASED_SCALING", "released_base", "released_family", "released_members"]

# kernel sizes of the base model's layers, stage by stage (empty slots are identities)
RELEASED_KERNELS = ((5,), (5,), (7, 7, 5, 3), (5, 5), (7, 7), (7, 5, 7), (5,))

# stage -> (d, w, r)
RELEASED_SCALING = {
    1: (1.04, 1.04, 256),
    2: (1.36, 1.20, 304),
    3: (1.40, 1.40, 354),
    4: (1.653, 1.534, 458),
    5: (1.848, 1.688, 533),
}


def released_base(space: Space) -> np.ndarray:
    """Base genes of the released S0 in `space` (the paper space: kernels 3, 5, 7 and
    n_max 1, 4, 4, 4, 4, 4, 1); a `ValueError` when `space` cannot hold it."""
    kernels = tuple(space.cfg.kernels)
    if len(space.n_max) != len(RELEASED_KERNELS):
        raise ValueError(f"the released base has {len(RELEASED_KERNELS)} stages, the space {len(space.n_max)}")
    genes = []
    for s, ks in enumerate(RELEASED_KERNELS):
        if len(ks) > space.n_max[s] or any(k not in kernels for k in ks):
            raise ValueError(f"stage {s} of the released base ({ks}) does not fit the space (n_max "
                             f"{int(space.n_max[s])}, kernels {kernels})")
        genes += [kernels.index(k) + 1 for k in ks] + [0] * (int(space.n_max[s]) - len(ks))
    return np.array(genes, np.int64)


def released_family(space: Space) -> dict:
    """`{"base", "scaling", "extrapolated"}` (the `family.json` layout) of the released family."""
    return {"base": released_base(space).tolist(),
            "scaling": {str(s): list(t) for s, t in RELEASED_SCALING.items() if s < 4},
            "extrapolated": {str(s): list(t) for s, t in RELEASED_SCALING.items() if s >= 4}}


def released_members(space: Space) -> list[dict]:
    """`[{stage, d, w, r, arch, space}]` for S0..S5: each member's architecture in a space
    deep enough for it (`Space.with_depth(d)`, uncapped)."""
    base = released_base(space)
    out = []
    for s, (d, w, r) in [(0, (1.0, 1.0, int(space.cfg.res_grid[0][0])))] + sorted(RELEASED_SCALING.items()):
        sp = space.with_depth(d)
        out.append({"stage": s, "d": d, "w": w, "r": int(r), "space": sp, "arch": sp.scale(base, d, w)})
    return out
