"""FIR resampling of images `[B, H, W, C]` (StyleGAN2's `upfirdn2d`), separable filters.

    upfirdn(x, f, up, down, pad) = downsample_down( conv( pad( zero_insert_up(x) ), f ) )

`conv` is a true convolution (the filter flipped; the default [1, 3, 3, 1] is symmetric).
`upsample2d` uses gain up² and padding ((len(f) + up - 1) // 2, (len(f) - up) // 2);
`downsample2d` padding ((len(f) - down + 1) // 2, (len(f) - down) // 2), both as in
NVlabs/stylegan2-ada-pytorch `torch_utils/ops/upfirdn2d.py`.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from jaxlab.nn.conv import conv_general_dilated

__all__ = ["setup_filter", "upfirdn2d", "upsample2d", "downsample2d", "blur2d"]


def setup_filter(taps=(1, 3, 3, 1)) -> np.ndarray:
    """The 1-D filter normalised to sum 1 (applied separably: the 2-D filter is outer(f, f))."""
    f = np.asarray(taps, np.float32)
    return f / f.sum()


def _fir_axis(x: jnp.ndarray, f: np.ndarray, axis: int) -> jnp.ndarray:
    """Valid true convolution of `x` with 1-D `f` along `axis` (1 = H, 2 = W), per channel."""
    c = x.shape[-1]
    k = jnp.asarray(f[::-1].copy(), x.dtype)
    shape = (len(f), 1, 1, c) if axis == 1 else (1, len(f), 1, c)
    kern = jnp.broadcast_to(k.reshape(shape[:2] + (1, 1)), shape)
    return conv_general_dilated(x, kern, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                feature_group_count=c)


def upfirdn2d(x: jnp.ndarray, f: np.ndarray, up: int = 1, down: int = 1, pad: tuple[int, int] = (0, 0),
              gain: float = 1.0) -> jnp.ndarray:
    """Zero-insert by `up`, pad `pad` (before, after) on H and W, separable FIR `f`, keep every `down`-th."""
    b, h, w, c = x.shape
    if up > 1:
        x = x.reshape(b, h, 1, w, 1, c)
        x = jnp.pad(x, ((0, 0), (0, 0), (0, up - 1), (0, 0), (0, up - 1), (0, 0)))
        x = x.reshape(b, h * up, w * up, c)
    x = jnp.pad(x, ((0, 0), pad, pad, (0, 0)))
    g = float(gain) ** 0.5  # the gain is split over the two separable passes
    x = _fir_axis(x, f * g, 1)
    x = _fir_axis(x, f * g, 2)
    if down > 1:
        x = x[:, ::down, ::down, :]
    return x


def upsample2d(x: jnp.ndarray, f: np.ndarray | None = None, up: int = 2) -> jnp.ndarray:
    """`[B, H, W, C] -> [B, up·H, up·W, C]`, FIR-interpolated with gain up²."""
    f = setup_filter() if f is None else f
    fw = len(f)
    return upfirdn2d(x, f, up=up, pad=((fw + up - 1) // 2, (fw - up) // 2), gain=up * up)


def downsample2d(x: jnp.ndarray, f: np.ndarray | None = None, down: int = 2) -> jnp.ndarray:
    """`[B, H, W, C] -> [B, H/down, W/down, C]`, FIR-lowpassed then decimated."""
    f = setup_filter() if f is None else f
    fw = len(f)
    return upfirdn2d(x, f, down=down, pad=((fw - down + 1) // 2, (fw - down) // 2))


def blur2d(x: jnp.ndarray, f: np.ndarray | None = None, pad: tuple[int, int] | None = None) -> jnp.ndarray:
    """FIR low-pass at the same resolution (before a stride-2 conv): pad so that the size is kept + `extra`."""
    f = setup_filter() if f is None else f
    fw = len(f)
    pad = ((fw - 1) // 2, fw // 2) if pad is None else pad
    return upfirdn2d(x, f, pad=pad)
