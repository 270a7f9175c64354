"""Multi-head dot-product attention with the masks, biases and caches the transformer methods need.

Shapes: queries `[B, Tq, D]`, keys/values `[B, Tk, D]`, `H` heads of width `hd`
(`qkv_features = H * hd`). Per head `h`::

    Q_h = x_q W_q[h] + b_q[h]            [B, Tq, hd]
    K_h = x_kv W_k[h] + b_k[h]           [B, Tk, hd]
    V_h = x_kv W_v[h] + b_v[h]           [B, Tk, hd]
    A_h = softmax(scale * Q_h K_h^T + bias_h, masked)   [B, Tq, Tk]
    out = concat_h(A_h V_h) W_o + b_o    [B, Tq, out_features]

with `scale = 1/sqrt(hd)` unless given (T5 and VectorNet use `scale=1.0`; ViTAS fixes it for
every head count). Masks are boolean `[B, 1|H, Tq, Tk]` (True = may attend); see
`padding_mask`, `causal_mask` and `combine_masks`.

Supernet width masks (ViTAS) keep every shape static: `head_mask [H]` zeroes whole heads,
`qkv_mask [H*hd]` zeroes projection channels (a narrower head with the same `scale`),
`embed_mask [out_features]` zeroes output channels. With inputs that are zero on inactive
input channels, the masked module computes exactly the smaller module whose weights are the
active slices (tests/nn/test_attention.py checks this against extracted weights).

`RelativePositionBias` implements T5's bucketed relative positions; the module returns an additive
bias `[1, H, Tq, Tk]` that the caller passes to every layer that shares it (T5 computes it in
layer 0 of each stack and reuses it).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxlab.nn.dropout import Dropout
from jaxlab.nn.linear import Dense

__all__ = [
    "MASK_VALUE",
    "MultiHeadAttention",
    "RelativePositionBias",
    "attention_with_vjp",
    "causal_mask",
    "combine_masks",
    "dot_product_attention",
    "padding_mask",
    "relative_position_bucket",
]

Array = jnp.ndarray

# Large negative *finite* logit for masked keys: exp(MASK_VALUE - max) underflows to exactly 0,
# and, unlike -inf, a row whose keys are all masked gives no NaN (see `dot_product_attention`).
MASK_VALUE = float(jnp.finfo(jnp.float32).min) / 2


def _check_shape(name: str, value: Array | None, shape: tuple) -> None:
    if value is not None and tuple(jnp.shape(value)) != shape:
        raise ValueError(f"{name} must have shape {shape}, got {tuple(jnp.shape(value))}")


def padding_mask(valid: Array, q_len: int | None = None) -> Array:
    """Key padding mask from per-key validity.

    Args:
      valid: `[B, Tk]` boolean (or 0/1) array, True where the key/value token is real.
      q_len: if given, broadcast the query axis to this length; otherwise it is 1.

    Returns:
      `[B, 1, 1|q_len, Tk]` boolean mask (True = may attend), broadcastable over heads.
    """
    m = jnp.asarray(valid).astype(bool)[:, None, None, :]
    if q_len is not None:
        m = jnp.broadcast_to(m, (m.shape[0], 1, q_len, m.shape[-1]))
    return m


def causal_mask(length: int, k_len: int | None = None, offset: Any = 0) -> Array:
    """Causal mask `[1, 1, length, k_len]`: query `i` (at absolute position `offset + i`) may
    attend to key `j` iff `j <= offset + i`. `k_len` defaults to `length`; `offset` may be traced."""
    k_len = length if k_len is None else k_len
    q_pos = jnp.arange(length)[:, None] + offset
    return (jnp.arange(k_len)[None, :] <= q_pos)[None, None]


def combine_masks(*masks: Array | None) -> Array | None:
    """Logical AND of the given boolean masks (None entries are skipped; all None gives None)."""
    out = None
    for m in masks:
        if m is None:
            continue
        m = jnp.asarray(m).astype(bool)
        out = m if out is None else jnp.logical_and(out, m)
    return out


def relative_position_bucket(relative_position: Array, *, bidirectional: bool = True,
                             num_buckets: int = 32, max_distance: int = 128) -> Array:
    """T5's bucket index of a relative position `r = key_position - query_position` (int array).

    Bidirectional: half of the buckets are for `r > 0` (keys after the query), offset by
    `num_buckets // 2`; the other half for `r <= 0`, and `n = |r|`. Causal: all buckets for the
    past, `n = max(-r, 0)` (future keys share bucket 0 with `r = 0`). With `B` the buckets of one
    side and `E = B // 2`::

        bucket(n) = n                                                      if n < E
                  = min(B - 1, E + floor(log(n / E) / log(max_distance / E) * (B - E)))  otherwise

    so distances below `E` get one bucket each, larger ones log-spaced buckets up to
    `max_distance`, beyond which everything falls into the last bucket. Computed in float32 in
    this order (HF `modeling_t5.py` does the same), so pretrained T5 weights see the same buckets.

    Returns an int32 array of the input's shape, with values in `[0, num_buckets)`.
    """
    r = jnp.asarray(relative_position, jnp.int32)
    offset = jnp.zeros_like(r)
    if bidirectional:
        num_buckets //= 2
        offset = jnp.where(r > 0, num_buckets, 0)
        n = jnp.abs(r)
    else:
        n = jnp.maximum(-r, 0)
    max_exact = num_buckets // 2
    is_small = n < max_exact
    # max(n, 1) keeps log finite where the small branch is used anyway (also for gradients of nothing)
    ratio = jnp.log(jnp.maximum(n, 1).astype(jnp.float32) / max_exact) / jnp.float32(
        math.log(max_distance / max_exact))
    large = max_exact + (ratio * (num_buckets - max_exact)).astype(jnp.int32)
    large = jnp.minimum(large, num_buckets - 1)
    return offset + jnp.where(is_small, n, large)


class RelativePositionBias(nn.Module):
    """T5 relative position bias: a learned scalar per (bucket, head), added to attention logits.

    `bias[0, h, i, j] = E[bucket(j - (q_offset + i)), h]` with `E: [num_buckets, H]` and `bucket`
    from `relative_position_bucket`. Use `bidirectional=True` in encoders and `False` in causal
    decoders; cross-attention has none in T5.

    Call: `bias = RelativePositionBias(H)(q_len, k_len, q_offset=0)` -> `[1, H, q_len, k_len]`.
    While decoding with a KV cache, pass `k_len = max_len` and `q_offset = step` (may be traced).
    """

    num_heads: int
    num_buckets: int = 32
    max_distance: int = 128
    bidirectional: bool = True
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32
    embedding_init: Callable = nn.initializers.normal(1.0)

    @nn.compact
    def __call__(self, q_len: int, k_len: int, *, q_offset: Any = 0) -> Array:
        table = self.param("rel_embedding", self.embedding_init, (self.num_buckets, self.num_heads),
                           self.param_dtype)
        rel = jnp.arange(k_len)[None, :] - (jnp.arange(q_len)[:, None] + q_offset)
        buckets = relative_position_bucket(rel, bidirectional=self.bidirectional,
                                           num_buckets=self.num_buckets, max_distance=self.max_distance)
        bias = jnp.take(jnp.asarray(table, self.dtype), buckets, axis=0)  # [Tq, Tk, H]
        return jnp.transpose(bias, (2, 0, 1))[None]


def dot_product_attention(q: Array, k: Array, v: Array, *, scale: float, mask: Array | None = None,
                          bias: Array | None = None, dropout: Callable[[Array], Array] | None = None,
                          precision: Any = None, vjp: str = "autodiff") -> Array:
    """`softmax(scale * q k^T + bias) v` per head, with the softmax in float32.

    Args:
      q: `[B, Tq, H, hd]`; k, v: `[B, Tk, H, hd]`.
      scale: logit scale.
      mask: boolean, broadcastable to `[B, H, Tq, Tk]` (True = may attend).
      bias: additive logits, broadcastable to `[B, H, Tq, Tk]`.
      dropout: optional function applied to the attention weights.
      vjp: 'autodiff' (JAX differentiates the forward pass) or 'hand' (`attention_with_vjp`: the
        same forward pass with a hand-written backward pass; no forward-mode differentiation).

    Returns:
      `[B, Tq, H, hd]` in `q.dtype`. Masked keys get weight exactly 0; a query row with no
      unmasked key gets all-zero weights (so a zero output), never NaN, and finite gradients.
    """
    if vjp == "hand":
        keep = None
        if dropout is not None:
            keep = dropout(jnp.ones((q.shape[0], q.shape[2], q.shape[1], k.shape[1]), jnp.float32))
        return attention_with_vjp(q, k, v, bias, mask, keep, scale=scale, precision=precision)
    if vjp != "autodiff":
        raise ValueError(f"dot_product_attention: vjp must be 'autodiff' or 'hand', got {vjp!r}")
    weights = jax.nn.softmax(_masked_logits(q, k, bias, mask, scale, precision), axis=-1)
    if mask is not None:
        # rows with every key masked would otherwise be uniform; zero them (others are unchanged:
        # their masked weights already underflowed to 0)
        weights = jnp.where(mask, weights, 0.0)
    if dropout is not None:
        weights = dropout(weights)
    return jnp.einsum("bhqk,bkhd->bqhd", weights.astype(v.dtype), v, precision=precision)


def _masked_logits(q, k, bias, mask, scale, precision, k_spec="bkhd"):
    """`(scale q) k^T + bias` in float32, `[B, H, Tq, Tk]`, masked keys at `MASK_VALUE`; `k` is
    `[B, Tk, H, hd]` (`k_spec="bkhd"`) or a decoding cache's `[B, H, hd, Tk]` (`"bhdk"`).

    The scale multiplies the queries, as flax's attention does, not the `[B, H, Tq, Tk]` logits:
    XLA:CPU's YNNPACK fusion of the attention otherwise took the scale as a materialised
    `[B, H, Tq, Tk]` constant, written on every call (0.3-0.4 ms of a 9 ms ViT encoder)."""
    logits = jnp.einsum(f"bqhd,{k_spec}->bhqk", q * jnp.asarray(scale, q.dtype), k, precision=precision,
                        preferred_element_type=jnp.float32)
    if bias is not None:
        logits = logits + jnp.asarray(bias, jnp.float32)
    if mask is not None:
        logits = jnp.where(mask, logits, MASK_VALUE)
    return logits


def _key_layout(k: Array) -> Array:
    return jnp.transpose(k, (0, 2, 3, 1))  # [B, T, H, hd] -> [B, H, hd, T]


def _value_layout(v: Array) -> Array:
    return jnp.transpose(v, (0, 2, 1, 3))  # [B, T, H, hd] -> [B, H, T, hd]


def _cached_attention(q: Array, kt: Array, vt: Array, *, scale: float, mask: Array | None, bias: Array | None,
                      precision: Any, dropout: Callable[[Array], Array] | None = None,
                      vt_spec: str = "bhkd") -> Array:
    """`dot_product_attention` over a decoding cache: `q [B, Tq, H, hd]`, keys `kt [B, H, hd, Tk]`,
    values `vt [B, H, Tk, hd]` (`vt_spec="bhkd"`) or `[B, H, hd, Tk]` (`"bhdk"`) -> `[B, Tq, H,
    hd]` (the same masking rules and dropout; autodiff only).

    The value layouts, measured on XLA:CPU in beam search: with one query per row (decoding's
    self-attention) `[B, H, Tk, hd]` is the faster; with several (a cross-attention's grouped
    queries) `[B, H, Tk, hd]` made XLA emit a product 4x slower than with `[B, H, hd, Tk]`."""
    weights = jax.nn.softmax(_masked_logits(q, kt, bias, mask, scale, precision, k_spec="bhdk"), axis=-1)
    if mask is not None:
        weights = jnp.where(mask, weights, 0.0)
    if dropout is not None:
        weights = dropout(weights)
    return jnp.einsum(f"bhqk,{vt_spec}->bqhd", weights.astype(vt.dtype), vt, precision=precision)


def _sum_to(x: Array, shape: tuple) -> Array:
    """Sums `x` over the axes that `shape` broadcasts (size 1 there), keeping them."""
    axes = tuple(i for i, (a, b) in enumerate(zip(x.shape, shape)) if b == 1 and a != 1)
    return jnp.sum(x, axes, keepdims=True) if axes else x


@functools.partial(jax.custom_vjp, nondiff_argnums=(6, 7))
def attention_with_vjp(q: Array, k: Array, v: Array, bias: Array | None, mask: Array | None,
                       keep: Array | None, scale: float, precision: Any = None) -> Array:
    """`dot_product_attention` with a hand-written backward pass.

    Forward: `P = softmax(scale q k^T + bias)` with masked keys at weight 0, `out = (P * keep) v`
    (`keep`: the dropout multiplier, 0 or 1/(1 - rate), or None). Backward, per head, with
    `dO` the output cotangent::

        Pd = P * keep                           (kept from the forward pass)
        dV = Pd^T dO
        dP = dO V^T
        dS = Pd * dP - P * rowsum(Pd * dP)      (the softmax's Jacobian; 0 on masked keys)
        dQ = scale dS K,   dK = scale dS^T Q,   dbias = dS summed over bias's broadcast axes

    The same algebra autodiff derives (`P (dP keep - rowsum(dP keep P))`, with `P keep = Pd`),
    written as four batched products and two passes over the `[B, H, Tq, Tk]` weights; XLA:CPU
    otherwise materialises the mask and bias broadcasts and runs several more passes. One
    attention core (`[32, 64, 4, 16]`, causal mask, T5 bias) forward + backward on one core:
    3.2 -> 2.5 ms. With dropout the backward pass reads `Pd`, not `keep`, so the dropout mask
    is read once, in the forward pass. In CoditT5's training step at its experiments' batch
    (six attention cores, dropout 0.1) that took the cost of dropout from 19.7 to 15.1 ms on
    one core and from 10.0 to 8.1 ms on two (each against the same step without dropout, in
    one process). No forward-mode differentiation (`jax.jvp` raises); use `vjp='autodiff'`
    for that.
    """
    return _attention_fwd(q, k, v, bias, mask, keep, scale, precision)[0]


def _attention_fwd(q, k, v, bias, mask, keep, scale, precision):
    logits = _masked_logits(q, k, bias, mask, scale, precision)
    e = jnp.exp(logits - jnp.max(logits, axis=-1, keepdims=True))
    p = e * (1.0 / jnp.sum(e, axis=-1, keepdims=True))
    if mask is not None:
        p = jnp.where(mask, p, 0.0)
    pd = p if keep is None else p * keep
    out = jnp.einsum("bhqk,bkhd->bqhd", pd.astype(v.dtype), v, precision=precision)
    # p is 0 on masked keys, so dS is too; the backward pass needs keep only through pd
    return out, (q, k, v, p, None if keep is None else pd, bias)


def _attention_bwd(scale, precision, res, d_out):
    q, k, v, p, pd, bias = res
    dv = jnp.einsum("bhqk,bqhd->bkhd", (p if pd is None else pd).astype(d_out.dtype), d_out, precision=precision,
                    preferred_element_type=jnp.float32).astype(v.dtype)
    dp = jnp.einsum("bqhd,bkhd->bhqk", d_out, v, precision=precision, preferred_element_type=jnp.float32)
    if pd is None:
        ds = p * (dp - jnp.sum(dp * p, axis=-1, keepdims=True))
    else:  # p (dp keep - rowsum(dp keep p)) with p keep = pd: the dropout mask is not read again
        pd_dp = pd * dp
        ds = pd_dp - p * jnp.sum(pd_dp, axis=-1, keepdims=True)
    dq = scale * jnp.einsum("bhqk,bkhd->bqhd", ds.astype(k.dtype), k, precision=precision,
                            preferred_element_type=jnp.float32)
    dk = scale * jnp.einsum("bhqk,bqhd->bkhd", ds.astype(q.dtype), q, precision=precision,
                            preferred_element_type=jnp.float32)
    d_bias = None
    if bias is not None:
        shape = jnp.shape(bias)
        d_bias = _sum_to(ds, (1,) * (ds.ndim - len(shape)) + shape).reshape(shape).astype(jnp.result_type(bias))
    return dq.astype(q.dtype), dk.astype(k.dtype), dv, d_bias, None, None


attention_with_vjp.defvjp(_attention_fwd, _attention_bwd)


class MultiHeadAttention(nn.Module):
    """Multi-head attention `[B, Tq, D], [B, Tk, D] -> [B, Tq, out_features]` (see module docstring).

    Attributes:
      num_heads: H.
      head_dim: per-head width hd; if None, `qkv_features // num_heads`.
      qkv_features: H * hd; defaults to `num_heads * head_dim`, or to the query width D.
      out_features: output width; defaults to D.
      scale: logit scale; None means `1/sqrt(hd)`.
      use_bias: biases in the four projections (T5 has none).
      dropout_rate: dropout on the attention weights (active when `deterministic=False`,
        needs the 'dropout' RNG).
      causal: restrict query i to keys j <= i (query and key positions both start at 0).
      decode: autoregressive self-attention with a key/value cache in the 'cache' collection.
        `init` (or any call while no cache exists) with the full `[B, max_len, D]` input creates
        `cached_key` (`[B, H, hd, max_len]`), `cached_value` (`[B, H, max_len, hd]`: the layouts
        of the two products, so a step neither transposes the cache nor copies it into another
        layout) and `cache_index` (int32 scalar) and
        returns the ordinary causal forward. Each later call with `mutable=['cache']` and
        `[B, T, D]` (usually T = 1) writes its keys/values at `cache_index`, attends causally over
        the cache and advances the index by T. Decode mode is always causal; masks and biases
        given then must cover `Tk = max_len` key positions (build relative biases with
        `q_offset = step`). Writing past `max_len` is not checked.
      kernel_init, bias_init: projection initialisers.
      precision: matmul precision (jax.lax.Precision) for projections and attention.
      attention_vjp: 'autodiff' or 'hand' (`attention_with_vjp`'s backward pass; no forward-mode
        differentiation through the module).
      cache_kv: cross-attention over a memory that stays fixed while decoding (an encoder's
        output): a call with the 'cache' collection mutable and no cached memory projects
        `inputs_kv` and stores the keys and values (`memory_key`, `memory_value`, both `[B, H,
        hd, Tk]`, the layout of the products; see `_cached_attention`); later calls reuse them
        and ignore `inputs_kv`'s values, so each decoding step skips the two projections.

    Grouped queries: when `inputs_q` has `G` times as many rows as `inputs_kv` (a beam search's
    `G` beams per input, each input's beams in consecutive rows), query rows `i G ... i G + G - 1`
    all attend to memory row `i`, as `G` extra query positions of one row: the memory is
    projected (or cached) once per input instead of once per beam, and each head's scores are one
    `[G Tq, Tk]` product. Only for cross-attention (no `causal`, no `decode`, no `bias`); a mask
    must then have one row per memory row (or one in all).
    """

    num_heads: int
    head_dim: int | None = None
    qkv_features: int | None = None
    out_features: int | None = None
    scale: float | None = None
    use_bias: bool = True
    dropout_rate: float = 0.0
    causal: bool = False
    decode: bool = False
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32
    kernel_init: Callable = nn.initializers.xavier_uniform()
    bias_init: Callable = nn.initializers.zeros
    precision: Any = None
    attention_vjp: str = "autodiff"
    cache_kv: bool = False

    def _widths(self, d_in: int) -> tuple[int, int]:
        if self.head_dim is not None:
            qkv = self.num_heads * self.head_dim
            if self.qkv_features is not None and self.qkv_features != qkv:
                raise ValueError(f"MultiHeadAttention: qkv_features={self.qkv_features} != num_heads*head_dim="
                                 f"{self.num_heads}*{self.head_dim}")
            return qkv, self.head_dim
        qkv = self.qkv_features if self.qkv_features is not None else d_in
        if qkv % self.num_heads:
            raise ValueError(f"MultiHeadAttention: qkv_features={qkv} is not divisible by num_heads={self.num_heads}")
        return qkv, qkv // self.num_heads

    @nn.compact
    def __call__(self, inputs_q: Array, inputs_kv: Array | None = None, *, mask: Array | None = None,
                 bias: Array | None = None, head_mask: Array | None = None, qkv_mask: Array | None = None,
                 embed_mask: Array | None = None, deterministic: bool = True) -> Array:
        """Attend from `inputs_q [B, Tq, D]` to `inputs_kv [B, Tk, D]` (self-attention if None).

        Args:
          mask: boolean `[B|1, 1|H, Tq, Tk]`, True = may attend (combined with causal/decode masks).
          bias: additive logits `[B|1, 1|H, Tq, Tk]` (e.g. `RelativePositionBias`).
          head_mask: `[H]` 0/1 floats; masked heads contribute zero.
          qkv_mask: `[H*hd]` 0/1 floats on the q, k, v projection channels.
          embed_mask: `[out_features]` 0/1 floats on the output channels.
          deterministic: disable attention dropout.

        Returns:
          `[B, Tq, out_features]`. Query rows with no unmasked key (in any head) are exactly zero.
        """
        if inputs_kv is None:
            inputs_kv = inputs_q
        elif self.decode:
            raise ValueError("MultiHeadAttention(decode=True) is self-attention only: pass inputs_kv=None "
                             "(cross-attention over a fixed memory caches with cache_kv=True)")
        if self.cache_kv and self.decode:
            raise ValueError("MultiHeadAttention: cache_kv is for cross-attention, decode for self-attention; "
                             "set one of them")
        if inputs_q.ndim != 3 or inputs_kv.ndim != 3:
            raise ValueError(f"MultiHeadAttention expects [B, T, D] inputs, got {inputs_q.shape} and {inputs_kv.shape}")
        d_in = inputs_q.shape[-1]
        qkv, hd = self._widths(d_in)
        out_features = self.out_features if self.out_features is not None else d_in
        scale = 1.0 / math.sqrt(hd) if self.scale is None else self.scale
        dense = lambda n, name: Dense(n, use_bias=self.use_bias, dtype=self.dtype, param_dtype=self.param_dtype,
                                      kernel_init=self.kernel_init, bias_init=self.bias_init,
                                      precision=self.precision, name=name)
        _check_shape("head_mask", head_mask, (self.num_heads,))
        _check_shape("qkv_mask", qkv_mask, (qkv,))
        _check_shape("embed_mask", embed_mask, (out_features,))
        inputs_q = inputs_q.astype(self.dtype)
        inputs_kv = inputs_kv.astype(self.dtype)
        split = lambda t: t.reshape(t.shape[:2] + (self.num_heads, hd))
        qm = None if qkv_mask is None else jnp.asarray(qkv_mask, self.dtype)
        q = dense(qkv, "query")(inputs_q)
        q = split(q if qm is None else q * qm)
        memory = self.cache_kv and self.has_variable("cache", "memory_key")
        if memory:  # stored in the products' layouts, like the decoding cache
            k, v = self.get_variable("cache", "memory_key"), self.get_variable("cache", "memory_value")
        else:
            k, v = dense(qkv, "key")(inputs_kv), dense(qkv, "value")(inputs_kv)
            k, v = (k, v) if qm is None else (k * qm, v * qm)
            k, v = split(k), split(v)
            if self.cache_kv and self.is_mutable_collection("cache"):
                self.put_variable("cache", "memory_key", _key_layout(k))
                self.put_variable("cache", "memory_value", _key_layout(v))
        t_q, rows = q.shape[1], q.shape[0]
        groups = self._groups(rows, k.shape[0], mask, bias)
        if groups > 1:  # memory row i serves query rows i G .. i G + G - 1, as G Tq query positions
            q = q.reshape((k.shape[0], groups * t_q) + q.shape[2:])
            if mask is not None and mask.shape[-2] != 1:
                mask = jnp.tile(mask, (1, 1, groups, 1))
        dropout = None
        if self.dropout_rate > 0.0 and not deterministic:
            dropout = lambda w: Dropout(self.dropout_rate, deterministic=False)(w)
        if memory:
            o = _cached_attention(q, k, v, scale=scale, mask=mask, bias=bias, precision=self.precision,
                                  dropout=dropout, vt_spec="bhdk")
            return self._output(o, mask, t_q, rows, groups, qkv, out_features, head_mask, embed_mask, dense)

        if self.decode:
            have_cache = self.has_variable("cache", "cached_key")
            # keys as [B, H, hd, max_len] and values as [B, H, max_len, hd]: the layouts of the two
            # products, so that a step writes one column and reads the cache without a transpose
            cached_key = self.variable("cache", "cached_key", jnp.zeros, _key_layout(k).shape, k.dtype)
            cached_value = self.variable("cache", "cached_value", jnp.zeros, _value_layout(v).shape, v.dtype)
            cache_index = self.variable("cache", "cache_index", lambda: jnp.array(0, jnp.int32))
            if have_cache:
                max_len = cached_key.value.shape[-1]
                idx = cache_index.value
                kt = jax.lax.dynamic_update_slice(cached_key.value, _key_layout(k).astype(cached_key.value.dtype),
                                                  (0, 0, 0, idx))
                vt = jax.lax.dynamic_update_slice(cached_value.value, _value_layout(v).astype(cached_value.value.dtype),
                                                  (0, 0, idx, 0))
                cached_key.value, cached_value.value = kt, vt
                cache_index.value = idx + t_q
                mask = combine_masks(mask, causal_mask(t_q, max_len, offset=idx))
                o = _cached_attention(q, kt, vt, scale=scale, mask=mask, bias=bias, precision=self.precision,
                                      dropout=dropout)
                return self._output(o, mask, t_q, rows, groups, qkv, out_features, head_mask, embed_mask, dense)
            else:
                mask = combine_masks(mask, causal_mask(t_q, k.shape[1]))
        elif self.causal:
            mask = combine_masks(mask, causal_mask(t_q, k.shape[1]))

        o = dot_product_attention(q, k, v, scale=scale, mask=mask, bias=bias, dropout=dropout,
                                  precision=self.precision, vjp=self.attention_vjp)
        return self._output(o, mask, t_q, rows, groups, qkv, out_features, head_mask, embed_mask, dense)

    def _output(self, o, mask, t_q, rows, groups, qkv, out_features, head_mask, embed_mask, dense):
        """The output projection of the heads `o [B, Tq, H, hd]`, rows without keys zeroed."""
        if head_mask is not None:
            o = o * jnp.asarray(head_mask, o.dtype)[:, None]
        out = dense(out_features, "out")(o.reshape(o.shape[:2] + (qkv,)))
        if mask is not None:
            # a query row with no key to attend to would output the bias alone: make it zero
            q_pos = groups * t_q  # query positions per memory row; row_ok is [B|1, G Tq]
            row_ok = jnp.any(jnp.broadcast_to(mask, mask.shape[:2] + (q_pos, mask.shape[-1])), axis=(1, 3))
            out = jnp.where(row_ok[..., None], out, jnp.zeros((), out.dtype))
        if embed_mask is not None:
            out = out * jnp.asarray(embed_mask, out.dtype)
        return out.reshape((rows, t_q) + out.shape[2:]) if groups > 1 else out

    def _groups(self, q_rows: int, kv_rows: int, mask: Array | None, bias: Array | None) -> int:
        """Query rows per memory row (see the class docstring's "grouped queries")."""
        if q_rows == kv_rows:
            return 1
        if q_rows % kv_rows:
            raise ValueError(f"MultiHeadAttention: {q_rows} query rows for {kv_rows} memory rows; grouped "
                             "queries need a whole number of query rows per memory row")
        if self.decode or self.causal or bias is not None:
            raise ValueError("MultiHeadAttention: grouped queries (more query rows than memory rows) are for "
                             "cross-attention without causal, decode or bias")
        if mask is not None and jnp.shape(mask)[0] not in (1, kv_rows):
            raise ValueError(f"MultiHeadAttention: with grouped queries the mask needs 1 or {kv_rows} rows (one "
                             f"per memory row), got shape {jnp.shape(mask)}")
        return q_rows // kv_rows
