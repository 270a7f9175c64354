"""ScaleNet's search space: super-supernet layout, base encodings, scaling, MACs.

Spec: ../shared/papers/scalenet.md, sec. 2.1-2.3.

* A **base model** is one op code per base layer (`n_max` layers per stage), 0 = identity,
  `i >= 1` = MBConv+SE with kernel `kernels[i-1]`; the first layer of a stage is never
  the identity. Its canonical form moves the non-identity ops of each stage to the front
  (`check_basenet`), so the stage depth is the count of non-identity ops.
* A **scaling** `(d, w, r)` maps a base model to a network: per stage
  `n = ceil(n_b d)` layers, the added ones copying the last base layer's op; every conv
  outputs `ceil(c w)` channels (the head conv's output stays fixed, its input scales);
  input resolution `r`.
* The **super-supernet** holds `ceil(n_max * max_mult)` layers per stage and
  `ceil(max_mult c) (+ c with bilateral coupling)` channels per conv.
* A **network architecture** (what the supernet runs) is the pytree
  `{"ops": int32[L], "channels": int32[S + 1], "side": int32[]}`: op per super layer,
  active channels of the stem and of each stage, coupling side (0 left, 1 right).
  The resolution is the input's static shape.

`macs` counts the multiply-adds of the convolutions and dense layers of a network
(stem, expand, depthwise, SE, project, head conv, classifier), vectorised over a
population. Two rules for a strided convolution's output size (spec sec. 2.6):

* `rule="true"`: `ceil(n / s)`, the shapes PyTorch and XLA compute (SAME padding); the
  tests check `2 * macs` against XLA's cost analysis;
* `rule="official"`: `floor(n / s)`, as the official counter (`EvolutionSampler.count_flops`)
  takes it. The two differ whenever a stride-2 layer meets an odd map; the paper's FLOPs
  limits (306M +- 25M, the 2^s ladder) and its family table were computed with this rule.

Retrained networks are not capped at the super-supernet's depth: `Space.with_depth(d)`
is the same space with room for `ceil(n_max d)` layers per stage (the supernet's widths
and sampling are unchanged; only the layer table grows).
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import numpy as np

from jaxlab.core.config import ConfigError, NonNegativeInt, PositiveFloat, PositiveInt
from jaxlab.nas.encoding import canonicalize_ops_np
from jaxlab.nas.flops import same_taps

__all__ = ["SpaceConfig", "Space", "ceil_mult", "check_space_config", "COUNTING_RULES"]

COUNTING_RULES = ("true", "official")


def ceil_mult(c, m):
    """`ceil(c * m)` robust to float round-off (1.2 * 10 -> 12, not 13)."""
    return np.ceil(np.asarray(c, np.float64) * np.asarray(m, np.float64) - 1e-9).astype(np.int64)


@dataclasses.dataclass
class SpaceConfig:
    """Search space. Defaults: the spec's small CPU model (sec. 3).

    `stages` rows are `(n_max, stride, c_out, expand_ratio)`. `mult_grid[s]` is both
    D_s and W_s (the paper draws d and w independently from the same set);
    `res_grid[s]` is R_s. `coupling`: "bilateral" (left/right index sets, BCNet) or
    "prefix" (left only). The nested tuples are set in a config file, not with
    `--config.space.*=` (the command line takes flat values only).
    """

    stem_channels: PositiveInt = 8
    stem_stride: PositiveInt = 1
    stages: tuple[tuple[int, int, int, int], ...] = ((2, 1, 8, 3), (2, 2, 16, 3), (2, 2, 24, 3))
    kernels: tuple[PositiveInt, ...] = (3, 5)
    head_channels: PositiveInt = 64
    num_classes: PositiveInt = 10
    se_div: NonNegativeInt = 4
    act: Literal["hswish", "relu", "relu6", "swish"] = "hswish"
    max_mult: PositiveFloat = 1.64
    coupling: Literal["bilateral", "prefix"] = "bilateral"
    mult_grid: tuple[tuple[float, ...], ...] = ((1.0,), (1.04, 1.08, 1.12, 1.16), (1.20, 1.24, 1.28, 1.32, 1.36),
                                                (1.40, 1.44, 1.48, 1.52, 1.56, 1.60, 1.64))
    res_grid: tuple[tuple[int, ...], ...] = ((12,), (12, 13, 14), (15, 16), (17, 18))


def check_space_config(cfg: SpaceConfig, prefix: str = "space.") -> None:
    """Cross-field rules of a `SpaceConfig`; a `ConfigError` names the offending field."""
    if cfg.coupling not in ("bilateral", "prefix"):
        raise ConfigError(f"config field '{prefix}coupling' must be 'bilateral' or 'prefix', got {cfg.coupling!r}")
    if not cfg.stages or any(len(row) != 4 or min(row) < 1 for row in cfg.stages):
        raise ConfigError(f"config field '{prefix}stages' needs rows (n_max, stride, c_out, expand) of "
                          f"positive ints, got {cfg.stages!r}")
    if not cfg.kernels or any(k % 2 == 0 for k in cfg.kernels):
        raise ConfigError(f"config field '{prefix}kernels' must be odd kernel sizes, got {cfg.kernels!r}")
    if len(cfg.mult_grid) != len(cfg.res_grid):
        raise ConfigError(f"config field '{prefix}mult_grid' has {len(cfg.mult_grid)} scaling stages, "
                          f"'{prefix}res_grid' {len(cfg.res_grid)}")
    if not cfg.mult_grid or any(not g for g in cfg.mult_grid) or any(not g for g in cfg.res_grid):
        raise ConfigError(f"config fields '{prefix}mult_grid' and '{prefix}res_grid' need a non-empty grid "
                          "per scaling stage")
    top = max(max(g) for g in cfg.mult_grid)
    if top > cfg.max_mult + 1e-9:
        raise ConfigError(f"config field '{prefix}mult_grid' reaches {top} > {prefix}max_mult={cfg.max_mult}")


class Space:
    """Derived layer table and the encode / scale / count functions of a `SpaceConfig`."""

    def __init__(self, cfg: SpaceConfig):
        check_space_config(cfg)
        self.cfg = dataclasses.replace(cfg)  # a copy: the derived tables below stay in sync
        self.num_stages = len(cfg.stages)
        self.num_ops = len(cfg.kernels)
        self.max_mult = max(max(g) for g in cfg.mult_grid)
        pad = cfg.coupling == "bilateral"
        sup = lambda c: int(ceil_mult(c, cfg.max_mult)) + (c if pad else 0)
        self.super_stem = sup(cfg.stem_channels)
        self.n_max = np.array([s[0] for s in cfg.stages])
        self.n_super = np.array([int(ceil_mult(n, cfg.max_mult)) for n in self.n_max])
        self.base_channels = np.array([cfg.stem_channels] + [s[2] for s in cfg.stages])
        self.super_channels = np.array([sup(c) for c in self.base_channels])
        # layer table of the super-supernet
        layers = []
        for s, (_, stride, _, t) in enumerate(cfg.stages):
            for j in range(self.n_super[s]):
                layers.append(dict(stage=s, index=j, stride=stride if j == 0 else 1,
                                   in_slot=s if j == 0 else s + 1, out_slot=s + 1, expand=t,
                                   identity_ok=j > 0))
        self.layers = layers
        self.num_layers = len(layers)
        self.layer_stage = np.array([l["stage"] for l in layers])
        self.layer_index = np.array([l["index"] for l in layers])
        # base genes: n_max per stage
        self.base_stage = np.concatenate([np.full(n, s) for s, n in enumerate(self.n_max)])
        self.base_index = np.concatenate([np.arange(n) for n in self.n_max])
        self.num_genes = len(self.base_stage)
        self.gene_lower = np.where(self.base_index == 0, 1, 0)
        self.gene_upper = np.full(self.num_genes, self.num_ops)
        self.num_scaling_stages = len(cfg.mult_grid)

    # ---------------------------------------------------------------- encodings
    def canonical_base(self, genes) -> np.ndarray:
        """`check_basenet`: non-identity ops first within each stage; `[..., G]`."""
        genes = np.clip(np.asarray(genes, np.int64), self.gene_lower, self.gene_upper)
        return canonicalize_ops_np(genes, self.base_stage)

    def base_depths(self, genes) -> np.ndarray:
        """Non-identity layers per stage, `[..., S]`."""
        genes = np.asarray(genes)
        return np.stack([(genes[..., self.base_stage == s] != 0).sum(-1) for s in range(self.num_stages)], -1)

    def scale(self, genes, d, w, side=0) -> dict:
        """Network architecture(s) of base `genes` `[..., G]` scaled by depth `d`, width `w`.

        Returns the pytree `{"ops": [..., L], "channels": [..., S+1], "side": [...]}`.
        """
        genes = self.canonical_base(genes)
        batch = genes.shape[:-1]
        d = np.broadcast_to(np.asarray(d, np.float64), batch)
        w = np.broadcast_to(np.asarray(w, np.float64), batch)
        ops = np.zeros(batch + (self.num_layers,), np.int64)
        for s in range(self.num_stages):
            g = genes[..., self.base_stage == s]
            nb = (g != 0).sum(-1)
            n = np.minimum(ceil_mult(nb, d), self.n_super[s])
            last = np.take_along_axis(g, np.maximum(nb - 1, 0)[..., None], -1)[..., 0]
            cols = np.nonzero(self.layer_stage == s)[0]
            for j, col in enumerate(cols):
                base_op = g[..., j] if j < g.shape[-1] else np.zeros(batch, np.int64)
                ops[..., col] = np.where(j < nb, base_op, np.where(j < n, last, 0))
        channels = ceil_mult(self.base_channels, w[..., None])
        return {"ops": ops.astype(np.int32), "channels": channels.astype(np.int32),
                "side": np.broadcast_to(np.asarray(side, np.int32), batch).copy()}

    def full_arch(self, ops, channels, side=0) -> dict:
        return {"ops": np.asarray(ops, np.int32), "channels": np.asarray(channels, np.int32),
                "side": np.asarray(side, np.int32)}

    # ---------------------------------------------------------------- MACs
    def with_depth(self, d: float) -> Space:
        """This space with at least `ceil(n_max d)` layers per stage (retraining deeper
        than the super-supernet, spec sec. 2.6); `self` when it already has them."""
        if np.all(ceil_mult(self.n_max, d) <= self.n_super):
            return self
        return Space(dataclasses.replace(self.cfg, max_mult=float(max(self.cfg.max_mult, d))))

    def macs(self, arch: dict, resolution, count_padding: bool = True, rule: str = "true") -> np.ndarray:
        """Multiply-adds of the network(s) `arch` at input `resolution` (vectorised).

        `count_padding=True` is the papers' convention (`k^2` taps per output of a
        k x k conv); `False` counts only taps inside the input, as XLA's cost analysis
        does (the two differ at the borders, noticeably at small resolutions).
        `rule`: "true" (output size `ceil(n / s)`, the real shapes) or "official"
        (`floor(n / s)`, the official counter's; needs `count_padding=True`).
        """
        if rule not in COUNTING_RULES:
            raise ValueError(f"rule must be one of {COUNTING_RULES}, got {rule!r}")
        if rule == "official" and not count_padding:
            raise ValueError("rule='official' counts k^2 taps per output (count_padding=True)")
        cfg = self.cfg

        def out_n(n, stride):
            return n // stride if rule == "official" else -(-n // stride)

        ops = np.asarray(arch["ops"], np.int64)
        ch = np.asarray(arch["channels"], np.int64)
        r = np.broadcast_to(np.asarray(resolution, np.int64), ops.shape[:-1])

        def taps(n, k, stride):  # summed over one spatial axis
            return out_n(n, stride) * k if count_padding else same_taps(n, k, stride)

        total = taps(r, 3, cfg.stem_stride) ** 2 * 3 * ch[..., 0]
        size = out_n(r, cfg.stem_stride)
        kernels = np.array((0,) + tuple(cfg.kernels))
        for li, l in enumerate(self.layers):
            c_in, c_out = ch[..., l["in_slot"]], ch[..., l["out_slot"]]
            hid = c_in * l["expand"]
            out_size = out_n(size, l["stride"])
            k = kernels[ops[..., li]]
            m = np.zeros_like(total)
            if l["expand"] != 1:
                m = m + size * size * c_in * hid
            m = m + np.where(k > 0, taps(size, np.maximum(k, 1), l["stride"]) ** 2, 0) * hid
            if cfg.se_div:
                se = np.maximum(1, hid // cfg.se_div)
                m = m + 2 * hid * se
            m = m + out_size * out_size * hid * c_out
            active = ops[..., li] != 0
            total = total + np.where(active, m, 0)
            size = out_size  # strided layers are first of a stage, never the identity
        total = total + size * size * ch[..., -1] * cfg.head_channels + cfg.head_channels * cfg.num_classes
        return total

    def base_macs(self, genes, rule: str = "true") -> np.ndarray:
        """MACs of base model(s) at scaling stage 0 (d = w = 1, r = R_0[0])."""
        return self.macs(self.scale(genes, 1.0, 1.0), self.cfg.res_grid[0][0], rule=rule)

    # ---------------------------------------------------------------- grids
    def scaling_triples(self, s: int) -> np.ndarray:
        """All `(d, w, r)` of scaling stage `s`, float `[M, 3]`."""
        g, rs = self.cfg.mult_grid[s], self.cfg.res_grid[s]
        return np.array([(d, w, r) for d in g for w in g for r in rs], np.float64)
