"""The ViTAS superformer (one Linen module run with masks) and its standalone sub-networks.

Superformer (spec sec. 2.1-2.2), tokens `[B, T, C]` with `T = 1 + N`:

    x_0   = [cls_p ; PatchEmbed_p(img)] + pos_p,   times the embed mask m_E      (patch p: own cls/pos)
    block (op k >= 1, h = heads[k-1] heads, a = qkv width, m = MLP width):
          u   = LN_E(x)                                       masked LayerNorm over I_E
          q,k = u W_qk[k-1] (private per head option),  v = u W_v (shared),   times m_a
          A_h = softmax(s q_h k_h^T),  head h = channels of I_a with rank // (a/h) == h
          x   = x + (concat_h A_h v_h) W_proj,  times m_E
          x   = x + W_2 gelu(W_1 LN_E(x) times m_m),  times m_E
    op 0 is the identity; logits = W_head LN_E(x)[:, 0].

The masks are float vectors of static length (`C`, `A`, `M`) built from the traced
architecture, so one compiled function serves every sub-network of one patch size. The head
count is chosen by a `lax.switch` with one branch per head option, each with its static head
count; inside it a one-hot matmul packs the active channels head by head into equal slots,
so the head width varies under `jit` and attention costs `A` channels whatever the count.
The switch has a hand-written VJP (a switch over the branches' VJPs), and identity blocks
are skipped by a `cond`, not computed and discarded. The attention scale is fixed for every
head count (released code).

`extract_subnet` gathers the active slices into a standalone network built from `jaxlab.nn`
blocks (`PatchEmbed`, `EncoderBlock`, `LayerNorm`): per-block head counts and widths differ,
which the uniform `jaxlab.nn.ViT` does not express, so `SubnetViT` stacks the blocks itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxlab.nas import widths
from jaxlab.nn.linear import Dense
from jaxlab.nn.transformer import EncoderBlock, LayerNorm
from jaxlab.nn.vit import PatchEmbed
from jaxlab.vitas.space import Space

__all__ = ["Superformer", "SubnetViT", "arch_masks", "extract_subnet", "subnet_shape"]

Array = jnp.ndarray
_trunc = nn.initializers.truncated_normal(0.02)


def _masked_ln(x: Array, mask: Array, scale: Array, bias: Array, eps: float) -> Array:
    xf = x.astype(jnp.float32)
    n = jnp.maximum(jnp.sum(mask), 1.0)
    mean = jnp.sum(xf * mask, -1, keepdims=True) / n
    xc = xf - mean
    var = jnp.sum(xc * xc * mask, -1, keepdims=True) / n
    return (xc * jax.lax.rsqrt(var + eps) * scale + bias) * mask


def _rank_mask(total: int, width, scheme: str, side) -> tuple[Array, Array]:
    """Mask `[X]` of a prefix/bilateral set and the rank of each channel inside it."""
    c = jnp.arange(total)
    m = widths.width_mask(total, width, scheme, side=side)
    rank = jnp.where(jnp.asarray(side) == widths.RIGHT, c - (total - width), c) if scheme == "bilateral" else c
    return m, rank


def arch_masks(space: Space, arch: dict, side=widths.LEFT) -> dict:
    """Masks of one (traced) architecture: embed `[C]`, qkv `[L, A]` with each channel's rank in
    its index set `[L, A]` and the width `[L]`, mlp `[L, M]`, layer gate `[L]`, head option `[L]`."""
    cfg = space.cfg
    e = jnp.asarray(arch["embed"])
    d = jnp.asarray(space.embed_widths)[e]
    off = jnp.asarray(space.offsets)[e]
    embed = widths.width_mask(cfg.embed_dim, d, cfg.sharing, side=side, offset=off)
    hs = space.hidden_scheme()
    ops = jnp.asarray(arch["ops"])
    a = jnp.asarray(space.qkv_widths)[jnp.asarray(arch["qkv"])]
    m = jnp.asarray(space.mlp_widths)[jnp.asarray(arch["mlp"])]
    qkv_m, rank = jax.vmap(lambda w: _rank_mask(cfg.qkv_dim, w, hs, side))(a)
    mlp_m = jax.vmap(lambda w: widths.width_mask(cfg.mlp_dim, w, hs, side=side))(m)
    return {"embed": embed, "qkv": qkv_m, "rank": rank, "qkv_width": a, "mlp": mlp_m,
            "gate": (ops > 0).astype(jnp.float32), "op": jnp.maximum(ops - 1, 0)}


def _attend_packed(q: Array, k: Array, v: Array, rank: Array, mask: Array, width, num_heads: int,
                   scale: float) -> Array:
    """Multi-head attention of masked `[B, T, A]` q/k/v with a static head count `n`.

    Head h holds the active channels of rank `h * w ... (h + 1) * w - 1`, `w = width / n`.
    A one-hot matmul moves them into slot h of `n` slots of `A / n` channels (the rest of
    the slot is zero), so the heads are a plain `[B, T, n, A / n]` reshape: attention costs
    `A` channels in all, as one full-width head, whatever `n` and `width`."""
    b, t, a_max = q.shape
    n = num_heads
    w = jnp.maximum(width // n, 1)
    head = rank // w
    pos = head * (a_max // n) + (rank - head * w)                                         # [A]
    perm = ((pos[:, None] == jnp.arange(a_max)[None, :]) * mask[:, None]).astype(q.dtype)  # [A, A]
    split = lambda z: (z @ perm).reshape(b, t, n, a_max // n)
    logits = jnp.einsum("bihd,bjhd->bhij", split(q), split(k)) * scale
    o = jnp.einsum("bhij,bjhd->bihd", jax.nn.softmax(logits, axis=-1), split(v))
    return o.reshape(b, t, a_max) @ perm.T


def _switched_attention(head_counts: tuple[int, ...], scale: float):
    """`f(option, q, k, v, rank, qkv_mask, qkv_width)`: attention with the static head count
    `head_counts[option]`, one `lax.switch` branch per option.

    The backward pass is a second switch over the branches' VJPs (recomputing the chosen
    branch's forward). Differentiating the switch directly would make every branch return
    the residuals of all of them, zero-filled `[B, H, T, T]` buffers of the branches not
    taken, which cost more on CPU than the recomputation."""

    def branch(n):
        return lambda q, k, v, rank, mask, width: _attend_packed(q, k, v, rank, mask, width, n, scale)

    branches = [branch(n) for n in head_counts]

    def pullback(b):
        def run(q, k, v, rank, mask, width, g):
            return jax.vjp(lambda q, k, v: b(q, k, v, rank, mask, width), q, k, v)[1](g)
        return run

    @jax.custom_vjp
    def attention(option, q, k, v, rank, mask, width):
        return jax.lax.switch(option, branches, q, k, v, rank, mask, width)

    def fwd(option, q, k, v, rank, mask, width):
        return attention(option, q, k, v, rank, mask, width), (option, q, k, v, rank, mask, width)

    def bwd(res, g):
        option, q, k, v, rank, mask, width = res
        dq, dk, dv = jax.lax.switch(option, [pullback(b) for b in branches], q, k, v, rank, mask, width, g)
        none = lambda a: np.zeros(np.shape(a), jax.dtypes.float0)  # integer inputs
        return none(option), dq, dk, dv, none(rank), jnp.zeros_like(mask), none(width)

    attention.defvjp(fwd, bwd)
    return attention


class SuperBlock(nn.Module):
    """One superformer block (see module docstring); parameters at full width."""

    embed_dim: int
    qkv_dim: int
    mlp_dim: int
    num_head_options: int
    scale: float
    eps: float = 1e-6
    head_counts: tuple[int, ...] = (1,)  # the head count of each head option

    @nn.compact
    def __call__(self, x: Array, masks: dict) -> Array:
        C, A, M = self.embed_dim, self.qkv_dim, self.mlp_dim
        me = masks["embed"]
        p = lambda n, init, shape: self.param(n, init, shape)
        ln1_s, ln1_b = p("norm1_scale", nn.initializers.ones, (C,)), p("norm1_bias", nn.initializers.zeros, (C,))
        w_qk = p("qk_kernel", _trunc, (self.num_head_options, C, 2, A))
        b_qk = p("qk_bias", nn.initializers.zeros, (self.num_head_options, 2, A))
        w_v, b_v = p("v_kernel", _trunc, (C, A)), p("v_bias", nn.initializers.zeros, (A,))
        w_o, b_o = p("proj_kernel", _trunc, (A, C)), p("proj_bias", nn.initializers.zeros, (C,))
        ln2_s, ln2_b = p("norm2_scale", nn.initializers.ones, (C,)), p("norm2_bias", nn.initializers.zeros, (C,))
        w_1, b_1 = p("fc1_kernel", _trunc, (C, M)), p("fc1_bias", nn.initializers.zeros, (M,))
        w_2, b_2 = p("fc2_kernel", _trunc, (M, C)), p("fc2_bias", nn.initializers.zeros, (C,))

        u = _masked_ln(x, me, ln1_s, ln1_b, self.eps)
        op = masks["op"]
        wqk, bqk = jnp.take(w_qk, op, axis=0), jnp.take(b_qk, op, axis=0)   # only option `op` gets gradient
        qk = jnp.einsum("btc,cka->btka", u, wqk) + bqk
        q, k = qk[:, :, 0] * masks["qkv"], qk[:, :, 1] * masks["qkv"]
        v = (u @ w_v + b_v) * masks["qkv"]
        # one switch branch per head option, each with its static head count (under vmap all run)
        o = _switched_attention(self.head_counts, self.scale)(op, q, k, v, masks["rank"], masks["qkv"],
                                                               masks["qkv_width"])
        x = x + (o @ w_o + b_o) * me
        u = _masked_ln(x, me, ln2_s, ln2_b, self.eps)
        hdn = jax.nn.gelu(u @ w_1 + b_1, approximate=False) * masks["mlp"]
        return x + (hdn @ w_2 + b_2) * me


class Superformer(nn.Module):
    """DeiT-like superformer: images `[B, H, W, Cin]` + architecture -> logits `[B, K]`.

    Call `apply(v, x, arch, patch_index=i, side=s)`; `patch_index` is static (one compile per
    patch size), every other choice is traced. `init` with `method=Superformer.init_all`
    creates the parameters of every patch size.
    """

    space: Space

    def setup(self):
        cfg, sp = self.space.cfg, self.space
        C = cfg.embed_dim
        self.patch_kernels = [self.param(f"patch{i}_kernel", _trunc, (p, p, cfg.in_channels, C))
                              for i, p in enumerate(sp.patch_sizes)]
        self.patch_biases = [self.param(f"patch{i}_bias", nn.initializers.zeros, (C,))
                             for i in range(len(sp.patch_sizes))]
        self.cls_tokens = [self.param(f"cls{i}", nn.initializers.zeros, (1, 1, C)) for i in range(len(sp.patch_sizes))]
        self.pos_embeds = [self.param(f"pos{i}", nn.initializers.zeros, (1, n + 1, C))
                           for i, n in enumerate(sp.num_patches)]
        self.blocks = [SuperBlock(C, cfg.qkv_dim, cfg.mlp_dim, len(sp.heads), sp.scale, cfg.norm_epsilon,
                                  tuple(int(n) for n in sp.heads), name=f"block_{i}") for i in range(cfg.depth)]
        self.norm_scale = self.param("norm_scale", nn.initializers.ones, (C,))
        self.norm_bias = self.param("norm_bias", nn.initializers.zeros, (C,))
        self.head_kernel = self.param("head_kernel", _trunc, (C, cfg.num_classes))
        self.head_bias = self.param("head_bias", nn.initializers.zeros, (cfg.num_classes,))

    def tokens(self, x: Array, patch_index: int, me: Array) -> Array:
        p = self.space.patch_sizes[patch_index]
        b, hh, ww, cin = x.shape
        patches = x.reshape(b, hh // p, p, ww // p, p, cin).transpose(0, 1, 3, 2, 4, 5)
        patches = patches.reshape(b, (hh // p) * (ww // p), p, p, cin)
        t = jnp.einsum("bnijc,ijcd->bnd", patches, self.patch_kernels[patch_index]) + self.patch_biases[patch_index]
        cls = jnp.broadcast_to(self.cls_tokens[patch_index], (b, 1, t.shape[-1]))
        return (jnp.concatenate([cls, t], axis=1) + self.pos_embeds[patch_index]) * me

    def __call__(self, x: Array, arch: dict, *, patch_index: int = 0, side: Any = widths.LEFT) -> Array:
        m = arch_masks(self.space, arch, side)
        h = self.tokens(x.astype(jnp.float32), patch_index, m["embed"])
        for i, blk in enumerate(self.blocks):
            bm = {k: v[i] for k, v in m.items() if k != "embed"} | {"embed": m["embed"]}
            if self.is_initializing():
                h = blk(h, bm)
            else:  # identity blocks are skipped, not computed and discarded
                h = nn.cond(m["gate"][i] > 0, lambda mdl, x, bm: mdl(x, bm), lambda mdl, x, bm: x, blk, h, bm)
        h = _masked_ln(h[:, 0], m["embed"], self.norm_scale, self.norm_bias, self.space.cfg.norm_epsilon)
        return h @ self.head_kernel + self.head_bias

    def init_all(self, x: Array) -> Array:
        """Runs every patch size once (creates all parameters); returns the summed logits."""
        L = self.space.depth
        arch = {"patch": 0, "embed": 0, "ops": jnp.ones(L, jnp.int32), "qkv": jnp.zeros(L, jnp.int32),
                "mlp": jnp.zeros(L, jnp.int32)}
        out = 0.0
        for i in range(len(self.space.patch_sizes)):
            out = out + self(x, arch, patch_index=i)
        return out


def init_superformer(space: Space, key: jax.Array) -> dict:
    s = space.cfg.image_size
    x = jnp.zeros((1, s, s, space.cfg.in_channels))
    return Superformer(space).init(key, x, method=Superformer.init_all)["params"]


# ------------------------------------------------------------------------------------------
class SubnetViT(nn.Module):
    """Standalone ViT with per-block shapes: `[B, H, W, Cin] -> [B, K]`.

    Attributes:
      patch_size, embed_dim (`d`), blocks: `((heads, qkv_width, mlp_hidden), ...)` of the active
      blocks; scale: attention scale of every block; num_classes.
    """

    patch_size: int
    embed_dim: int
    blocks: Sequence[tuple[int, int, int]]
    scale: float
    num_classes: int
    eps: float = 1e-6
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: Array, *, train: bool = False) -> Array:
        del train
        d = self.embed_dim
        t = PatchEmbed(self.patch_size, d, kernel_init=_trunc, dtype=self.dtype, name="patch_embed")(x)
        cls = self.param("cls_token", nn.initializers.zeros, (1, 1, d))
        t = jnp.concatenate([jnp.broadcast_to(cls, (t.shape[0], 1, d)).astype(t.dtype), t], axis=1)
        t = t + self.param("pos_embedding", nn.initializers.zeros, (1, t.shape[1], d)).astype(t.dtype)
        for i, (h, a, m) in enumerate(self.blocks):
            t = EncoderBlock(num_heads=int(h), qkv_features=int(a), mlp_hidden=int(m), attention_scale=self.scale,
                             norm_epsilon=self.eps, kernel_init=_trunc, dtype=self.dtype, name=f"block_{i}")(t)
        t = LayerNorm(epsilon=self.eps, dtype=self.dtype, name="norm")(t[:, 0])
        return Dense(self.num_classes, kernel_init=_trunc, dtype=self.dtype, name="head")(t)


def subnet_shape(space: Space, arch: dict) -> SubnetViT:
    """The standalone `SubnetViT` of an architecture (its canonical form: identities dropped)."""
    a = space.check(arch)
    blocks = tuple((int(space.heads[o - 1]), int(space.qkv_widths[q]), int(space.mlp_widths[m]))
                   for o, q, m in zip(a["ops"], a["qkv"], a["mlp"]) if o > 0)
    return SubnetViT(patch_size=space.patch_sizes[int(a["patch"])], embed_dim=int(space.embed_widths[a["embed"]]),
                     blocks=blocks, scale=space.scale, num_classes=space.cfg.num_classes, eps=space.cfg.norm_epsilon)


def extract_subnet(space: Space, params: dict, arch: dict, side: int = widths.LEFT) -> tuple[SubnetViT, dict]:
    """Gathers the active slices of `params` for `arch`: `(model, params)` with
    `model.apply({"params": params}, x) == Superformer.apply(..., x, arch, side=side)`."""
    a = space.check(arch)
    model = subnet_shape(space, a)
    pi = int(a["patch"])
    ie = space.embed_index(a, side)
    hs = space.hidden_scheme()
    # differentiable (the gradient of the extracted net flows back to `params`), and a copy:
    # no leaf of the subnet shares a buffer with `params` (a train step donates its state)
    g = jnp.array
    out = {"patch_embed": {"proj": {"kernel": g(params[f"patch{pi}_kernel"])[..., ie],
                                    "bias": g(params[f"patch{pi}_bias"])[ie]}},
           "cls_token": g(params[f"cls{pi}"])[..., ie], "pos_embedding": g(params[f"pos{pi}"])[..., ie],
           "norm": {"scale": g(params["norm_scale"])[ie], "bias": g(params["norm_bias"])[ie]},
           "head": {"kernel": g(params["head_kernel"])[ie], "bias": g(params["head_bias"])}}
    j = 0
    for i in range(space.depth):
        if a["ops"][i] == 0:
            continue
        p = params[f"block_{i}"]
        iq = widths.index_set(space.cfg.qkv_dim, int(space.qkv_widths[a["qkv"][i]]), hs, side=side)
        im = widths.index_set(space.cfg.mlp_dim, int(space.mlp_widths[a["mlp"][i]]), hs, side=side)
        o = int(a["ops"][i]) - 1
        wqk, bqk = g(p["qk_kernel"])[o], g(p["qk_bias"])[o]
        dense = lambda k, b: {"kernel": k, "bias": b}
        out[f"block_{j}"] = {
            "norm1": {"scale": g(p["norm1_scale"])[ie], "bias": g(p["norm1_bias"])[ie]},
            "norm2": {"scale": g(p["norm2_scale"])[ie], "bias": g(p["norm2_bias"])[ie]},
            "attention": {"query": dense(wqk[ie][:, 0][:, iq], bqk[0][iq]),
                          "key": dense(wqk[ie][:, 1][:, iq], bqk[1][iq]),
                          "value": dense(g(p["v_kernel"])[ie][:, iq], g(p["v_bias"])[iq]),
                          "out": dense(g(p["proj_kernel"])[iq][:, ie], g(p["proj_bias"])[ie])},
            "mlp": {"fc1": dense(g(p["fc1_kernel"])[ie][:, im], g(p["fc1_bias"])[im]),
                    "fc2": dense(g(p["fc2_kernel"])[im][:, ie], g(p["fc2_bias"])[ie])}}
        j += 1
    return model, jax.tree_util.tree_map(jnp.asarray, out)


def xla_matmul_flops(model: SubnetViT, params: dict, x: Array) -> float:
    """XLA cost-analysis FLOPs of the matmul work of a standalone net: every conv / Dense layer
    (compiled alone without its bias add, which is no multiply-add) plus the two attention einsums of each block, each
    compiled alone. Compare with `2 * Space.flops(arch)` (2 FLOPs per multiply-add)."""
    from jaxlab.core.flops import xla_flops
    from jaxlab.nas.flops import layer_calls

    total = 0.0
    for mod, shape, dtype in layer_calls(model, {"params": params}, x):
        mod = mod.clone(use_bias=False)  # bias adds are not multiply-adds
        xin = jnp.zeros(shape, dtype)
        shapes = jax.eval_shape(mod.init, jax.random.key(0), xin)
        v = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
        total += xla_flops(lambda v_, x_: mod.apply(v_, x_), v, xin)
    b, t = x.shape[0], (x.shape[1] // model.patch_size) * (x.shape[2] // model.patch_size) + 1
    for h, a, _ in model.blocks:
        q = jnp.zeros((b, t, h, a // h))
        w = jnp.zeros((b, h, t, t))
        total += xla_flops(lambda q_, k_: jnp.einsum("bqhd,bkhd->bhqk", q_, k_), q, q)
        total += xla_flops(lambda w_, v_: jnp.einsum("bhqk,bkhd->bqhd", w_, v_), w, q)
    return total
