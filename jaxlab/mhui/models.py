"""Multi-exit networks: one prediction head (GAP + linear) after each stage of a backbone.

    logits = model.apply(variables, x, train=...)     # [H, B, K], head H-1 = the final one

`MultiExit` wraps either backbone:
  * `jaxlab.nn.SmallCNN` (for 8x8 digits); its own final GAP + linear is the last head,
    a GAP + linear is added after every earlier stage;
  * the ResNet-18-style 32x32 network `jaxlab.nn.resnet.ResNet`, a head after each of
    its four stages (CIFAR-10 scale; for accelerators).

Dropout (SmallCNN: after every stage) is active when `train=True` and an rng stream
"dropout" is given; MC dropout uses it at test time.

`build_model(cfg)` returns the module for a `ModelConfig`, `forward` wraps `apply` with
the `batch_stats` collection (if any) kept in `extra`, and `classifier_logits` gives the
classifier each network is attacked through.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxlab.nn.cnn import SmallCNN
from jaxlab.nn.linear import Dense
from jaxlab.nn.resnet import ResNet

__all__ = ["MultiExit", "build_model", "forward", "init_model", "mc_forward", "classifier_logits"]


class _Head(nn.Module):
    """GAP + linear: `[B, h, w, c] -> [B, K]`."""

    num_classes: int
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, feat):
        return Dense(self.num_classes, dtype=self.dtype, param_dtype=self.param_dtype)(
            jnp.mean(feat, axis=(1, 2))).astype(jnp.float32)


class MultiExit(nn.Module):
    """A backbone with a GAP + linear head after every stage: `x [B, ...] -> logits [S, B, K]`.

    `backbone(x, train=..., return_features=True)` must return `(logits [B, K], features)`
    with one `[B, h, w, c]` feature map per stage (as `jaxlab.nn.SmallCNN` and
    `jaxlab.nn.resnet.ResNet` do); the backbone's own GAP + linear is the last head and a
    head is added after every earlier stage. Parameters: `backbone`, `head_0 .. head_{S-2}`.
    """

    backbone: nn.Module
    num_classes: int = 10
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        logits, feats = self.backbone(x, train=train, return_features=True)
        heads = [_Head(self.num_classes, self.dtype, self.param_dtype, name=f"head_{i}")(f)
                 for i, f in enumerate(feats[:-1])]
        return jnp.stack(heads + [logits.astype(jnp.float32)])


def build_model(cfg, num_classes: int, *, single_head: bool = False) -> nn.Module:
    """The module for a `configs.ModelConfig`.

    `single_head=True` gives the plain backbone (`[B, K]` logits; prior networks).
    """
    dtype = jnp.dtype(cfg.dtype)
    if cfg.arch == "cnn":
        backbone = SmallCNN(num_classes=num_classes, stages=tuple(cfg.stages), blocks_per_stage=cfg.blocks_per_stage,
                            norm=cfg.norm, dropout_rate=cfg.dropout_rate, dtype=dtype)
    elif cfg.arch == "resnet":
        backbone = ResNet(num_classes=num_classes, stage_sizes=tuple(cfg.resnet_stage_sizes),
                          widths=tuple(cfg.resnet_widths), norm=cfg.resnet_norm, dtype=dtype)
    else:
        raise ValueError(f"config field 'model.arch' must be 'cnn' or 'resnet', got {cfg.arch!r}")
    return backbone if single_head else MultiExit(backbone, num_classes=num_classes, dtype=dtype)


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


def classifier_logits(kind: str, model: nn.Module):
    """`fn(params, extra, x) -> [B, K]`: the classifier through which a network is attacked.

    kind "mhui": the final head of a multi-exit network; "ensemble": the log of the mean
    of the members' final-head softmaxes (params and extra with a leading member axis);
    "prior_net": the single head of the Prior Network (its mean prediction is
    softmax(z), since alpha = exp(z)).
    """
    if kind == "mhui":
        return lambda p, e, x: forward(model, p, e, x)[0][-1]
    if kind == "ensemble":
        def ensemble(p, e, x):
            z = jax.vmap(lambda pm, em: forward(model, pm, em, x)[0][-1])(p, e)
            return jax.nn.logsumexp(jax.nn.log_softmax(z, -1), axis=0) - jnp.log(z.shape[0])
        return ensemble
    if kind in ("prior_net", "prior_net_fkl"):
        return lambda p, e, x: forward(model, p, e, x)[0]
    raise ValueError(f"unknown network {kind!r}; expected 'mhui', 'ensemble', 'prior_net' or 'prior_net_fkl'")
