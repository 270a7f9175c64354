"""ResNet-18-style network for 32x32 inputs (CIFAR-10 scale; He et al. 2016).

The CIFAR variant: a 3x3 stem (no 7x7 conv, no max-pool), four stages of
`stage_sizes` basic blocks with widths `widths`, stride 2 at the start of stages 2-4,
global average pooling and a linear classifier:

    [B, 32, 32, 3] -> stem 32x32x64 -> 32x32x64 -> 16x16x128 -> 8x8x256 -> 4x4x512 -> GAP -> [B, K]

With the defaults it has 11,173,962 parameters for K = 10 (BatchNorm scales and biases
included). Call with `return_features=True` to also get each stage's output, which
multi-exit networks attach heads to.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jaxlab.nn.conv import Conv
from jaxlab.nn.linear import Dense

__all__ = ["BasicBlock", "ResNet", "ResNet18"]


def _norm(kind: str, train: bool, dtype: Any, param_dtype: Any, features: int, zero_scale: bool = False):
    scale_init = nn.initializers.zeros if zero_scale else nn.initializers.ones
    if kind == "batch":
        return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                            dtype=dtype, param_dtype=param_dtype, scale_init=scale_init)
    if kind == "group":
        g = min(32, features)
        while features % g:
            g -= 1
        return nn.GroupNorm(num_groups=g, dtype=dtype, param_dtype=param_dtype, scale_init=scale_init)
    raise ValueError(f"ResNet norm must be 'batch' or 'group', got {kind!r}")


class BasicBlock(nn.Module):
    """relu(x' + norm(conv3x3(relu(norm(conv3x3_s(x)))))), x' = x or norm(conv1x1_s(x)).

    `[B, H, W, C] -> [B, H/s, W/s, features]`.
    """

    features: int
    strides: int = 1
    norm: str = "batch"
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        conv = lambda f, k, s: Conv(f, (k, k), strides=(s, s), padding="SAME" if k > 1 else "VALID",
                                    use_bias=False, dtype=self.dtype, param_dtype=self.param_dtype)
        norm = lambda zero=False: _norm(self.norm, train, self.dtype, self.param_dtype, self.features, zero)
        y = nn.relu(norm()(conv(self.features, 3, self.strides)(x)))
        y = norm()(conv(self.features, 3, 1)(y))
        if x.shape[-1] != self.features or self.strides != 1:
            x = norm()(conv(self.features, 1, self.strides)(x))
        return nn.relu(x + y)


class ResNet(nn.Module):
    """CIFAR-style ResNet of basic blocks.

    Attributes:
      num_classes: K.
      stage_sizes: blocks per stage ((2, 2, 2, 2) is ResNet-18).
      widths: channels per stage.
      norm: "batch" (running statistics in the `batch_stats` collection; apply with
        `mutable=["batch_stats"]` when `train=True`) or "group" (no state).
    """

    num_classes: int = 10
    stage_sizes: Sequence[int] = (2, 2, 2, 2)
    widths: Sequence[int] = (64, 128, 256, 512)
    norm: str = "batch"
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, *, train: bool = False, return_features: bool = False):
        if len(self.stage_sizes) != len(self.widths):
            raise ValueError(f"ResNet: stage_sizes {tuple(self.stage_sizes)} and widths "
                             f"{tuple(self.widths)} must have the same length")
        x = x.astype(self.dtype)
        x = Conv(self.widths[0], (3, 3), padding="SAME", use_bias=False,
                 dtype=self.dtype, param_dtype=self.param_dtype)(x)
        x = nn.relu(_norm(self.norm, train, self.dtype, self.param_dtype, self.widths[0])(x))
        feats = []
        for i, (n, w) in enumerate(zip(self.stage_sizes, self.widths)):
            for j in range(n):
                x = BasicBlock(w, strides=2 if (i > 0 and j == 0) else 1, norm=self.norm,
                               dtype=self.dtype, param_dtype=self.param_dtype)(x, train=train)
            feats.append(x)
        logits = Dense(self.num_classes, dtype=self.dtype, param_dtype=self.param_dtype)(
            jnp.mean(x, axis=(1, 2))).astype(jnp.float32)
        return (logits, feats) if return_features else logits


def ResNet18(num_classes: int = 10, **kwargs) -> ResNet:
    """ResNet-18 for 32x32 inputs: stage_sizes (2, 2, 2, 2), widths (64, 128, 256, 512)."""
    return ResNet(num_classes=num_classes, stage_sizes=(2, 2, 2, 2), widths=(64, 128, 256, 512), **kwargs)
