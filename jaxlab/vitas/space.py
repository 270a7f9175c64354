"""The ViTAS search space: architecture encodings, index sets, identity shifting, FLOPs, sampling.

An architecture is a dict of int arrays (NumPy on the host, traced inside `jit`):

    patch  int32 []    index into `space.patch_sizes`
    embed  int32 []    index into `space.embed_ratios` (the global token-embedding width)
    ops    int32 [L]   0 = identity block, k >= 1 = attention with `space.heads[k - 1]` heads
    qkv    int32 [L]   index into `space.qkv_ratios`
    mlp    int32 [L]   index into `space.mlp_ratios`

Identity shifting (spec sec. 2.3, reconstruction): with non-identity positions
`p_1 < ... < p_d`, the canonical encoding has `a'_i = a_{p_i}` for `i <= d` and the
identity after; the per-block ratios travel with their op, and the ratios of identity
blocks are set to 0 (they choose nothing). Every standalone network then has one encoding.
"""

from __future__ import annotations

import numpy as np

from jaxlab.core.errors import JaxlabError
from jaxlab.nas import encoding, widths
from jaxlab.vitas.configs import SpaceConfig

__all__ = ["ArchError", "Space", "KEYS"]

KEYS = ("patch", "embed", "ops", "qkv", "mlp")


class ArchError(JaxlabError, ValueError):
    """An architecture outside the search space, or a FLOPs band no sample reaches."""


class Space:
    """Static tables of a `SpaceConfig`: widths, offsets, token counts, bounds."""

    def __init__(self, cfg: SpaceConfig):
        self.cfg = cfg
        c = cfg.embed_dim
        self.embed_widths = np.array([round(r * c) for r in cfg.embed_ratios], np.int32)
        self.qkv_widths = np.array([round(r * cfg.qkv_dim) for r in cfg.qkv_ratios], np.int32)
        self.mlp_widths = np.array([round(r * cfg.mlp_dim) for r in cfg.mlp_ratios], np.int32)
        self.heads = np.array(cfg.heads, np.int32)
        self.patch_sizes = tuple(int(p) for p in cfg.patch_sizes)
        self.num_patches = tuple((cfg.image_size // p) ** 2 for p in self.patch_sizes)
        if cfg.cyclic_offsets:
            self.offsets = np.array(cfg.cyclic_offsets, np.int32) % c
        else:
            self.offsets = widths.default_cyclic_offsets(c, self.embed_widths)
        self.scale = float(cfg.attention_scale) if cfg.attention_scale > 0 else float((c // 3) ** -0.5)
        self.depth = cfg.depth

    # ---------- encodings -------------------------------------------------------------
    def check(self, arch: dict) -> dict:
        """Validates one architecture; returns it as int32 NumPy arrays."""
        missing = [k for k in KEYS if k not in arch]
        if missing:
            raise ArchError(f"architecture lacks the fields {missing}; expected {list(KEYS)}")
        a = {k: np.asarray(arch[k]).astype(np.int32) for k in KEYS}
        limits = {"patch": len(self.patch_sizes), "embed": len(self.embed_widths), "ops": len(self.heads) + 1,
                  "qkv": len(self.qkv_widths), "mlp": len(self.mlp_widths)}
        for k in KEYS:
            want = () if k in ("patch", "embed") else (self.depth,)
            if a[k].shape != want:
                raise ArchError(f"architecture field {k!r} must have shape {want}, got {a[k].shape}")
            if np.any(a[k] < 0) or np.any(a[k] >= limits[k]):
                raise ArchError(f"architecture field {k!r} = {a[k].tolist()} outside [0, {limits[k] - 1}]")
        return a

    def num_genes(self) -> int:
        return 2 + 3 * self.depth

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        L = self.depth
        upper = np.concatenate([[len(self.patch_sizes) - 1, len(self.embed_widths) - 1], [len(self.heads)] * L,
                                [len(self.qkv_widths) - 1] * L, [len(self.mlp_widths) - 1] * L])
        return np.zeros_like(upper), upper

    def to_genome(self, archs: dict) -> np.ndarray:
        """Population dict `[P, ...]` -> genomes int64 `[P, 2 + 3L]`."""
        return np.concatenate([np.asarray(archs["patch"])[:, None], np.asarray(archs["embed"])[:, None],
                               archs["ops"], archs["qkv"], archs["mlp"]], axis=1).astype(np.int64)

    def from_genome(self, g: np.ndarray) -> dict:
        """Genomes `[P, 2 + 3L]` -> population dict of int32 arrays."""
        g = np.asarray(g)
        L = self.depth
        return {"patch": g[:, 0].astype(np.int32), "embed": g[:, 1].astype(np.int32),
                "ops": g[:, 2:2 + L].astype(np.int32), "qkv": g[:, 2 + L:2 + 2 * L].astype(np.int32),
                "mlp": g[:, 2 + 2 * L:].astype(np.int32)}

    def canonical(self, archs: dict) -> dict:
        """Identity shifting of one arch or a population: active blocks first, ratios with their op.

        Idempotent; keeps FLOPs; maps all `C(L, d)` placements of the same op sequence to one.
        The op order agrees with `jaxlab.nas.encoding.canonicalize_ops_np` (one stage).
        """
        ops = np.asarray(archs["ops"])
        order = np.argsort((ops == 0).astype(np.int8), axis=-1, kind="stable")
        out = dict(archs)
        out["ops"] = np.take_along_axis(ops, order, axis=-1)
        active = out["ops"] > 0
        for k in ("qkv", "mlp"):
            out[k] = np.where(active, np.take_along_axis(np.asarray(archs[k]), order, axis=-1), 0).astype(np.int32)
        ref = encoding.canonicalize_ops_np(ops, np.zeros(ops.shape[-1], np.int64))
        assert np.array_equal(ref, out["ops"])
        return out

    # ---------- index sets ------------------------------------------------------------
    def embed_index(self, arch: dict, side: int = widths.LEFT) -> np.ndarray:
        """Token-embedding channel index set `I` (static NumPy) of one architecture."""
        k = int(arch["embed"])
        d = int(self.embed_widths[k])
        return widths.index_set(self.cfg.embed_dim, d, self.cfg.sharing, side=side, offset=int(self.offsets[k]))

    def hidden_scheme(self) -> str:
        """qkv / MLP-hidden index sets: bilateral under BCNet, else prefix (spec sec. 2.2)."""
        return "bilateral" if self.cfg.sharing == "bilateral" else "prefix"

    def sides(self) -> tuple[int, ...]:
        return (widths.LEFT, widths.RIGHT) if self.cfg.sharing == "bilateral" else (widths.LEFT,)

    # ---------- FLOPs -----------------------------------------------------------------
    def flops(self, archs: dict, mode: str | None = None) -> np.ndarray:
        """Analytic multiply-adds (spec sec. 2.1) of one arch (scalar) or a population `[P]`.

        With `N` patches, `T` tokens (`N + 1` "exact", `N` "release"), `C` embed width and per
        active block `a` (each of q, k, v), `m` (MLP hidden)::

            patch  Cin p^2 N C;  per block  T C 3a + 2 T^2 a + T a C + 2 T C m;
            head   C K ("exact")  or  N C K ("release", the repo's overcount)
        """
        mode = mode or self.cfg.flops_count
        one = np.ndim(archs["patch"]) == 0
        a = {k: np.atleast_1d(np.asarray(v)) for k, v in archs.items()}
        if one:
            a = {k: v[None] if k in ("ops", "qkv", "mlp") else v for k, v in a.items()}
        p = np.asarray(self.patch_sizes, np.float64)[a["patch"]]
        n = np.asarray(self.num_patches, np.float64)[a["patch"]]
        t = n + 1 if mode == "exact" else n
        c = self.embed_widths[a["embed"]].astype(np.float64)
        q = self.qkv_widths[a["qkv"]].astype(np.float64)
        m = self.mlp_widths[a["mlp"]].astype(np.float64)
        active = (a["ops"] > 0).astype(np.float64)
        T, C = t[:, None], c[:, None]
        block = T * C * 3 * q + 2 * T * T * q + T * q * C + 2 * T * C * m
        k = self.cfg.num_classes
        total = self.cfg.in_channels * p * p * n * c + (active * block).sum(-1)
        total = total + (c * k if mode == "exact" else n * c * k)
        return total[0] if one else total

    def max_flops(self) -> float:
        L = self.depth
        big = {"patch": np.int32(int(np.argmax([self.flops_of_patch(i) for i in range(len(self.patch_sizes))]))),
               "embed": np.int32(len(self.embed_widths) - 1), "ops": np.ones(L, np.int32),
               "qkv": np.full(L, len(self.qkv_widths) - 1, np.int32), "mlp": np.full(L, len(self.mlp_widths) - 1,
                                                                                    np.int32)}
        return float(self.flops(big))

    def flops_of_patch(self, i: int) -> float:
        L = self.depth
        return float(self.flops({"patch": np.int32(i), "embed": np.int32(0), "ops": np.ones(L, np.int32),
                                 "qkv": np.zeros(L, np.int32), "mlp": np.zeros(L, np.int32)}))

    # ---------- sampling --------------------------------------------------------------
    def sample(self, rng: np.random.Generator, n: int, p_id: float, *, shift: bool = True) -> dict:
        """`n` architectures, v1 sampling: each block is the identity with probability `p_id`,
        else heads ~ U(heads); patch, embed, qkv and MLP ratios uniform. Canonical if `shift`."""
        L = self.depth
        ops = np.where(rng.random((n, L)) < p_id, 0, rng.integers(1, len(self.heads) + 1, (n, L))).astype(np.int32)
        archs = {"patch": rng.integers(0, len(self.patch_sizes), n).astype(np.int32),
                 "embed": rng.integers(0, len(self.embed_widths), n).astype(np.int32), "ops": ops,
                 "qkv": rng.integers(0, len(self.qkv_widths), (n, L)).astype(np.int32),
                 "mlp": rng.integers(0, len(self.mlp_widths), (n, L)).astype(np.int32)}
        return self.canonical(archs) if shift else archs

    def tune_p_id(self, band: tuple[float, float], *, p_id: float = 0.5, step: float = 0.01, samples: int = 1000,
                  seed: int = 0, max_iter: int = 200) -> tuple[float, float]:
        """Moves `p_id` in `+-step` until the mean FLOPs of `samples` samples lies in `band`.

        Returns `(p_id, mean_flops)`. A band no `p_id` in [0, 1] reaches is an `ArchError`.
        """
        lo, hi = band
        for _ in range(max_iter):
            f = float(self.flops(self.sample(np.random.default_rng(seed), samples, p_id)).mean())
            if lo <= f <= hi:
                return p_id, f
            new = min(1.0, p_id + step) if f > hi else max(0.0, p_id - step)
            if new == p_id:
                break
            p_id = new
        raise ArchError(f"FLOPs band [{lo:.4g}, {hi:.4g}] is not reached by the mean of {samples} samples for any "
                        f"identity probability (last p_id={p_id:.2f}, mean {f:.4g}); widen the band")

    def default_band(self) -> tuple[float, float]:
        m = self.max_flops()
        return 0.25 * m, 0.4 * m
