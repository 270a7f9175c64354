"""StyleGAN2 (generator and residual discriminator) and the W+ encoder, as Linen modules.

Layout follows NVlabs/stylegan2-ada-pytorch `training/networks.py` (images are NHWC here):

    mapping:    z -> z·rsqrt(mean(z²) + 1e-8) -> L x [FC + lrelu(0.2)·√2] -> w, broadcast to num_ws
    synthesis:  const [4, 4, C] -> block_4 (conv w0, toRGB w1)
                block_2^k (k >= 3): up-conv w_{2k-5}, conv w_{2k-4}, toRGB w_{2k-3};  img = up(img) + toRGB(x)
    layer:      s = A(w);  W' = W·s;  W'' = W' · rsqrt(Σ W'² + 1e-8);  x = conv(x, W'') + n·σ + b;  lrelu·√2
    D:          fromRGB -> resnet blocks (conv, conv↓; skip 1x1↓; both ×√0.5) -> mbstd -> conv -> FC -> FC -> 1

Every layer uses the equalised learning rate: stored weights ~ N(0, 1)/lr_mul, multiplied by
lr_mul/√fan_in in the forward pass, biases by lr_mul.

The up-convolution (`up_conv="transpose"`, the default) is that code's: a stride-2 transposed
convolution followed by the FIR [1,3,3,1]·4 (`fir.upsample_conv2d`). `up_conv="upsample"` is
the earlier form of this module: FIR up-sampling (zero insertion, [1,3,3,1]·4) then a SAME 3x3
convolution, which equals it away from the border but pads the interpolated image with zeros
and costs 4x the multiply-adds. Deviation (documented): the down-convolution of D is a FIR
blur followed by a stride-2 3x3 convolution.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxlab.core.fusion import materialize
from jaxlab.nn.cnn import MLP, ConvBlock
from jaxlab.nn.conv import conv_general_dilated
from jaxlab.nn.linear import Dense
from jaxlab.nn.vit import ViT
from jaxlab.video2stylegan import fir

__all__ = ["num_ws", "ws_layout", "channels_at", "EqualLinear", "EqualConv", "MappingNetwork",
           "modulated_conv2d", "modulated_1x1", "one_by_one_form", "const_noise", "SynthesisLayer", "ToRGB",
           "SynthesisNetwork", "Generator", "minibatch_stddev", "Discriminator", "Encoder", "AuxCNN", "NOISE_CONST"]

SQRT2 = math.sqrt(2.0)
NOISE_CONST = 0x401  # stream of the fixed ("const") noise maps


def lrelu(x):
    return jax.nn.leaky_relu(x, 0.2) * SQRT2


def num_ws(resolution: int) -> int:
    """Number of W+ entries: 2·log2(R) − 2 (18 at 1024, 8 at 32)."""
    return 2 * int(round(math.log2(resolution))) - 2


def ws_layout(resolution: int) -> dict[str, int]:
    """`{layer name: W+ index}`: b4.conv1 -> 0, b4.torgb -> 1, b{2^k}.conv0 -> 2k−5, conv1 -> 2k−4, torgb -> 2k−3."""
    out = {"b4.conv1": 0, "b4.torgb": 1}
    for k in range(3, int(round(math.log2(resolution))) + 1):
        r = 2 ** k
        out[f"b{r}.conv0"], out[f"b{r}.conv1"], out[f"b{r}.torgb"] = 2 * k - 5, 2 * k - 4, 2 * k - 3
    return out


def channels_at(res: int, channel_base: int, channel_max: int) -> int:
    """min(channel_base / res, channel_max), as in StyleGAN2 (32768 / res, 512 at full size)."""
    return int(min(channel_base // res, channel_max))


class EqualLinear(nn.Module):
    """FC with the equalised learning rate: `y = x (W · lr_mul/√fan_in) + b · lr_mul`, `W ~ N(0,1)/lr_mul`."""

    features: int
    lr_mul: float = 1.0
    bias_init: float = 0.0
    activation: bool = False

    @nn.compact
    def __call__(self, x):
        fan_in = x.shape[-1]
        w = self.param("kernel", lambda k, s: jax.random.normal(k, s) / self.lr_mul, (fan_in, self.features))
        b = self.param("bias", lambda k, s: jnp.full(s, self.bias_init / self.lr_mul, jnp.float32), (self.features,))
        y = x @ (w * (self.lr_mul / math.sqrt(fan_in))) + b * self.lr_mul
        return lrelu(y) if self.activation else y


class EqualConv(nn.Module):
    """Conv (NHWC) with the equalised learning rate, optional FIR down-sampling by 2 and activation."""

    features: int
    kernel: int = 3
    down: bool = False
    use_bias: bool = True
    activation: bool = True

    @nn.compact
    def __call__(self, x):
        cin = x.shape[-1]
        w = self.param("kernel", nn.initializers.normal(1.0), (self.kernel, self.kernel, cin, self.features))
        w = w / math.sqrt(cin * self.kernel * self.kernel)
        if self.down:
            if self.kernel > 1:
                x = fir.blur2d(x)
                y = conv_general_dilated(x, w, (2, 2), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
            else:
                y = conv_general_dilated(fir.downsample2d(x), w, (1, 1), "SAME",
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"))
        else:
            y = conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
        if self.use_bias:
            y = y + self.param("bias", nn.initializers.zeros, (self.features,))
        return lrelu(y) if self.activation else y


class MappingNetwork(nn.Module):
    """`z [B, z_dim] -> w [B, w_dim]`: normalise z (2nd moment), `num_layers` equalised FC + lrelu."""

    w_dim: int = 512
    num_layers: int = 8
    lr_mul: float = 0.01

    @nn.compact
    def __call__(self, z):
        x = z * lax.rsqrt(jnp.mean(jnp.square(z), axis=-1, keepdims=True) + 1e-8)
        for i in range(self.num_layers):
            x = EqualLinear(self.w_dim, lr_mul=self.lr_mul, activation=True, name=f"fc{i}")(x)
        return x


def modulated_conv2d(x, weight, styles, demodulate: bool = True, fused: bool | str = False, up: bool = False):
    """Per-sample modulated (and demodulated) convolution, SAME padding.

    Args:
      x: `[B, H, W, Cin]`; weight: `[k, k, Cin, Cout]`; styles: `[B, Cin]`.
      fused: False (default): modulate the activations, one shared convolution, demodulate the
        outputs (`conv(x·s, W)·d`, StyleGAN2's training path); True: one grouped convolution
        over the batch with per-sample weights `[k, k, Cin, B·Cout]`; "vmap": one convolution per
        sample. All three give the same result.
      up: the convolution is `fir.upsample_conv2d` (output `[B, 2H, 2W, Cout]`); with `fused`
        True or "vmap" it then runs once per sample.

    `W'_b = W · s_b[cin]`, `W''_b = W'_b · rsqrt(Σ_{kh,kw,cin} W'_b² + 1e-8)` when demodulating.
    """
    b, h, w_, cin = x.shape
    k, _, _, cout = weight.shape
    dn = ("NHWC", "HWIO", "NHWC")
    if fused is False and k == 1 and not up and not demodulate:
        return modulated_1x1(x, weight[0, 0], styles)
    if fused is False:
        xs = x * styles[:, None, None, :]
        y = fir.upsample_conv2d(xs, weight) if up else conv_general_dilated(xs, weight, (1, 1), "SAME",
                                                                            dimension_numbers=dn)
        if demodulate:
            # Σ_{kh,kw,cin} (W s)² = (s²) · (Σ_{kh,kw} W²)  -> [B, Cout]
            d = lax.rsqrt(jnp.square(styles) @ jnp.sum(jnp.square(weight), axis=(0, 1)) + 1e-8)
            y = y * d[:, None, None, :]
        return y
    wb = weight[None] * styles[:, None, None, :, None]  # [B, k, k, Cin, Cout]
    if demodulate:
        wb = wb * lax.rsqrt(jnp.sum(jnp.square(wb), axis=(1, 2, 3), keepdims=True) + 1e-8)
    if up:
        return jax.vmap(lambda xi, wi: fir.upsample_conv2d(xi[None], wi)[0])(x, wb)
    if fused == "vmap":
        return jax.vmap(lambda xi, wi: conv_general_dilated(xi[None], wi, (1, 1), "SAME",
                                                            dimension_numbers=dn)[0])(x, wb)
    xg = jnp.transpose(x, (1, 2, 0, 3)).reshape(1, h, w_, b * cin)
    wg = jnp.transpose(wb, (1, 2, 3, 0, 4)).reshape(k, k, cin, b * cout)
    y = conv_general_dilated(xg, wg, (1, 1), "SAME", dimension_numbers=dn, feature_group_count=b)
    return jnp.transpose(y.reshape(h, w_, b, cout), (2, 0, 1, 3))


@functools.lru_cache(maxsize=64)
def const_noise(layer_index: int, height: int, width: int) -> np.ndarray:
    """The fixed ("const") noise map of layer `layer_index`: `N(0, 1)` of shape `[1, height, width, 1]`
    from the key `fold_in(key(NOISE_CONST), layer_index)`.

    Drawn once, outside any trace, and embedded in the programs that use it as a constant:
    drawn inside a jitted function, XLA:CPU ran the Threefry rounds of every map (rolled
    loops) and the inverse error function on every call. The `default` generator at 32 px,
    batch 16 (medians of 25 interleaved calls): forward + backward 50.6 -> 50.1 ms on one
    core and 34.7 -> 34.3 ms on two, forward 14.6 -> 14.4 and 10.1 -> 9.9 ms.
    """
    with jax.ensure_compile_time_eval():
        key = jax.random.fold_in(jax.random.key(NOISE_CONST), layer_index)
        return np.asarray(jax.random.normal(key, (1, height, width, 1)))


_ONE_BY_ONE_FORM: contextvars.ContextVar[str] = contextvars.ContextVar("jaxlab_v2s_1x1_form", default="batched")


@contextlib.contextmanager
def one_by_one_form(form: str):
    """Traces the toRGB layers' forward product (`modulated_1x1`) inside the block in `form`:
    "batched" (the default: per-sample weights, one batched product) or "shared" (the
    activations times the styles, one product with the shared kernel). The backward pass is
    the same. For programs compiled with XLA's own dot thunks (`runtime.cpu_compiler_options(
    dots="eigen")`), which run the batched product with three output columns slowly: encoding
    16 frames at 32 px, medians of 30 interleaved calls, 17.8 -> 17.3 ms on two cores and
    22.2 -> 22.0 ms on one."""
    if form not in ("batched", "shared"):
        raise ValueError(f"one_by_one_form: form must be 'batched' or 'shared', got {form!r}")
    token = _ONE_BY_ONE_FORM.set(form)
    try:
        yield
    finally:
        _ONE_BY_ONE_FORM.reset(token)


def modulated_1x1(x, weight, styles):
    """`y[b, h, w] = (x[b, h, w] · styles[b]) @ weight`: a 1x1 convolution of modulated
    activations without demodulation (the toRGB layers). `x [B, H, W, Cin]`, `weight [Cin, Cout]`,
    `styles [B, Cin]`.

    Forward (`one_by_one_form`): one batched product with the per-sample weights
    `styles[b, :, None] · weight`, so the modulated activations are never written out.
    Backward: with `M[b] = gᵀ[b] x[b]` (`[Cout, Cin]` per sample, one batched product),
    `dweight = Σ_b styles[b] ⊙ M[b]ᵀ`, `dstyles[b] = Σ_o weight ⊙ M[b]ᵀ`, `dx = (g @ weightᵀ) ·
    styles`. Autodiff of the convolution form took a transposed copy of the modulated
    activations, a convolution for the kernel gradient and a product-and-sum over the
    activations for the styles' gradient: at 32 px (batch 16, 64 channels) 2.5 ms on one core
    against about 0.8 ms now. The `default` generator's forward + backward at 32 px, batch 16
    (medians of 25 and 40 interleaved calls): 52.0 -> 49.7 ms on one core, 33.5 -> 32.6 ms on
    two; the forward alone 14.5 -> 14.2 ms and 9.3 -> 9.5 ms.
    """
    return _modulated_1x1(x, weight, styles, _ONE_BY_ONE_FORM.get())


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def _modulated_1x1(x, weight, styles, form):
    b, h, w, cin = x.shape
    if form == "shared":
        return ((x * styles[:, None, None, :]).reshape(-1, cin) @ weight).reshape(b, h, w, weight.shape[1])
    wb = styles[:, :, None] * weight[None]
    y = lax.dot_general(x.reshape(b, h * w, cin), wb, (((2,), (1,)), ((0,), (0,))))
    return y.reshape(b, h, w, weight.shape[1])


def _modulated_1x1_fwd(x, weight, styles, form):
    return _modulated_1x1(x, weight, styles, form), (x, weight, styles)


def _modulated_1x1_bwd(form, res, g):
    x, weight, styles = res
    b, h, w, cin = x.shape
    cout = weight.shape[1]
    g3 = g.reshape(b, h * w, cout)
    m = lax.dot_general(g3, x.reshape(b, h * w, cin), (((1,), (1,)), ((0,), (0,))))  # [B, Cout, Cin]
    dweight = jnp.einsum("bc,boc->co", styles, m)
    dstyles = jnp.einsum("co,boc->bc", weight, m)
    # behind a fusion boundary: XLA otherwise folds the styles into the product, a batched
    # product with per-sample [Cout, Cin] weights (1.45 ms at 32 px on one core, against 0.14 ms
    # for the plain product)
    (dxs,) = materialize(g.reshape(-1, cout) @ weight.T)
    dx = dxs.reshape(b, h, w, cin) * styles[:, None, None, :]
    return dx, dweight, dstyles


_modulated_1x1.defvjp(_modulated_1x1_fwd, _modulated_1x1_bwd)


class SynthesisLayer(nn.Module):
    """Modulated 3x3 conv (×2 up-sampling if `up`, in the form `up_conv` names: "transpose" or
    "upsample", see the module docstring), per-pixel noise, bias, lrelu·√2, clamp.

    `noise_mode`: "random" (N(0,1) from the 'noise' RNG), "const" (a fixed map from NOISE_CONST and
    `layer_index`, the same on every call), "none", or a given `[H, W]` map (a converted checkpoint's
    `noise_const` buffer, `jaxlab.video2stylegan.convert`).
    """

    features: int
    up: bool = False
    layer_index: int = 0
    conv_clamp: float | None = 256.0
    fused: bool | str = False
    up_conv: str = "transpose"

    @nn.compact
    def __call__(self, x, w, noise_mode: str = "random"):
        cin = x.shape[-1]
        styles = EqualLinear(cin, bias_init=1.0, name="affine")(w)
        weight = self.param("kernel", nn.initializers.normal(1.0), (3, 3, cin, self.features))
        if self.up_conv not in ("transpose", "upsample"):
            raise ValueError(f"up_conv must be 'transpose' or 'upsample', got {self.up_conv!r}")
        if self.up and self.up_conv == "upsample":
            x = fir.upsample2d(x)
        x = modulated_conv2d(x, weight, styles, demodulate=True, fused=self.fused,
                             up=self.up and self.up_conv == "transpose")
        b, h, w_, _ = x.shape
        strength = self.param("noise_strength", nn.initializers.zeros, ())
        if not isinstance(noise_mode, str):
            if jnp.shape(noise_mode) != (h, w_):
                raise ValueError(f"{self.name}: a given noise map must be [{h}, {w_}], got {jnp.shape(noise_mode)}")
            noise = jnp.asarray(noise_mode, x.dtype)[None, :, :, None]
        elif noise_mode == "random":
            noise = jax.random.normal(self.make_rng("noise"), (b, h, w_, 1))
        elif noise_mode == "const":
            noise = const_noise(self.layer_index, h, w_)
        elif noise_mode == "none":
            noise = jnp.zeros((1, h, w_, 1))
        else:
            raise ValueError(f"noise_mode must be 'random', 'const' or 'none', got {noise_mode!r}")
        x = x + noise * strength
        x = lrelu(x + self.param("bias", nn.initializers.zeros, (self.features,)))
        if self.conv_clamp is not None:
            x = jnp.clip(x, -self.conv_clamp, self.conv_clamp)
        return x


class ToRGB(nn.Module):
    """1x1 modulated conv without demodulation; the style is scaled by 1/√Cin; + bias, no activation."""

    channels: int = 3
    conv_clamp: float | None = 256.0

    @nn.compact
    def __call__(self, x, w):
        cin = x.shape[-1]
        styles = EqualLinear(cin, bias_init=1.0, name="affine")(w) / math.sqrt(cin)
        weight = self.param("kernel", nn.initializers.normal(1.0), (1, 1, cin, self.channels))
        y = modulated_conv2d(x, weight, styles, demodulate=False)
        y = y + self.param("bias", nn.initializers.zeros, (self.channels,))
        return jnp.clip(y, -self.conv_clamp, self.conv_clamp) if self.conv_clamp is not None else y


class SynthesisNetwork(nn.Module):
    """`ws [B, num_ws, w_dim] -> img [B, R, R, 3]` with the skip (toRGB) architecture.

    `noise_mode` is one mode for every layer ("random", "const", "none") or a mapping from each
    layer's name (`"b4_conv1"`, `"b8_conv0"`, ...) to its `[H, W]` noise map.
    """

    resolution: int = 32
    channel_base: int = 32768
    channel_max: int = 512
    conv_clamp: float | None = 256.0
    fused: bool | str = False
    up_conv: str = "transpose"

    @nn.compact
    def __call__(self, ws, noise_mode: str = "random"):
        if ws.shape[1] != num_ws(self.resolution):
            raise ValueError(f"ws has {ws.shape[1]} entries, resolution {self.resolution} needs "
                             f"{num_ws(self.resolution)}")
        lay = ws_layout(self.resolution)
        if not isinstance(noise_mode, str):
            names = {"b4_conv1"} | {f"b{2 ** k}_conv{i}" for k in range(3, int(round(math.log2(self.resolution))) + 1)
                                     for i in (0, 1)}
            if set(noise_mode) != names:
                raise ValueError(f"noise maps must be given for exactly the layers {sorted(names)}, "
                                 f"got {sorted(noise_mode)}")
        mode = lambda name: noise_mode if isinstance(noise_mode, str) else noise_mode[name]
        c4 = channels_at(4, self.channel_base, self.channel_max)
        const = self.param("const", nn.initializers.normal(1.0), (4, 4, c4))
        x = jnp.broadcast_to(const, (ws.shape[0], 4, 4, c4))
        x = SynthesisLayer(c4, layer_index=0, conv_clamp=self.conv_clamp, fused=self.fused,
                           name="b4_conv1")(x, ws[:, lay["b4.conv1"]], mode("b4_conv1"))
        img = ToRGB(conv_clamp=self.conv_clamp, name="b4_torgb")(x, ws[:, lay["b4.torgb"]])
        self.sow("intermediates", "b4", x)
        for k in range(3, int(round(math.log2(self.resolution))) + 1):
            r = 2 ** k
            c = channels_at(r, self.channel_base, self.channel_max)
            x = SynthesisLayer(c, up=True, layer_index=2 * k - 5, conv_clamp=self.conv_clamp, fused=self.fused,
                               up_conv=self.up_conv, name=f"b{r}_conv0")(x, ws[:, lay[f"b{r}.conv0"]],
                                                                          mode(f"b{r}_conv0"))
            x = SynthesisLayer(c, layer_index=2 * k - 4, conv_clamp=self.conv_clamp, fused=self.fused,
                               name=f"b{r}_conv1")(x, ws[:, lay[f"b{r}.conv1"]], mode(f"b{r}_conv1"))
            self.sow("intermediates", f"b{r}", x)
            img = fir.upsample2d(img) + ToRGB(conv_clamp=self.conv_clamp, name=f"b{r}_torgb")(
                x, ws[:, lay[f"b{r}.torgb"]])
        return img


class Generator(nn.Module):
    """Mapping + synthesis. `__call__(z)` maps, broadcasts to num_ws and synthesises;
    `mapping(z)` gives w `[B, w_dim]`; `synthesis(ws)` renders `ws [B, num_ws, w_dim]`.

    Truncation and style mixing act on ws between the two (see `jaxlab.video2stylegan.gan`).
    """

    resolution: int = 32
    z_dim: int = 512
    w_dim: int = 512
    mapping_layers: int = 8
    mapping_lr_mul: float = 0.01
    channel_base: int = 32768
    channel_max: int = 512
    conv_clamp: float | None = 256.0
    fused: bool | str = False
    up_conv: str = "transpose"

    def setup(self):
        self.mapping_net = MappingNetwork(self.w_dim, self.mapping_layers, self.mapping_lr_mul)
        self.synthesis_net = SynthesisNetwork(self.resolution, self.channel_base, self.channel_max,
                                              self.conv_clamp, self.fused, self.up_conv)

    @property
    def num_ws(self) -> int:
        return num_ws(self.resolution)

    def mapping(self, z):
        return self.mapping_net(z)

    def synthesis(self, ws, noise_mode: str = "random"):
        return self.synthesis_net(ws, noise_mode)

    def __call__(self, z, noise_mode: str = "random"):
        w = self.mapping(z)
        return self.synthesis(jnp.repeat(w[:, None], self.num_ws, axis=1), noise_mode)


def minibatch_stddev(x, group_size: int = 4, num_channels: int = 1):
    """Appends the std over groups of `group_size` samples: `[B, H, W, C] -> [B, H, W, C + F]`.

    Samples are grouped as `x.reshape(G, B/G, ...)`: group m holds samples m, m + B/G, m + 2B/G, ...
    Per group and feature slice: std over the group (biased, +1e-8 under the root), averaged over
    the slice's channels and pixels, tiled over H x W.
    """
    b, h, w, c = x.shape
    g = min(group_size, b)
    if b % g:
        raise ValueError(f"minibatch std: batch {b} is not a multiple of the group size {g}")
    f = num_channels
    y = x.reshape(g, b // g, h, w, f, c // f)
    y = y - y.mean(axis=0)
    y = jnp.sqrt(jnp.mean(jnp.square(y), axis=0) + 1e-8)  # [B/G, H, W, F, c]
    y = y.mean(axis=(1, 2, 4))  # [B/G, F]
    y = jnp.tile(y, (g, 1))  # [B, F]: sample i gets group i % (B/G)
    return jnp.concatenate([x, jnp.broadcast_to(y[:, None, None, :], (b, h, w, f))], axis=-1)


class Discriminator(nn.Module):
    """Residual StyleGAN2 discriminator: `img [B, R, R, 3] -> logits [B]`."""

    resolution: int = 32
    channel_base: int = 32768
    channel_max: int = 512
    mbstd_group: int = 4
    mbstd_channels: int = 1

    @nn.compact
    def __call__(self, img):
        res = self.resolution
        x = EqualConv(channels_at(res, self.channel_base, self.channel_max), 1, name=f"b{res}_fromrgb")(img)
        while res > 4:
            c_out = channels_at(res // 2, self.channel_base, self.channel_max)
            skip = EqualConv(c_out, 1, down=True, use_bias=False, activation=False, name=f"b{res}_skip")(x)
            x = EqualConv(x.shape[-1], 3, name=f"b{res}_conv0")(x)
            x = EqualConv(c_out, 3, down=True, name=f"b{res}_conv1")(x)
            x = (skip + x) * math.sqrt(0.5)
            res //= 2
        c4 = x.shape[-1]
        if self.mbstd_group > 1:
            x = minibatch_stddev(x, self.mbstd_group, self.mbstd_channels)
        x = EqualConv(c4, 3, name="b4_conv")(x)
        x = EqualLinear(c4, activation=True, name="b4_fc")(x.reshape(x.shape[0], -1))
        return EqualLinear(1, name="b4_out")(x)[:, 0]


class Encoder(nn.Module):
    """ViT (jaxlab.nn) from a frame to W+ as `w_avg + Δw`, split at `reuse_start`.

    The pooled token feeds two linear heads: coarse (`reuse_start` x w_dim, W+ entries
    0..reuse_start−1) and fine (the rest). `__call__(x, w_avg, coarse_only=True)` returns only the
    coarse entries `[B, reuse_start, w_dim]` (the fine head is not evaluated); otherwise all of
    W+ `[B, num_ws, w_dim]`. Reconstruction: pooled-token heads stand in for the paper's
    undisclosed head design (pSp's `start_from_latent_avg` offset is kept).
    """

    num_ws: int
    w_dim: int
    reuse_start: int
    patch_size: int = 4
    embed_dim: int = 128
    depth: int = 4
    num_heads: int = 4
    delta_scale: float = 1.0

    @nn.compact
    def __call__(self, x, w_avg, coarse_only: bool = False):
        feats = ViT(num_classes=0, patch_size=self.patch_size, embed_dim=self.embed_dim, depth=self.depth,
                    num_heads=self.num_heads, pool="mean", class_token=False, name="vit")(x)
        k = self.reuse_start
        zeros = nn.initializers.zeros
        coarse = Dense(k * self.w_dim, kernel_init=zeros, name="head_coarse")(feats)
        coarse = w_avg + self.delta_scale * coarse.reshape(-1, k, self.w_dim)
        if coarse_only:
            return coarse
        fine = Dense((self.num_ws - k) * self.w_dim, kernel_init=zeros, name="head_fine")(feats)
        fine = w_avg + self.delta_scale * fine.reshape(-1, self.num_ws - k, self.w_dim)
        return jnp.concatenate([coarse, fine], axis=1)


class AuxCNN(nn.Module):
    """The small CNN of the auxiliary networks: `[B, R, R, 3] -> [B, out_dim]`.

    Conv stages of `jaxlab.nn.ConvBlock` (GroupNorm, ReLU) with 2x2 average pooling between them,
    then the last feature map pooled 2x2 once more and flattened (not a global average, so that
    positions survive) through `jaxlab.nn.MLP` `[hidden, out_dim]`. `proc_landmarks` reads 2K
    coordinates from it, `proc_3dmm` the 13 face-model parameters and `proc_id` an embedding
    (L2-normalised by its caller).
    """

    out_dim: int
    stages: tuple[int, ...] = (32, 64)
    blocks_per_stage: int = 1
    hidden: int = 128

    @nn.compact
    def __call__(self, x):
        for i, width in enumerate(self.stages):
            if i > 0:
                x = nn.avg_pool(x, (2, 2), strides=(2, 2), padding="SAME")
            for _ in range(self.blocks_per_stage):
                x = ConvBlock(width)(x)
        x = nn.avg_pool(x, (2, 2), strides=(2, 2), padding="SAME")
        return MLP((self.hidden, self.out_dim))(x.reshape(x.shape[0], -1))


def count_params(params: Any) -> int:
    return int(sum(x.size for x in jax.tree.leaves(params)))
