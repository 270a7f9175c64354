"""The masked ScaleNet super-supernet and standalone networks extracted from it.

`SuperNet(space)(x, arch)`: stem conv3x3 -> MaskedMBConv layers -> head conv1x1 ->
global average pool -> dense. `arch = {"ops": int[L], "channels": int[S+1], "side": int}`
(see `space.py`) enters as arrays, turned into channel masks of the coupling scheme
(`jaxlab.nas.widths`: bilateral left/right, or prefix), so **one compiled function per
input resolution** serves every sub-network and both sides; a population of
architectures can be vmapped. BN uses batch statistics (train mode and the search's BN
recalibration).

`extract_subnet(space, params, arch, side)` gathers the active weights into a
standalone `SubNet` (plain `nn.Conv`/`nn.BatchNorm`/`nn.Dense`) with the same output;
`subnet_from_arch(space, arch)` builds the same network freshly initialised (retraining
from scratch).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxlab.nas.widths import LEFT, index_set, width_mask
from jaxlab.nn.conv import Conv, conv_general_dilated
from jaxlab.nn.linear import Dense
from jaxlab.nn.mbconv import MaskedMBConv, MBConv, activation, conv_init, extract_mbconv, masked_batch_norm
from jaxlab.scalenet.space import Space

__all__ = ["SuperNet", "SubNet", "init_params", "extract_subnet", "subnet_blocks", "subnet_from_arch",
           "ensemble_logits"]


def _scheme(space: Space) -> str:
    return "bilateral" if space.cfg.coupling == "bilateral" else "prefix"


class SuperNet(nn.Module):
    """Masked super-supernet of `space` (a `Space`). Input `[N, R, R, 3]`."""

    space: Any
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, arch):
        sp: Space = self.space
        cfg = sp.cfg
        act = activation(cfg.act)
        scheme = _scheme(sp)
        side = arch["side"]
        ch = arch["channels"]
        masks = [width_mask(int(C), ch[i], scheme, side=side) for i, C in enumerate(sp.super_channels)]

        w = self.param("stem", conv_init, (3, 3, 3, sp.super_stem))
        h = conv_general_dilated(x, w, (cfg.stem_stride,) * 2, "SAME",
                                 dimension_numbers=("NHWC", "HWIO", "NHWC"))
        h = act(masked_batch_norm(h, self.param("stem_bn_scale", nn.initializers.ones, (sp.super_stem,)),
                                  self.param("stem_bn_bias", nn.initializers.zeros, (sp.super_stem,)), masks[0]))
        for li, l in enumerate(sp.layers):
            c_in_max = int(sp.super_channels[l["in_slot"]])
            blk = MaskedMBConv(c_in_max, int(sp.super_channels[l["out_slot"]]), l["expand"],
                               kernels=cfg.kernels, stride=l["stride"], se_div=cfg.se_div, act=cfg.act,
                               dtype=self.dtype, name=f"s{l['stage']}_l{l['index']}")
            hid_act = ch[l["in_slot"]] * l["expand"]
            hid_mask = width_mask(blk.hidden_max, hid_act, scheme, side=side)
            se_mask = (width_mask(blk.se_max, jnp.maximum(1, hid_act // cfg.se_div), scheme, side=side)
                       if cfg.se_div else None)
            h = blk(h, arch["ops"][li], masks[l["in_slot"]], hid_mask, se_mask, masks[l["out_slot"]])
        w = self.param("head", conv_init, (1, 1, int(sp.super_channels[-1]), cfg.head_channels))
        h = conv_general_dilated(h, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
        ones = jnp.ones(cfg.head_channels)
        h = act(masked_batch_norm(h, self.param("head_bn_scale", nn.initializers.ones, (cfg.head_channels,)),
                                  self.param("head_bn_bias", nn.initializers.zeros, (cfg.head_channels,)), ones))
        h = jnp.mean(h, axis=(1, 2))
        return Dense(cfg.num_classes, kernel_init=nn.initializers.normal(0.01), name="classifier")(h)


class SubNet(nn.Module):
    """Standalone network: `blocks` rows `(c_in, c_out, hidden, kernel, stride, se, expand)`."""

    stem: int
    stem_stride: int
    blocks: tuple
    head: int
    num_classes: int
    act: str = "hswish"
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = True):
        a = activation(self.act)
        bn = lambda name: nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, name=name)
        h = Conv(self.stem, (3, 3), strides=self.stem_stride, padding="SAME", use_bias=False,
                 kernel_init=conv_init, dtype=self.dtype, name="stem")(x)
        h = a(bn("stem_bn")(h))
        for i, (c_in, c_out, hid, k, stride, se, expand) in enumerate(self.blocks):
            h = MBConv(c_in, c_out, hid, k, stride, se, bool(expand), act=self.act, dtype=self.dtype,
                       name=f"block{i}")(h, train)
        h = Conv(self.head, (1, 1), use_bias=False, kernel_init=conv_init, dtype=self.dtype, name="head")(h)
        h = a(bn("head_bn")(h))
        h = jnp.mean(h, axis=(1, 2))
        return Dense(self.num_classes, kernel_init=nn.initializers.normal(0.01), dtype=self.dtype,
                     name="classifier")(h)


def subnet_blocks(space: Space, arch: dict) -> list[tuple[int, tuple]]:
    """`(super layer index, block row)` of each non-identity layer of `arch`."""
    cfg = space.cfg
    ops = np.asarray(arch["ops"])
    ch = np.asarray(arch["channels"])
    rows = []
    for li, l in enumerate(space.layers):
        op = int(ops[li])
        if op == 0:
            if not l["identity_ok"]:
                raise ValueError(f"arch.ops[{li}] is the identity at the first layer of stage {l['stage']}")
            continue
        c_in, c_out = int(ch[l["in_slot"]]), int(ch[l["out_slot"]])
        hid = c_in * l["expand"]
        se = max(1, hid // cfg.se_div) if cfg.se_div else 0
        rows.append((li, (c_in, c_out, hid, int(cfg.kernels[op - 1]), l["stride"], se, int(l["expand"] != 1))))
    return rows


def subnet_from_arch(space: Space, arch: dict, dtype=jnp.float32) -> SubNet:
    """The standalone network of `arch` (parameters to be initialised)."""
    cfg = space.cfg
    ch = np.asarray(arch["channels"])
    return SubNet(int(ch[0]), cfg.stem_stride, tuple(r for _, r in subnet_blocks(space, arch)),
                  cfg.head_channels, cfg.num_classes, cfg.act, dtype)


def extract_subnet(space: Space, supernet_params: dict, arch: dict, side: int = LEFT):
    """Standalone `SubNet` and variables `{"params", "batch_stats"}` equal to the masked
    supernet on `arch` and coupling `side` (0/"left", 1/"right")."""
    if isinstance(side, str):
        if side not in ("left", "right"):
            raise ValueError(f"side must be 'left' or 'right', got {side!r}")
        side = 0 if side == "left" else 1
    if space.cfg.coupling == "prefix" and side != LEFT:
        raise ValueError("a prefix-coupled supernet has only the left side")
    scheme = _scheme(space)
    p = supernet_params["params"] if "params" in supernet_params else supernet_params
    p = jax.device_get(p)
    ch = np.asarray(arch["channels"])
    idx = [index_set(int(C), int(ch[i]), scheme, side=side) for i, C in enumerate(space.super_channels)]
    cfg = space.cfg
    params, stats = {}, {}

    def bn_stats(n):
        return {"mean": np.zeros(n, np.float32), "var": np.ones(n, np.float32)}

    params["stem"] = {"kernel": np.asarray(p["stem"])[..., idx[0]]}
    params["stem_bn"] = {"scale": np.asarray(p["stem_bn_scale"])[idx[0]], "bias": np.asarray(p["stem_bn_bias"])[idx[0]]}
    stats["stem_bn"] = bn_stats(len(idx[0]))
    for bi, (li, row) in enumerate(subnet_blocks(space, arch)):
        l = space.layers[li]
        c_in, c_out, hid, k, stride, se, expand = row
        blk_p = p[f"s{l['stage']}_l{l['index']}"]
        hid_max = int(space.super_channels[l["in_slot"]]) * l["expand"]
        i_hid = index_set(hid_max, hid, scheme, side=side)
        i_se = index_set(max(1, hid_max // cfg.se_div), se, scheme, side=side) if se else None
        bp, bs = extract_mbconv(blk_p, int(np.asarray(arch["ops"])[li]), cfg.kernels, idx[l["in_slot"]], i_hid,
                                i_se, idx[l["out_slot"]], l["expand"])
        params[f"block{bi}"], stats[f"block{bi}"] = bp, bs
    params["head"] = {"kernel": np.asarray(p["head"])[:, :, idx[-1], :]}
    params["head_bn"] = {"scale": np.asarray(p["head_bn_scale"]), "bias": np.asarray(p["head_bn_bias"])}
    stats["head_bn"] = bn_stats(cfg.head_channels)
    params["classifier"] = jax.tree_util.tree_map(np.asarray, p["classifier"])
    model = subnet_from_arch(space, arch)
    variables = jax.tree_util.tree_map(jnp.asarray, {"params": params, "batch_stats": stats})
    return model, variables


def ensemble_logits(apply_fn, params, x, arch, coupling: str = "bilateral"):
    """Left + right logits (bilateral coupling) or the left logits (prefix)."""
    if coupling != "bilateral":
        return apply_fn(params, x, dict(arch, side=jnp.int32(0)))
    return (apply_fn(params, x, dict(arch, side=jnp.int32(0)))
            + apply_fn(params, x, dict(arch, side=jnp.int32(1))))


def _fill(path: str, shape, rng: np.random.Generator) -> np.ndarray:
    """Host-side initial value of one leaf, by name (cheap: no RNG program to compile).

    Convs: He normal with fan-out (`2 / (k^2 c_out)`, depthwise: `2 / k^2`); BN scale 1,
    biases 0; SE dense: LeCun normal; classifier: N(0, 0.01^2) (spec sec. 2.4).
    """
    name = path.split("/")[-1]
    if name.endswith("_scale") or name == "scale":
        return np.ones(shape, np.float32)
    if name.endswith("_bias") or name == "bias":
        return np.zeros(shape, np.float32)
    if "classifier" in path:
        return (0.01 * rng.standard_normal(shape)).astype(np.float32)
    if "se_" in name or (len(shape) == 2):
        return (rng.standard_normal(shape) / np.sqrt(shape[0])).astype(np.float32)
    kh, kw, cin, cout = shape
    fan_out = kh * kw * (cout if cin > 1 else 1)
    return (np.sqrt(2.0 / fan_out) * rng.standard_normal(shape)).astype(np.float32)


def init_params(model: nn.Module, seed: int, *args, **kwargs) -> dict:
    """`{"params": ...}` of `model` filled on the host with `_fill` (structure from
    `jax.eval_shape(model.init)`); extra collections (e.g. `batch_stats`) as flax inits
    them (zeros / ones)."""
    shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), *args, **kwargs))
    rng = np.random.default_rng(seed)
    flat = jax.tree_util.tree_flatten_with_path(shapes)[0]
    out = {}
    for path, leaf in flat:
        names = [getattr(k, "key", str(k)) for k in path]
        if names[0] == "params":
            val = _fill("/".join(names), leaf.shape, rng)
        elif names[-1] == "var":
            val = np.ones(leaf.shape, np.float32)
        else:
            val = np.zeros(leaf.shape, np.float32)
        d = out
        for n in names[:-1]:
            d = d.setdefault(n, {})
        d[names[-1]] = jnp.asarray(val)
    return out
