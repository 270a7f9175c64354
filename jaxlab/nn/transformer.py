"""Pre-norm transformer blocks: `EncoderBlock`, `DecoderBlock`, an `Encoder` stack, and the
norms and MLP they use (ViTAS, CodiT5, Video2StyleGAN, VectorNet).

Pre-norm residual blocks on tokens `x: [B, T, D]`::

    EncoderBlock:  y = x + Drop(MHA(N1(x)))                   (self-attention)
                   z = y + Drop(MLP(N2(y)))
    DecoderBlock:  y = x + Drop(MHA_causal(N1(x)))            (causal self-attention, KV cache)
                   u = y + Drop(MHA(N2(y), enc))              (cross-attention over the encoder)
                   z = u + Drop(MLP(N3(u)))
    MLP(x) = W2 Drop(act(W1 x + b1)) + b2                     (hidden = mlp_hidden or mlp_ratio * D)

`N` is `LayerNorm` (`(x - mean) / sqrt(var + eps) * scale + bias`) or `RMSNorm`
(`x / sqrt(mean(x^2) + eps) * scale`, T5's norm: no mean, no bias), both computed in float32.

Supernet width masks (0/1 float arrays, static shapes): `embed_mask [D]` on the token channels
(norm statistics are taken over the active channels only, and every branch output is masked),
`mlp_mask [hidden]` on the MLP hidden units, `head_mask [H]` / `qkv_mask [H*hd]` on attention.
A masked block equals the smaller block whose weights are the active slices, for any index set
(prefix, bilateral, cyclic), on the active channels; inactive channels are zero.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxlab.nn.attention import MultiHeadAttention, RelativePositionBias, _check_shape
from jaxlab.nn.dropout import Dropout
from jaxlab.nn.linear import Dense

__all__ = [
    "DecoderBlock", "Encoder", "EncoderBlock", "FeedForward", "LayerNorm", "RMSNorm", "get_activation", "make_norm",
]

Array = jnp.ndarray

_ACTIVATIONS = {
    "gelu": partial(jax.nn.gelu, approximate=False),
    "gelu_tanh": partial(jax.nn.gelu, approximate=True),
    "relu": jax.nn.relu,
    "silu": jax.nn.silu,
    "tanh": jnp.tanh,
}


def get_activation(activation: str | Callable) -> Callable:
    """An activation by name ('gelu' = exact erf GELU, 'gelu_tanh', 'relu', 'silu', 'tanh') or a callable."""
    if callable(activation):
        return activation
    if activation not in _ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; expected one of {sorted(_ACTIVATIONS)} or a callable")
    return _ACTIVATIONS[activation]


def _masked_mean(x: Array, mask: Array | None) -> Array:
    if mask is None:
        return jnp.mean(x, axis=-1, keepdims=True)
    return jnp.sum(x * mask, axis=-1, keepdims=True) / jnp.maximum(jnp.sum(mask), 1.0)


class LayerNorm(nn.Module):
    """Layer normalisation over the last axis, `[..., D] -> [..., D]`, statistics in float32.

    `y = (x - mean(x)) / sqrt(var(x) + eps) * scale + bias`. With `mask [D]` (0/1), mean and
    variance are over the active channels only and inactive outputs are zero, which equals a
    LayerNorm of width `sum(mask)` on the active channels.
    """

    epsilon: float = 1e-6
    use_bias: bool = True
    use_scale: bool = True
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: Array, mask: Array | None = None) -> Array:
        d = x.shape[-1]
        xf = x.astype(jnp.float32)
        m = None if mask is None else jnp.asarray(mask, jnp.float32)
        mean = _masked_mean(xf, m)
        xc = xf - mean
        var = _masked_mean(xc * xc, m)
        y = xc * jax.lax.rsqrt(var + self.epsilon)
        if self.use_scale:
            y = y * jnp.asarray(self.param("scale", nn.initializers.ones, (d,), self.param_dtype), jnp.float32)
        if self.use_bias:
            y = y + jnp.asarray(self.param("bias", nn.initializers.zeros, (d,), self.param_dtype), jnp.float32)
        if m is not None:
            y = y * m
        return y.astype(self.dtype)


class RMSNorm(nn.Module):
    """Root-mean-square norm (T5), `[..., D] -> [..., D]`, in float32:
    `y = x / sqrt(mean(x^2) + eps) * scale` (no centring, no bias). With `mask [D]` the mean is
    over the active channels and inactive outputs are zero."""

    epsilon: float = 1e-6
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: Array, mask: Array | None = None) -> Array:
        d = x.shape[-1]
        xf = x.astype(jnp.float32)
        m = None if mask is None else jnp.asarray(mask, jnp.float32)
        if m is not None:
            xf = xf * m
        ms = _masked_mean(xf * xf, m)
        y = xf * jax.lax.rsqrt(ms + self.epsilon)
        y = y * jnp.asarray(self.param("scale", nn.initializers.ones, (d,), self.param_dtype), jnp.float32)
        return y.astype(self.dtype)


def make_norm(kind: str, *, epsilon: float = 1e-6, dtype: Any = jnp.float32, param_dtype: Any = jnp.float32,
              name: str | None = None) -> nn.Module:
    """`'layernorm'` -> `LayerNorm`, `'rmsnorm'` -> `RMSNorm` (weight only, T5)."""
    if kind == "layernorm":
        return LayerNorm(epsilon=epsilon, dtype=dtype, param_dtype=param_dtype, name=name)
    if kind == "rmsnorm":
        return RMSNorm(epsilon=epsilon, dtype=dtype, param_dtype=param_dtype, name=name)
    raise ValueError(f"norm must be 'layernorm' or 'rmsnorm', got {kind!r}")


class FeedForward(nn.Module):
    """Two-layer MLP `[..., D] -> [..., out_features or D]`: `W2 Drop(act(W1 x + b1) * mlp_mask) + b2`,
    the output multiplied by `embed_mask` when given (`fc1`, `fc2` are the Dense layers)."""

    hidden: int
    out_features: int | None = None
    activation: str | Callable = "gelu"
    dropout_rate: float = 0.0
    use_bias: bool = True
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32
    kernel_init: Callable = nn.initializers.xavier_uniform()

    @nn.compact
    def __call__(self, x: Array, *, mlp_mask: Array | None = None, embed_mask: Array | None = None,
                 deterministic: bool = True) -> Array:
        dense = partial(Dense, use_bias=self.use_bias, dtype=self.dtype, param_dtype=self.param_dtype,
                        kernel_init=self.kernel_init)
        _check_shape("mlp_mask", mlp_mask, (self.hidden,))
        h = get_activation(self.activation)(dense(self.hidden, name="fc1")(x))
        if mlp_mask is not None:
            h = h * jnp.asarray(mlp_mask, h.dtype)
        h = Dropout(self.dropout_rate)(h, deterministic=deterministic)
        y = dense(self.out_features or x.shape[-1], name="fc2")(h)
        if embed_mask is not None:
            y = y * jnp.asarray(embed_mask, y.dtype)
        return y


class _BlockConfig(nn.Module):
    """Fields shared by the blocks and the stack (not used on its own).

    Attributes:
      num_heads: attention heads H.
      head_dim: per-head width; None means `qkv_features // H`.
      qkv_features: attention width H*hd; None means D (or H*head_dim).
      mlp_ratio: MLP hidden = int(mlp_ratio * D) unless `mlp_hidden` is given.
      activation: MLP activation ('gelu' exact by default; T5 uses 'relu').
      dropout_rate: dropout on the MLP hidden units and on each residual branch.
      attention_dropout_rate: dropout on the attention weights.
      norm: 'layernorm' or 'rmsnorm'; norm_epsilon its epsilon.
      use_bias: biases in the attention and MLP Dense layers (T5: False).
      attention_scale: logit scale; None means 1/sqrt(hd) (T5, VectorNet: 1.0).
    """

    num_heads: int
    head_dim: int | None = None
    qkv_features: int | None = None
    mlp_ratio: float = 4.0
    mlp_hidden: int | None = None
    activation: str | Callable = "gelu"
    dropout_rate: float = 0.0
    attention_dropout_rate: float = 0.0
    norm: str = "layernorm"
    norm_epsilon: float = 1e-6
    use_bias: bool = True
    attention_scale: float | None = None
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32
    kernel_init: Callable = nn.initializers.xavier_uniform()

    def _norm(self, name: str) -> nn.Module:
        return make_norm(self.norm, epsilon=self.norm_epsilon, dtype=self.dtype, param_dtype=self.param_dtype,
                         name=name)

    def _attention(self, name: str, **kw) -> MultiHeadAttention:
        return MultiHeadAttention(num_heads=self.num_heads, head_dim=self.head_dim, qkv_features=self.qkv_features,
                                  scale=self.attention_scale, use_bias=self.use_bias,
                                  dropout_rate=self.attention_dropout_rate, dtype=self.dtype,
                                  param_dtype=self.param_dtype, kernel_init=self.kernel_init, name=name, **kw)

    def _mlp(self, d: int) -> FeedForward:
        hidden = self.mlp_hidden if self.mlp_hidden is not None else int(self.mlp_ratio * d)
        return FeedForward(hidden, activation=self.activation, dropout_rate=self.dropout_rate, use_bias=self.use_bias,
                   dtype=self.dtype, param_dtype=self.param_dtype, kernel_init=self.kernel_init, name="mlp")

    def _block_fields(self) -> dict:
        return {f: getattr(self, f) for f in _BLOCK_FIELDS}


_BLOCK_FIELDS = ("num_heads", "head_dim", "qkv_features", "mlp_ratio", "mlp_hidden", "activation", "dropout_rate",
                 "attention_dropout_rate", "norm", "norm_epsilon", "use_bias", "attention_scale", "dtype",
                 "param_dtype", "kernel_init")


class EncoderBlock(_BlockConfig):
    """Pre-norm self-attention + MLP block, `[B, T, D] -> [B, T, D]` (see module docstring).

    Submodules: `norm1`, `attention`, `norm2`, `mlp`. Fields: see `_BlockConfig`.
    """

    @nn.compact
    def __call__(self, x: Array, *, mask: Array | None = None, bias: Array | None = None,
                 head_mask: Array | None = None, qkv_mask: Array | None = None,
                 embed_mask: Array | None = None, mlp_mask: Array | None = None,
                 deterministic: bool = True) -> Array:
        """Args: x `[B, T, D]`; mask `[B|1, 1|H, T, T]` boolean; bias `[B|1, 1|H, T, T]`; head_mask `[H]`;
        qkv_mask `[H*hd]`; embed_mask `[D]`; mlp_mask `[hidden]`; deterministic disables dropout."""
        x = x.astype(self.dtype)
        if embed_mask is not None:
            x = x * jnp.asarray(embed_mask, x.dtype)
        h = self._norm("norm1")(x, embed_mask)
        h = self._attention("attention")(h, mask=mask, bias=bias, head_mask=head_mask, qkv_mask=qkv_mask,
                                         embed_mask=embed_mask, deterministic=deterministic)
        x = x + Dropout(self.dropout_rate)(h, deterministic=deterministic)
        h = self._norm("norm2")(x, embed_mask)
        h = self._mlp(x.shape[-1])(h, mlp_mask=mlp_mask, embed_mask=embed_mask, deterministic=deterministic)
        return x + Dropout(self.dropout_rate)(h, deterministic=deterministic)


class DecoderBlock(_BlockConfig):
    """Pre-norm decoder block `[B, T, D], [B, S, De] -> [B, T, D]`: causal self-attention (with a KV
    cache when `decode=True`), cross-attention over the encoder output, MLP.

    Submodules: `norm1`, `self_attention`, `norm2`, `cross_attention`, `norm3`, `mlp`.

    Decoding: `init` with the full `[B, max_len, D]` target creates the cache; then call with
    `[B, 1, D]` tokens and `mutable=['cache']`; step by step this equals the uncached causal
    forward. A `self_bias` (e.g. a causal `RelativePositionBias`) must then be `[1|B, H, 1, max_len]`
    (built with `q_offset = step`).
    """

    decode: bool = False

    @nn.compact
    def __call__(self, x: Array, encoded: Array, *, self_mask: Array | None = None,
                 cross_mask: Array | None = None, self_bias: Array | None = None,
                 cross_bias: Array | None = None, deterministic: bool = True) -> Array:
        """Args: x `[B, T, D]` target tokens; encoded `[B, S, De]`; self_mask `[B|1, 1|H, T, T]` (AND-ed
        with the causal mask); cross_mask `[B|1, 1|H, T, S]` (e.g. `padding_mask(src_valid)`);
        self_bias / cross_bias additive logits of the same shapes."""
        x = x.astype(self.dtype)
        h = self._norm("norm1")(x)
        h = self._attention("self_attention", causal=True, decode=self.decode)(
            h, mask=self_mask, bias=self_bias, deterministic=deterministic)
        x = x + Dropout(self.dropout_rate)(h, deterministic=deterministic)
        h = self._norm("norm2")(x)
        h = self._attention("cross_attention", out_features=x.shape[-1])(
            h, encoded, mask=cross_mask, bias=cross_bias, deterministic=deterministic)
        x = x + Dropout(self.dropout_rate)(h, deterministic=deterministic)
        h = self._norm("norm3")(x)
        h = self._mlp(x.shape[-1])(h, deterministic=deterministic)
        return x + Dropout(self.dropout_rate)(h, deterministic=deterministic)


class Encoder(_BlockConfig):
    """`num_layers` `EncoderBlock`s (`block_0`, ...) and a final norm (`final_norm`), `[B, T, D] -> [B, T, D]`.

    With `relative_attention=True` one bidirectional `RelativePositionBias` (`relative_bias`) is
    computed once and added to every layer's logits (T5). Per-layer supernet masks carry a leading
    layer axis: `head_masks [L, H]`, `qkv_masks [L, H*hd]`, `mlp_masks [L, hidden]`;
    `layer_mask [L]` (0/1) turns a block into the identity; `embed_mask [D]` is shared.
    """

    num_layers: int = 6
    final_norm: bool = True
    relative_attention: bool = False
    num_buckets: int = 32
    max_distance: int = 128

    @nn.compact
    def __call__(self, x: Array, *, mask: Array | None = None, bias: Array | None = None,
                 head_masks: Array | None = None, qkv_masks: Array | None = None,
                 embed_mask: Array | None = None, mlp_masks: Array | None = None,
                 layer_mask: Array | None = None, deterministic: bool = True) -> Array:
        x = x.astype(self.dtype)
        if self.relative_attention:
            t = x.shape[1]
            rel = RelativePositionBias(self.num_heads, num_buckets=self.num_buckets, max_distance=self.max_distance,
                                       bidirectional=True, dtype=self.dtype, param_dtype=self.param_dtype,
                                       name="relative_bias")(t, t)
            bias = rel if bias is None else bias + rel
        for name, m in (("head_masks", head_masks), ("qkv_masks", qkv_masks), ("mlp_masks", mlp_masks),
                        ("layer_mask", layer_mask)):
            if m is not None and jnp.shape(m)[0] != self.num_layers:
                raise ValueError(f"Encoder: {name} needs a leading axis of num_layers={self.num_layers}, "
                                 f"got shape {jnp.shape(m)}")
        pick = lambda a, i: None if a is None else a[i]
        for i in range(self.num_layers):
            y = EncoderBlock(**self._block_fields(), name=f"block_{i}")(
                x, mask=mask, bias=bias, head_mask=pick(head_masks, i), qkv_mask=pick(qkv_masks, i),
                embed_mask=embed_mask, mlp_mask=pick(mlp_masks, i), deterministic=deterministic)
            x = y if layer_mask is None else jnp.where(layer_mask[i] > 0, y, x)
        if self.final_norm:
            x = self._norm("final_norm")(x, embed_mask)
        return x
