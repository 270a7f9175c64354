"""A T5 encoder-decoder in Flax built on `jaxlab.nn` blocks (spec section 2.5).

Matches HF `modeling_t5.py` in structure so that T5/CodeT5 weights could be mapped onto it:

    enc = RMSNorm(EncoderLayer^L(Drop(E[src])))        EncoderLayer: x + Drop(SelfAttn(RMS(x), bias_enc))
                                                                     x + Drop(FF(RMS(x)))
    dec = RMSNorm(DecoderLayer^L(Drop(E[tgt_in])))     DecoderLayer: causal self-attn (bias_dec, KV cache),
                                                                     cross-attn over enc (no bias), FF
    logits = (Drop(dec) * d_model^-0.5) E^T            (tied; an untied `lm_head` otherwise)

Attention has no biases; the relative-position bias (`nn.RelativePositionBias`, 32 buckets,
max distance 128) is computed in layer 0 of each stack and shared by all layers, bidirectional
in the encoder and causal in the decoder, none in cross-attention. FF is `relu` (T5 v1.0,
CodeT5) or gated-GELU (`wo(gelu_tanh(wi_0 x) * wi_1 x)`, T5 v1.1). RMSNorm weight-only in fp32.

Logit scale (reconstruction, `attention_scale`): T5 uses no 1/sqrt(d_kv) and instead initialises
W_q with std (d_model d_kv)^-1/2; "sqrt" keeps the usual 1/sqrt(d_kv) with a common init, which
is the same function with W_q rescaled (a converter multiplies W_q by d_kv^-1/2 for "none").

Decoding: `T5(config, decode=True)` keeps a key/value cache in the `cache` collection (the
self-attention caches of `nn.MultiHeadAttention`, each cross-attention's projected encoder
output, `cache_kv=True`, and the decoder's position); see `decoding.py`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxlab.nn.attention import MultiHeadAttention, RelativePositionBias, padding_mask
from jaxlab.nn.dropout import Dropout
from jaxlab.nn.linear import Dense
from jaxlab.nn.transformer import FeedForward, RMSNorm

__all__ = ["T5Shape", "T5", "GatedFeedForward", "SHAPES", "shifted_right"]

Array = jnp.ndarray


@dataclasses.dataclass(frozen=True)
class T5Shape:
    """The static hyper-parameters of a T5 (hashable, so it can be a Linen field).

    `attention_vjp`: 'hand' differentiates the attention cores with `jaxlab.nn.attention.
    attention_with_vjp`'s hand-written backward pass (2-6% faster steps on XLA:CPU at batch
    32 x 64 tokens, 0-10% slower at 8 x 32; `scripts/bench_coditt5.py`), 'autodiff' lets JAX
    derive it (needed for `jax.jvp` / forward mode).
    Parameters are the same either way.
    """

    vocab_size: int = 32100
    d_model: int = 768
    num_heads: int = 12
    d_kv: int = 64
    d_ff: int = 3072
    num_encoder_layers: int = 12
    num_decoder_layers: int = 12
    feed_forward: Literal["relu", "gated-gelu"] = "relu"
    tie_embeddings: bool = True
    dropout_rate: float = 0.1
    num_buckets: int = 32
    max_distance: int = 128
    attention_scale: Literal["none", "sqrt"] = "sqrt"
    dtype: str = "float32"
    attention_vjp: Literal["hand", "autodiff"] = "hand"


#: Named shapes: `base` is CodeT5-base / T5-base (d 768, 12+12 layers, 12 heads, d_ff 3072, ReLU FF).
SHAPES = {
    "tiny": dict(d_model=64, num_heads=4, d_kv=16, d_ff=128, num_encoder_layers=2, num_decoder_layers=2),
    "mini": dict(d_model=128, num_heads=4, d_kv=32, d_ff=512, num_encoder_layers=3, num_decoder_layers=3),
    "small": dict(d_model=512, num_heads=8, d_kv=64, d_ff=2048, num_encoder_layers=6, num_decoder_layers=6),
    "base": dict(d_model=768, num_heads=12, d_kv=64, d_ff=3072, num_encoder_layers=12, num_decoder_layers=12),
}


def shifted_right(labels: Array, start_id: int = 0) -> Array:
    """Decoder inputs `[B, T]`: labels shifted right by one with `start_id` first (T5: pad id 0)."""
    return jnp.concatenate([jnp.full_like(labels[:, :1], start_id), labels[:, :-1]], axis=1)


class GatedFeedForward(nn.Module):
    """T5 v1.1 gated-GELU FF `[..., D] -> [..., D]`: `wo(Drop(gelu_tanh(wi_0 x) * (wi_1 x)))`, no biases."""

    hidden: int
    dropout_rate: float = 0.0
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: Array, *, deterministic: bool = True) -> Array:
        dense = lambda n, name: Dense(n, use_bias=False, dtype=self.dtype, name=name)
        h = jax.nn.gelu(dense(self.hidden, "wi_0")(x), approximate=True) * dense(self.hidden, "wi_1")(x)
        h = Dropout(self.dropout_rate)(h, deterministic=deterministic)
        return dense(x.shape[-1], "wo")(h)


class _Layer(nn.Module):
    shape: T5Shape
    cross: bool
    decode: bool = False

    @nn.compact
    def __call__(self, x, enc=None, *, self_mask=None, self_bias=None, cross_mask=None, deterministic=True):
        s = self.shape
        dt = jnp.dtype(s.dtype)
        scale = 1.0 if s.attention_scale == "none" else None
        attn = lambda name, **kw: MultiHeadAttention(num_heads=s.num_heads, head_dim=s.d_kv, use_bias=False,
                                                     scale=scale, dropout_rate=s.dropout_rate, dtype=dt,
                                                     attention_vjp=s.attention_vjp, name=name, **kw)
        drop = lambda h: Dropout(s.dropout_rate)(h, deterministic=deterministic)
        h = RMSNorm(dtype=dt, name="norm_self")(x)
        if self.cross:
            h = attn("self_attention", causal=True, decode=self.decode)(h, mask=self_mask, bias=self_bias,
                                                                        deterministic=deterministic)
        else:
            h = attn("self_attention")(h, mask=self_mask, bias=self_bias, deterministic=deterministic)
        x = x + drop(h)
        if self.cross:
            h = RMSNorm(dtype=dt, name="norm_cross")(x)
            h = attn("cross_attention", cache_kv=self.decode)(h, enc, mask=cross_mask, deterministic=deterministic)
            x = x + drop(h)
        h = RMSNorm(dtype=dt, name="norm_ff")(x)
        if s.feed_forward == "relu":
            h = FeedForward(s.d_ff, activation="relu", dropout_rate=s.dropout_rate, use_bias=False, dtype=dt,
                            name="ff")(h, deterministic=deterministic)
        else:
            h = GatedFeedForward(s.d_ff, dropout_rate=s.dropout_rate, dtype=dt, name="ff")(
                h, deterministic=deterministic)
        return x + drop(h)


class _DecoderBias(nn.Module):
    """The decoder's causal relative bias `[1, H, T, T]`; in decode mode `[1, H, T, max_len]` at the
    cached position (kept in the `cache` collection with the length of the cache)."""

    shape: T5Shape
    decode: bool = False

    @nn.compact
    def __call__(self, t: int) -> Array:
        s = self.shape
        rel = RelativePositionBias(s.num_heads, s.num_buckets, s.max_distance, bidirectional=False, name="bias")
        if not self.decode:
            return rel(t, t)
        initialised = self.has_variable("cache", "position")
        pos = self.variable("cache", "position", lambda: jnp.array(0, jnp.int32))
        length = self.variable("cache", "length", lambda: jnp.zeros((t,), jnp.int8))
        if not initialised:
            return rel(t, t)
        bias = rel(t, length.value.shape[0], q_offset=pos.value)
        pos.value = pos.value + t
        return bias


class T5(nn.Module):
    """T5 encoder-decoder (see module docstring). Token ids: pad 0 (also the decoder start), EOS 1.

    Methods: `encode(src) -> [B, S, D]`, `decode_logits(tgt_in, enc, src) -> [B, T, V]`,
    `__call__(src, tgt_in) -> [B, T, V]` (teacher forcing). With `decode=True`, `decode_logits`
    takes one token per call `[B, 1]` and advances the cache.
    """

    shape: T5Shape
    decode: bool = False

    def setup(self):
        s = self.shape
        self.shared = nn.Embed(s.vocab_size, s.d_model, embedding_init=nn.initializers.normal(1.0),
                               name="shared")
        self.enc_bias = RelativePositionBias(s.num_heads, s.num_buckets, s.max_distance, bidirectional=True,
                                             name="encoder_relative_bias")
        self.dec_bias = _DecoderBias(s, decode=self.decode, name="decoder_relative_bias")
        self.enc_layers = [_Layer(s, cross=False, name=f"encoder_{i}") for i in range(s.num_encoder_layers)]
        self.dec_layers = [_Layer(s, cross=True, decode=self.decode, name=f"decoder_{i}")
                           for i in range(s.num_decoder_layers)]
        self.enc_norm = RMSNorm(name="encoder_final_norm")
        self.dec_norm = RMSNorm(name="decoder_final_norm")
        self.dropout = Dropout(s.dropout_rate)
        if not s.tie_embeddings:
            self.lm_head = Dense(s.vocab_size, use_bias=False, name="lm_head")

    def encode(self, src: Array, *, deterministic: bool = True) -> Array:
        """`src [B, S]` int ids (0 = pad) -> `[B, S, D]`."""
        dt = jnp.dtype(self.shape.dtype)
        x = self.dropout(self.shared(src).astype(dt), deterministic=deterministic)
        t = src.shape[1]
        bias = self.enc_bias(t, t)
        mask = padding_mask(src > 0)
        for layer in self.enc_layers:
            x = layer(x, self_mask=mask, self_bias=bias, deterministic=deterministic)
        return self.dropout(self.enc_norm(x), deterministic=deterministic)

    def decode_logits(self, tgt_in: Array, enc: Array, src: Array, *, deterministic: bool = True) -> Array:
        """`tgt_in [B, T]`, `enc [B, S, D]`, `src [B, S]` (for its padding) -> logits `[B, T, V]` (float32)."""
        x = self._decode_hidden(tgt_in, enc, src, deterministic)
        if self.shape.tie_embeddings:
            return self.shared.attend(self._head_scale(x))
        return self.lm_head(x).astype(jnp.float32)

    def _decode_hidden(self, tgt_in: Array, enc: Array, src: Array, deterministic: bool) -> Array:
        dt = jnp.dtype(self.shape.dtype)
        x = self.dropout(self.shared(tgt_in).astype(dt), deterministic=deterministic)
        bias = self.dec_bias(tgt_in.shape[1])
        cross_mask = padding_mask(src > 0)
        for layer in self.dec_layers:
            x = layer(x, enc, self_bias=bias, cross_mask=cross_mask, deterministic=deterministic)
        return self.dropout(self.dec_norm(x), deterministic=deterministic)

    def _head_scale(self, x: Array) -> Array:
        return (x * self.shape.d_model ** -0.5).astype(jnp.float32)

    def head_features(self, src: Array, tgt_in: Array, *, deterministic: bool = True) -> Array:
        """Teacher forcing up to the tied head's input: `[B, T, D]` float32 such that
        `head_features(src, tgt_in) @ shared.embedding.T` are `__call__`'s logits (tied heads only)."""
        if not self.shape.tie_embeddings:
            raise ValueError("head_features needs a tied head (T5Shape.tie_embeddings=True)")
        enc = self.encode(src, deterministic=deterministic)
        return self._head_scale(self._decode_hidden(tgt_in, enc, src, deterministic))

    def __call__(self, src: Array, tgt_in: Array, *, deterministic: bool = True) -> Array:
        enc = self.encode(src, deterministic=deterministic)
        return self.decode_logits(tgt_in, enc, src, deterministic=deterministic)
