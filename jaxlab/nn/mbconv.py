"""MBConv blocks with squeeze-excitation: a standalone block and a masked supernet block.

MBConv (MobileNetV2/V3 inverted residual), input `[N, H, W, C_in]`:

    h = act(BN(conv1x1(x)))                 expand to C_h = t * C_in   (skipped if t = 1)
    h = act(BN(dwconv_kxk(h, stride)))      depthwise
    h = h * hsigmoid(W2 relu(W1 mean_hw(h) + b1) + b2)    squeeze-excitation to C_h // 4
    y = BN(conv1x1(h))                      project to C_out
    y = y + x                               if stride = 1 and C_in = C_out

`MaskedMBConv` is the weight-sharing version used by supernets. It holds the widest
block (`in_max`, `out_max`) once per candidate op (separate weights per kernel size, as
in ScaleNet) and takes as *arrays*:

* `op`: 0 = identity, `i >= 1` = `kernels[i-1]`; the op's weights are chosen with
  `where(op == i, W_i, 0)` summed over i (so unselected ops get exactly zero gradient),
  and the depthwise kernel is zero-padded to `max(kernels)` (identical results under
  'SAME' padding with odd kernels); so one compiled function serves every op;
* channel masks `[C]` for the input, hidden, SE and output widths (from
  `jaxlab.nas.widths.width_mask`), so one compiled function serves every width, side
  and index set.

Inactive channels are exactly zero on output and their weights get exactly zero
gradient. Batch normalisation uses the batch statistics (the supernet protocol: train
mode during training and BN recalibration during search); statistics are per channel,
so masking commutes with it. `extract_mbconv` gathers the active weights into the
parameters of a standalone `MBConv` whose output equals the masked block's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxlab.nn.conv import Conv, conv_general_dilated
from jaxlab.nn.linear import Dense

__all__ = [
    "hswish",
    "hsigmoid",
    "activation",
    "masked_batch_norm",
    "MBConv",
    "MaskedMBConv",
    "extract_mbconv",
    "conv_init",
]

conv_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


def hsigmoid(x):
    return jax.nn.relu6(x + 3.0) / 6.0


def hswish(x):
    return x * hsigmoid(x)


def activation(name: str):
    table = {"hswish": hswish, "relu": jax.nn.relu, "relu6": jax.nn.relu6, "swish": jax.nn.swish}
    if name not in table:
        raise ValueError(f"unknown activation {name!r}; expected one of {sorted(table)}")
    return table[name]


def masked_batch_norm(x, scale, bias, mask, eps: float = 1e-5):
    """Batch-statistics BN over all axes but the last, times the channel mask `[C]`."""
    axes = tuple(range(x.ndim - 1))
    mean = jnp.mean(x, axes)
    var = jnp.mean(jnp.square(x - mean), axes)
    y = (x - mean) * jax.lax.rsqrt(var + eps) * scale + bias
    return y * mask


def _bn(name, train, momentum=0.9, eps=1e-5):
    return nn.BatchNorm(use_running_average=not train, momentum=momentum, epsilon=eps, name=name)


class MBConv(nn.Module):
    """Standalone MBConv + SE block (see module docstring). `x`: `[N, H, W, c_in]`."""

    c_in: int
    c_out: int
    hidden: int            # C_h (= t * c_in)
    kernel: int
    stride: int = 1
    se_hidden: int = 0     # 0: no squeeze-excitation
    expand: bool = True    # False when t = 1 (hidden must equal c_in)
    residual: bool = True  # add x when the shapes allow
    act: str = "hswish"
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = True):
        a = activation(self.act)
        h = x
        if self.expand:
            h = Conv(self.hidden, (1, 1), use_bias=False, kernel_init=conv_init, dtype=self.dtype, name="expand")(h)
            h = a(_bn("expand_bn", train)(h))
        h = Conv(self.hidden, (self.kernel, self.kernel), strides=self.stride, padding="SAME",
                 feature_group_count=self.hidden, use_bias=False, kernel_init=conv_init,
                    dtype=self.dtype, name="dw")(h)
        h = a(_bn("dw_bn", train)(h))
        if self.se_hidden:
            s = jnp.mean(h, axis=(1, 2))
            s = jax.nn.relu(Dense(self.se_hidden, dtype=self.dtype, name="se_reduce")(s))
            s = hsigmoid(Dense(self.hidden, dtype=self.dtype, name="se_expand")(s))
            h = h * s[:, None, None, :]
        y = Conv(self.c_out, (1, 1), use_bias=False, kernel_init=conv_init, dtype=self.dtype, name="project")(h)
        y = _bn("project_bn", train)(y)
        if self.residual and self.stride == 1 and self.c_in == self.c_out:
            y = y + x
        return y


def _pad_kernel(w, kmax):
    k = w.shape[0]
    p = (kmax - k) // 2
    return jnp.pad(w, ((p, p), (p, p), (0, 0), (0, 0)))


class MaskedMBConv(nn.Module):
    """Weight-sharing MBConv: every op of `kernels`, widest channels, masked per call.

    Parameters: one sub-tree `op{i}` per kernel (i = 1..K) with the leaves of `MBConv`
    at full width (dw kernels at their own size). `identity_ok` says whether op 0
    (identity) is allowed (stride 1 and `in_max == out_max`).
    """

    in_max: int
    out_max: int
    expand_ratio: int
    kernels: Sequence[int] = (3, 5, 7)
    stride: int = 1
    se_div: int = 4         # SE width = hidden // se_div; 0 disables SE
    act: str = "hswish"
    residual: bool = True
    dtype: Any = jnp.float32

    @property
    def hidden_max(self) -> int:
        return self.in_max * self.expand_ratio

    @property
    def se_max(self) -> int:
        return max(1, self.hidden_max // self.se_div) if self.se_div else 0

    @property
    def has_residual(self) -> bool:
        return self.residual and self.stride == 1 and self.in_max == self.out_max

    def _op_params(self, k: int, i: int) -> dict:
        hid, se = self.hidden_max, self.se_max
        ones, zeros = nn.initializers.ones, nn.initializers.zeros
        p = {}
        pre = f"op{i}_"
        if self.expand_ratio != 1:
            p["expand"] = {"kernel": self.param(pre + "expand", conv_init, (1, 1, self.in_max, hid))}
            p["expand_bn"] = {"scale": self.param(pre + "expand_bn_scale", ones, (hid,)),
                              "bias": self.param(pre + "expand_bn_bias", zeros, (hid,))}
        p["dw"] = {"kernel": self.param(pre + "dw", conv_init, (k, k, 1, hid))}
        p["dw_bn"] = {"scale": self.param(pre + "dw_bn_scale", ones, (hid,)),
                      "bias": self.param(pre + "dw_bn_bias", zeros, (hid,))}
        if se:
            dense = nn.initializers.lecun_normal()
            p["se_reduce"] = {"kernel": self.param(pre + "se_reduce", dense, (hid, se)),
                              "bias": self.param(pre + "se_reduce_bias", zeros, (se,))}
            p["se_expand"] = {"kernel": self.param(pre + "se_expand", dense, (se, hid)),
                              "bias": self.param(pre + "se_expand_bias", zeros, (hid,))}
        p["project"] = {"kernel": self.param(pre + "project", conv_init, (1, 1, hid, self.out_max))}
        p["project_bn"] = {"scale": self.param(pre + "project_bn_scale", ones, (self.out_max,)),
                           "bias": self.param(pre + "project_bn_bias", zeros, (self.out_max,))}
        return p

    @nn.compact
    def __call__(self, x, op, in_mask, hid_mask, se_mask, out_mask):
        """`x` `[N, H, W, in_max]` (zero outside `in_mask`); `op` int scalar; masks `[C]`."""
        kmax = max(self.kernels)
        per_op = [self._op_params(k, i + 1) for i, k in enumerate(self.kernels)]
        for i in range(len(self.kernels)):
            per_op[i]["dw"]["kernel"] = _pad_kernel(per_op[i]["dw"]["kernel"], kmax)
        if self.is_initializing():  # shapes only: keeps init cheap to compile
            n, hh, ww, _ = x.shape
            return jnp.zeros((n, -(-hh // self.stride), -(-ww // self.stride), self.out_max), x.dtype)
        op = jnp.asarray(op)
        # w = sum_i [op == i] W_i : exact zero gradient for unselected ops.
        p = jax.tree_util.tree_map(
            lambda *ws: sum(jnp.where(op == i + 1, w, jnp.zeros_like(w)) for i, w in enumerate(ws)), *per_op)
        a = activation(self.act)
        dn = ("NHWC", "HWIO", "NHWC")
        h = x
        if self.expand_ratio != 1:
            h = conv_general_dilated(h, p["expand"]["kernel"], (1, 1), "SAME", dimension_numbers=dn)
            h = a(masked_batch_norm(h, p["expand_bn"]["scale"], p["expand_bn"]["bias"], hid_mask))
        h = conv_general_dilated(h, p["dw"]["kernel"], (self.stride, self.stride), "SAME",
                                 dimension_numbers=dn, feature_group_count=self.hidden_max)
        h = a(masked_batch_norm(h, p["dw_bn"]["scale"], p["dw_bn"]["bias"], hid_mask))
        if self.se_max:
            s = jnp.mean(h, axis=(1, 2))
            s = jax.nn.relu(s @ p["se_reduce"]["kernel"] + p["se_reduce"]["bias"]) * se_mask
            s = hsigmoid(s @ p["se_expand"]["kernel"] + p["se_expand"]["bias"])
            h = h * s[:, None, None, :]
        y = conv_general_dilated(h, p["project"]["kernel"], (1, 1), "SAME", dimension_numbers=dn)
        y = masked_batch_norm(y, p["project_bn"]["scale"], p["project_bn"]["bias"], out_mask)
        if self.has_residual:
            y = y + x
            y = jnp.where(op == 0, x, y)
        return y


def extract_mbconv(params: dict, op: int, kernels: Sequence[int], idx_in, idx_hid, idx_se, idx_out,
                   expand_ratio: int) -> tuple[dict, dict]:
    """Standalone `MBConv` variables `(params, batch_stats)` of op `op` (>= 1).

    `params` is one `MaskedMBConv`'s parameter dict; the `idx_*` are static index arrays
    (`jaxlab.nas.widths.index_set`) of the active input, hidden, SE and output channels.
    """
    if op < 1 or op > len(kernels):
        raise ValueError(f"op {op} is not a kernel op of {tuple(kernels)} (0 is identity)")
    g = lambda name: np.asarray(params[f"op{op}_{name}"])
    ix = np.ix_
    out, stats = {}, {}

    def bn(name, idx):
        out[name] = {"scale": g(name + "_scale")[idx], "bias": g(name + "_bias")[idx]}
        stats[name] = {"mean": np.zeros(len(idx), np.float32), "var": np.ones(len(idx), np.float32)}

    if expand_ratio != 1:
        out["expand"] = {"kernel": g("expand")[:, :, idx_in][:, :, :, idx_hid]}
        bn("expand_bn", idx_hid)
    out["dw"] = {"kernel": g("dw")[..., idx_hid]}
    bn("dw_bn", idx_hid)
    if f"op{op}_se_reduce" in params:
        out["se_reduce"] = {"kernel": g("se_reduce")[ix(idx_hid, idx_se)], "bias": g("se_reduce_bias")[idx_se]}
        out["se_expand"] = {"kernel": g("se_expand")[ix(idx_se, idx_hid)], "bias": g("se_expand_bias")[idx_hid]}
    out["project"] = {"kernel": g("project")[:, :, idx_hid][:, :, :, idx_out]}
    bn("project_bn", idx_out)
    return out, stats
