"""Small convolutional building blocks (the reference classifier, MH-UI).

Shapes follow Flax: images are `[B, H, W, C]`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jaxlab.nn.conv import Conv
from jaxlab.nn.dropout import Dropout
from jaxlab.nn.linear import Dense

__all__ = ["ConvBlock", "SmallCNN", "MLP"]


class ConvBlock(nn.Module):
    """`relu(norm(conv3x3(x)))`, `[B, H, W, C] -> [B, H, W, features]`.

    Attributes:
      features: output channels.
      kernel_size: square kernel side.
      norm: "group" (GroupNorm, batch-independent, no running state), "layer" or "none".
      groups: number of groups for GroupNorm (clipped to `features`).
    """

    features: int
    kernel_size: int = 3
    norm: str = "group"
    groups: int = 8
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        x = Conv(self.features, (self.kernel_size, self.kernel_size), padding="SAME",
                 use_bias=self.norm == "none", dtype=self.dtype, param_dtype=self.param_dtype)(x)
        if self.norm == "group":
            g = min(self.groups, self.features)
            while self.features % g:
                g -= 1
            x = nn.GroupNorm(num_groups=g, dtype=self.dtype, param_dtype=self.param_dtype)(x)
        elif self.norm == "layer":
            x = nn.LayerNorm(dtype=self.dtype, param_dtype=self.param_dtype)(x)
        elif self.norm != "none":
            raise ValueError(f"ConvBlock.norm must be 'group', 'layer' or 'none', got {self.norm!r}")
        return nn.relu(x)


class SmallCNN(nn.Module):
    """A stack of conv stages with 2x2 average pooling between them, then GAP + linear.

    `stages=(32, 64)` with `blocks_per_stage=2` on 8x8 digits gives
    8x8x32 -> pool -> 4x4x64 -> GAP -> logits.

    Call with `return_features=True` to also get each stage's output `[B, h, w, c]`
    (before pooling), which multi-exit networks attach heads to.
    """

    num_classes: int = 10
    stages: Sequence[int] = (32, 64)
    blocks_per_stage: int = 2
    norm: str = "group"
    dropout_rate: float = 0.0
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray, *, train: bool = False, return_features: bool = False):
        feats = []
        x = x.astype(self.dtype)
        for i, width in enumerate(self.stages):
            if i > 0:
                x = nn.avg_pool(x, (2, 2), strides=(2, 2), padding="SAME")
            for _ in range(self.blocks_per_stage):
                x = ConvBlock(width, norm=self.norm, dtype=self.dtype, param_dtype=self.param_dtype)(x)
            if self.dropout_rate > 0:
                x = Dropout(self.dropout_rate, deterministic=not train)(x)
            feats.append(x)
        pooled = jnp.mean(x, axis=(1, 2))
        logits = Dense(self.num_classes, dtype=self.dtype, param_dtype=self.param_dtype)(pooled)
        logits = logits.astype(jnp.float32)
        return (logits, feats) if return_features else logits


class MLP(nn.Module):
    """Dense layers with a nonlinearity between them: `[..., d] -> [..., features[-1]]`."""

    features: Sequence[int]
    activation: str = "relu"
    layer_norm: bool = False
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        act = getattr(nn, self.activation)
        for i, f in enumerate(self.features):
            x = Dense(f, dtype=self.dtype, param_dtype=self.param_dtype)(x)
            if i < len(self.features) - 1:
                if self.layer_norm:
                    x = nn.LayerNorm(dtype=self.dtype, param_dtype=self.param_dtype)(x)
                x = act(x)
        return x
