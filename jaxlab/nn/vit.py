"""Vision transformer (ViT / DeiT) encoder: patch embedding, class token, learned positions,
pre-norm `EncoderBlock`s, final norm, linear head (ViTAS, Video2StyleGAN).

    tokens = [cls ; PatchEmbed(x)] + pos             [B, 1 + N, D],  N = (H/p)(W/p)
    tokens = FinalNorm(Block_L(... Block_1(tokens)))
    logits = W_head tokens[:, 0] + b_head            (pool='token'; 'mean' averages the patch tokens)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jaxlab.nn.conv import Conv
from jaxlab.nn.dropout import Dropout
from jaxlab.nn.linear import Dense
from jaxlab.nn.transformer import Encoder

__all__ = ["PatchEmbed", "ViT"]

Array = jnp.ndarray


class PatchEmbed(nn.Module):
    """Non-overlapping patches, linearly embedded: `[B, H, W, C] -> [B, (H/p)*(W/p), D]`.

    A convolution with kernel = stride = `patch_size`, i.e. for the patch at row `i`, column `j`
    (row-major token order `i * (W/p) + j`): `token = vec(x[i*p:(i+1)*p, j*p:(j+1)*p, :]) W + b`
    with `W: [p*p*C, D]` (the conv kernel `[p, p, C, D]` flattened). `embed_mask [D]` zeroes
    inactive output channels (supernets). H and W must be multiples of p.
    """

    patch_size: int
    embed_dim: int
    use_bias: bool = True
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32
    kernel_init: Callable = nn.initializers.lecun_normal()

    @nn.compact
    def __call__(self, x: Array, embed_mask: Array | None = None) -> Array:
        if x.ndim != 4:
            raise ValueError(f"PatchEmbed expects images [B, H, W, C], got shape {x.shape}")
        p = self.patch_size
        if x.shape[1] % p or x.shape[2] % p:
            raise ValueError(f"PatchEmbed: image size {x.shape[1]}x{x.shape[2]} is not a multiple of patch_size={p}")
        y = Conv(self.embed_dim, (p, p), strides=(p, p), padding="VALID", use_bias=self.use_bias,
                 dtype=self.dtype, param_dtype=self.param_dtype, kernel_init=self.kernel_init, name="proj")(x)
        y = y.reshape(y.shape[0], -1, self.embed_dim)
        if embed_mask is not None:
            y = y * jnp.asarray(embed_mask, y.dtype)
        return y


class ViT(nn.Module):
    """Vision transformer classifier / feature extractor.

    Attributes:
      num_classes: head outputs; 0 means no head (`__call__` returns the pooled features `[B, D]`).
      patch_size, embed_dim (D), depth (L), num_heads, mlp_ratio, qkv_features: the encoder shape.
      class_token: prepend a learned class token (zeros at init).
      pool: 'token' (the class token's final state) or 'mean' (mean of the patch tokens).
      dropout_rate: dropout on the embedded tokens, the MLP hidden units and residual branches.
      attention_dropout_rate: dropout on the attention weights.
      norm: 'layernorm' or 'rmsnorm'.
      pos_init: initialiser of the position embedding `pos_embedding [1, (1+)N, D]` (normal 0.02).
      head_init: initialiser of the head kernel (zeros, as in ViT fine-tuning).

    Submodules / parameters: `patch_embed`, `cls_token [1, 1, D]`, `pos_embedding`, `encoder`
    (an `Encoder`, blocks `block_i`, `final_norm`), `head`.
    """

    num_classes: int = 1000
    patch_size: int = 16
    embed_dim: int = 192
    depth: int = 12
    num_heads: int = 3
    mlp_ratio: float = 4.0
    qkv_features: int | None = None
    class_token: bool = True
    pool: str = "token"
    dropout_rate: float = 0.0
    attention_dropout_rate: float = 0.0
    activation: str | Callable = "gelu"
    norm: str = "layernorm"
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32
    kernel_init: Callable = nn.initializers.xavier_uniform()
    pos_init: Callable = nn.initializers.normal(0.02)
    head_init: Callable = nn.initializers.zeros

    @nn.compact
    def __call__(self, x: Array, *, train: bool = False, return_tokens: bool = False,
                 embed_mask: Array | None = None, head_masks: Array | None = None,
                 qkv_masks: Array | None = None, mlp_masks: Array | None = None,
                 layer_mask: Array | None = None) -> Array:
        """Images `[B, H, W, C]` -> logits `[B, num_classes]` (or features `[B, D]` if num_classes == 0).

        `return_tokens=True` returns the normalised token sequence `[B, (1+)N, D]` instead (no
        pooling, no head). `train` enables dropout (needs the 'dropout' RNG). The optional width
        masks (`embed_mask [D]`, per-layer `head_masks [L, H]`, `qkv_masks`, `mlp_masks`,
        `layer_mask [L]`) are passed to the `Encoder` (see `jaxlab.nn.transformer`).
        """
        if self.pool not in ("token", "mean"):
            raise ValueError(f"ViT.pool must be 'token' or 'mean', got {self.pool!r}")
        if self.pool == "token" and not self.class_token:
            raise ValueError("ViT.pool='token' needs class_token=True")
        d = self.embed_dim
        x = PatchEmbed(self.patch_size, d, dtype=self.dtype, param_dtype=self.param_dtype,
                       kernel_init=self.kernel_init, name="patch_embed")(x.astype(self.dtype), embed_mask)
        b = x.shape[0]
        if self.class_token:
            cls = self.param("cls_token", nn.initializers.zeros, (1, 1, d), self.param_dtype)
            x = jnp.concatenate([jnp.broadcast_to(jnp.asarray(cls, x.dtype), (b, 1, d)), x], axis=1)
        pos = self.param("pos_embedding", self.pos_init, (1, x.shape[1], d), self.param_dtype)
        pos = jnp.asarray(pos, x.dtype)
        if embed_mask is not None:
            pos = pos * jnp.asarray(embed_mask, x.dtype)
        x = x + pos
        x = Dropout(self.dropout_rate)(x, deterministic=not train)
        x = Encoder(num_layers=self.depth, num_heads=self.num_heads, qkv_features=self.qkv_features,
                    mlp_ratio=self.mlp_ratio, activation=self.activation, dropout_rate=self.dropout_rate,
                    attention_dropout_rate=self.attention_dropout_rate, norm=self.norm, dtype=self.dtype,
                    param_dtype=self.param_dtype, kernel_init=self.kernel_init, name="encoder")(
            x, embed_mask=embed_mask, head_masks=head_masks, qkv_masks=qkv_masks, mlp_masks=mlp_masks,
            layer_mask=layer_mask, deterministic=not train)
        if return_tokens:
            return x
        feats = x[:, 0] if self.pool == "token" else jnp.mean(x[:, int(self.class_token):], axis=1)
        if self.num_classes == 0:
            return feats
        return Dense(self.num_classes, dtype=self.dtype, param_dtype=self.param_dtype, kernel_init=self.head_init,
                     name="head")(feats)
