"""Multi-exit networks: one prediction head (GAP + linear) after each stage of a backbone.

    logits = model.apply(variables, x, train=...)     # [H, B, K], head H-1 = the final one

Two backbones:
  * `MultiExitCNN`: the small CNN of `jaxlab.nn.SmallCNN` (for 8x8 digits); its own final
    GAP + linear is the last head, a GAP + linear is added after every earlier stage.
  * `MultiExitResNet`: the ResNet-18-style 32x32 network of `jaxlab.nn.resnet`, a head
    after each of its four stages (CIFAR-10 scale; for accelerators).

Dropout (SmallCNN: after every stage) is active when `train=True` and an rng stream
"dropout" is given; MC dropout uses it at test time.

`build_model(cfg)` returns the module for a `ModelConfig`, and `forward` wraps
`apply` with the `batch_stats` collection (if any) kept in `extra`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxlab.nn.cnn import SmallCNN
from jaxlab.nn.resnet import ResNet

__all__ = ["MultiExitCNN", "MultiExitResNet", "build_model", "forward", "init_model"]


class _Head(nn.Module):
    """GAP + linear: `[B, h, w, c] -> [B, K]`."""

    num_classes: int
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, feat):
        return nn.Dense(self.num_classes, dtype=self.dtype, param_dtype=self.param_dtype)(
            jnp.mean(feat, axis=(1, 2))).astype(jnp.float32)


class MultiExitCNN(nn.Module):
    """`jaxlab.nn.SmallCNN` with a GAP + linear head after every stage: `[B,8,8,C] -> [S, B, K]`."""

    num_classes: int = 10
    stages: Sequence[int] = (32, 64, 128)
    blocks_per_stage: int = 2
    norm: str = "group"
    dropout_rate: float = 0.0
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        logits, feats = SmallCNN(num_classes=self.num_classes, stages=tuple(self.stages),
                                 blocks_per_stage=self.blocks_per_stage, norm=self.norm,
                                 dropout_rate=self.dropout_rate, dtype=self.dtype,
                                 param_dtype=self.param_dtype, name="backbone")(
            x, train=train, return_features=True)
        heads = [_Head(self.num_classes, self.dtype, self.param_dtype, name=f"head_{i}")(f)
                 for i, f in enumerate(feats[:-1])]
        return jnp.stack(heads + [logits])


class MultiExitResNet(nn.Module):
    """`jaxlab.nn.resnet.ResNet` with a GAP + linear head after every stage: `[B,32,32,3] -> [S, B, K]`."""

    num_classes: int = 10
    stage_sizes: Sequence[int] = (2, 2, 2, 2)
    widths: Sequence[int] = (64, 128, 256, 512)
    norm: str = "batch"
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        logits, feats = ResNet(num_classes=self.num_classes, stage_sizes=tuple(self.stage_sizes),
                               widths=tuple(self.widths), norm=self.norm, dtype=self.dtype,
                               param_dtype=self.param_dtype, name="backbone")(
            x, train=train, return_features=True)
        heads = [_Head(self.num_classes, self.dtype, self.param_dtype, name=f"head_{i}")(f)
                 for i, f in enumerate(feats[:-1])]
        return jnp.stack(heads + [logits])


def build_model(cfg, num_classes: int, *, single_head: bool = False) -> nn.Module:
    """The module for a `configs.ModelConfig`.

    `single_head=True` gives the plain backbone (`[B, K]` logits; prior networks).
    """
    dtype = jnp.dtype(cfg.dtype)
    if cfg.arch == "cnn":
        if single_head:
            return SmallCNN(num_classes=num_classes, stages=tuple(cfg.stages), blocks_per_stage=cfg.blocks_per_stage,
                            norm=cfg.norm, dropout_rate=cfg.dropout_rate, dtype=dtype)
        return MultiExitCNN(num_classes=num_classes, stages=tuple(cfg.stages), blocks_per_stage=cfg.blocks_per_stage,
                            norm=cfg.norm, dropout_rate=cfg.dropout_rate, dtype=dtype)
    if cfg.arch == "resnet":
        if single_head:
            return ResNet(num_classes=num_classes, stage_sizes=tuple(cfg.resnet_stage_sizes),
                          widths=tuple(cfg.resnet_widths), norm=cfg.resnet_norm, dtype=dtype)
        return MultiExitResNet(num_classes=num_classes, stage_sizes=tuple(cfg.resnet_stage_sizes),
                               widths=tuple(cfg.resnet_widths), norm=cfg.resnet_norm, dtype=dtype)
    raise ValueError(f"config field 'model.arch' must be 'cnn' or 'resnet', got {cfg.arch!r}")


def init_model(model: nn.Module, key: jax.Array, x: jax.Array) -> tuple[Any, Any]:
    """`(params, extra)` with extra = `{"batch_stats": ...}` or `{}`."""
    variables = model.init({"params": key, "dropout": key}, x, train=False)
    params = variables["params"]
    extra = {k: v for k, v in variables.items() if k != "params"}
    return params, extra


def forward(model: nn.Module, params, extra, x, *, train: bool = False, dropout_key=None):
    """`model.apply` with non-trainable state. Returns `(logits, new_extra)`.

    In training mode with BatchNorm the running statistics are updated (`new_extra`);
    otherwise `new_extra` is `extra`. Dropout is active iff `dropout_key` is given and
    `train=True`.
    """
    variables = {"params": params, **extra}
    rngs = {"dropout": dropout_key} if dropout_key is not None else {}
    if train and extra:
        logits, updates = model.apply(variables, x, train=True, rngs=rngs, mutable=list(extra))
        return logits, {**extra, **updates}
    return model.apply(variables, x, train=train, rngs=rngs), extra


def mc_forward(model: nn.Module, params, extra, x, key, num_samples: int):
    """MC dropout: `num_samples` stochastic passes with dropout on and norms in inference mode.

    Returns the logits of every pass, `[T, ...]` (the model's own output shape after T).
    BatchNorm (if any) uses its running statistics: only dropout is sampled.
    """
    variables = {"params": params, **extra}

    def one(k):
        # train=True switches dropout on; BatchNorm must stay in inference mode, so the
        # batch_stats collection is passed immutable (apply without `mutable`).
        if extra:
            raise ValueError("mc_forward supports models without BatchNorm (norm='group'/'layer'/'none')")
        return model.apply(variables, x, train=True, rngs={"dropout": k})

    return jax.vmap(one)(jax.random.split(key, num_samples))
