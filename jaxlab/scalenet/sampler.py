"""Sub-network samplers for super-supernet training (spec sec. 2.3).

Hierarchical (ScaleNet, `uniform_searcher.py::generate_subnet`), per draw:

1. scaling stage `s ~ Categorical(p_s)`, `p_s = |W_s| / sum_j |W_j|`
   (the paper's grids give `p = (1, 4, 5, 7) / 17`);
2. `d ~ U(D_s)`, `w ~ U(W_s)`, `r ~ U(R_s)`, independent;
3. each base layer's op `~ U{1..K}` (the identity is never drawn directly);
4. per stage `n_b ~ U{1..n_max}`; base layers beyond `n_b` are the identity;
5. `n = ceil(n_b d)`; layers `n_b..n-1` copy the op of layer `n_b - 1`; the rest identity.

Uniform (the ablation; reconstruction): `d`, `w`, `r` drawn uniformly from the union of
all stages' grids, ignoring the stage hierarchy; steps 3-5 unchanged.

Both are pure functions of a NumPy `Generator`, so a training batch (architecture
included) is a pure function of `(seed, step)`.
"""

from __future__ import annotations

import numpy as np

from jaxlab.scalenet.space import Space

__all__ = ["stage_probabilities", "sample_base", "sample_hierarchical", "sample_uniform", "sample", "sample_batch"]


def stage_probabilities(space: Space) -> np.ndarray:
    """`p_s` proportional to `|W_s|`."""
    sizes = np.array([len(g) for g in space.cfg.mult_grid], np.float64)
    return sizes / sizes.sum()


def sample_base(space: Space, rng: np.random.Generator, n: int | None = None) -> np.ndarray:
    """Random canonical base genes `[G]` (or `[n, G]`): ops uniform, depth `U{1..n_max}`."""
    shape = () if n is None else (n,)
    ops = rng.integers(1, space.num_ops + 1, size=shape + (space.num_genes,))
    depth = np.stack([rng.integers(1, nm + 1, size=shape) for nm in space.n_max], -1)
    keep = space.base_index < np.take(depth, space.base_stage, axis=-1)
    return np.where(keep, ops, 0).astype(np.int64)


def sample_hierarchical(space: Space, rng: np.random.Generator, side: int = 0):
    """One draw: `(arch pytree, resolution, info dict)`."""
    cfg = space.cfg
    s = int(rng.choice(space.num_scaling_stages, p=stage_probabilities(space)))
    g = cfg.mult_grid[s]
    d = float(g[rng.integers(len(g))])
    w = float(g[rng.integers(len(g))])
    r = int(cfg.res_grid[s][rng.integers(len(cfg.res_grid[s]))])
    base = sample_base(space, rng)
    return space.scale(base, d, w, side), r, {"stage": s, "d": d, "w": w, "r": r, "base": base}


def sample_uniform(space: Space, rng: np.random.Generator, side: int = 0):
    """Ablation sampler: `d`, `w`, `r` uniform over the union of the stages' grids."""
    cfg = space.cfg
    mults = np.unique(np.concatenate([np.asarray(g) for g in cfg.mult_grid]))
    ress = np.unique(np.concatenate([np.asarray(g) for g in cfg.res_grid]))
    d = float(mults[rng.integers(len(mults))])
    w = float(mults[rng.integers(len(mults))])
    r = int(ress[rng.integers(len(ress))])
    base = sample_base(space, rng)
    return space.scale(base, d, w, side), r, {"stage": -1, "d": d, "w": w, "r": r, "base": base}


def sample(space: Space, rng: np.random.Generator, kind: str = "hierarchical", side: int = 0):
    if kind == "hierarchical":
        return sample_hierarchical(space, rng, side)
    if kind == "uniform":
        return sample_uniform(space, rng, side)
    raise ValueError(f"unknown sampler {kind!r}; expected 'hierarchical' or 'uniform'")


def sample_batch(space: Space, rng: np.random.Generator, n: int, kind: str = "hierarchical", side: int = 0):
    """`n` draws at once: `(archs [n, ...], r [n], info)`; the same law as `sample`."""
    cfg = space.cfg
    if kind == "hierarchical":
        s = rng.choice(space.num_scaling_stages, size=n, p=stage_probabilities(space))
        pick = lambda grids: np.array([grids[si][rng.integers(len(grids[si]))] for si in s])
        d, w, r = pick(cfg.mult_grid), pick(cfg.mult_grid), pick(cfg.res_grid)
    elif kind == "uniform":
        s = np.full(n, -1)
        mults = np.unique(np.concatenate([np.asarray(g) for g in cfg.mult_grid]))
        ress = np.unique(np.concatenate([np.asarray(g) for g in cfg.res_grid]))
        d = mults[rng.integers(len(mults), size=n)]
        w = mults[rng.integers(len(mults), size=n)]
        r = ress[rng.integers(len(ress), size=n)]
    else:
        raise ValueError(f"unknown sampler {kind!r}; expected 'hierarchical' or 'uniform'")
    base = sample_base(space, rng, n)
    archs = space.scale(base, d, w, side)
    info = {"stage": s, "d": np.asarray(d, float), "w": np.asarray(w, float), "base": base}
    return archs, np.asarray(r, np.int64), info
