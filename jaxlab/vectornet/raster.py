"""The rendering baseline of the paper's Table 4: the vectorised scene drawn as a bird's-eye
image and encoded by a ResNet-18 (reconstruction at CPU scale).

The paper's best ConvNet (R18-k3-t-r400) crops 400 x 400 px (130 m) along the target's
trajectory and stacks 20 history frames. Here `rasterize` draws, from the same vectorised
layout every model reads (target frame: origin at the target's last observed position,
heading along +x), a `size` x `size` image covering `metres` on each side, with the target
`ahead` of the way from the left edge so that most of the view lies ahead of it. Channels:

    0       lane centrelines (each lane vector sampled at `samples` points)
    1       lane centrelines inside intersections
    2 + 2j  the target at frame j, 3 + 2j  the other agents at frame j

with frame j the positions `frames[j]` steps before the last observation (0 = now). Drawing
happens on the device inside the model (a scatter of ones), so the ConvNet trains through
the same batches, `core.train.fit` and evaluation as VectorNet; its MACs are counted for the
network only (`core.macs`), as the paper counts the ConvNet's FLOPs without rendering.

`RasterConvNet` is the image through `jaxlab.nn.resnet.ResNet` (CIFAR-style ResNet-18, 3x3
kernels, group normalisation so there is no batch state) to `num_future x 2` positions.
Width, size, extent and frames are config fields (`model.convnet_*`); none of them is the
paper's, which trains at 400 px on Waymo/Argoverse scale.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax.numpy as jnp

from jaxlab.nn.resnet import ResNet
from jaxlab.vectornet.polylines import FEATURES

__all__ = ["rasterize", "RasterConvNet", "num_channels"]

_TIME, _IS_TARGET, _IS_AGENT, _IS_LANE = (FEATURES.index(k) for k in ("time", "is_target", "is_agent", "is_lane"))
_IS_INTERSECTION = _IS_LANE + 1


def num_channels(frames: Sequence[int]) -> int:
    return 2 + 2 * len(frames)


def rasterize(vectors, vec_mask, *, num_obs: int, size: int = 64, metres: float = 64.0, ahead: float = 0.25,
              frames: Sequence[int] = (0, 4, 8, 12, 16), samples: int = 8):
    """`[B, P, V, F]` vectors -> `[B, size, size, 2 + 2 * len(frames)]` float32 image (0 or 1).

    Pixel (row r, column c) covers x in [x0 + c m, x0 + (c + 1) m), y in [y0 + r m, ...),
    m = metres / size, x0 = -ahead * metres, y0 = -metres / 2. Points outside are dropped."""
    b = vectors.shape[0]
    res = metres / size
    x0, y0 = -ahead * metres, -metres / 2
    valid = vec_mask.astype(bool)
    start, end = vectors[..., 0:2], vectors[..., 2:4]

    def pixels(xy):
        col = jnp.floor((xy[..., 0] - x0) / res).astype(jnp.int32)
        row = jnp.floor((xy[..., 1] - y0) / res).astype(jnp.int32)
        inside = (col >= 0) & (col < size) & (row >= 0) & (row < size)
        return row, col, inside

    batch = jnp.broadcast_to(jnp.arange(b)[:, None, None], valid.shape)
    image = jnp.zeros((b, size, size, num_channels(frames)), jnp.float32)
    # lanes: points along each vector
    t = jnp.linspace(0.0, 1.0, samples)
    pts = start[..., None, :] + t[:, None] * (end - start)[..., None, :]       # [B, P, V, S, 2]
    row, col, inside = pixels(pts)
    lane = valid & (vectors[..., _IS_LANE] > 0.5)
    for ch, sel in ((0, lane), (1, lane & (vectors[..., _IS_INTERSECTION] > 0.5))):
        on = sel[..., None] & inside
        image = image.at[jnp.broadcast_to(batch[..., None], on.shape), row, col, ch].max(
            on.astype(jnp.float32), mode="drop")
    # tracks: a vector starting k steps back ends k - 1 steps back (consecutive 10 Hz samples)
    back = jnp.rint(-vectors[..., _TIME] * num_obs).astype(jnp.int32) - 1
    row, col, inside = pixels(end)
    for j, k in enumerate(frames):
        for ch, kind in ((2 + 2 * j, _IS_TARGET), (3 + 2 * j, _IS_AGENT)):
            on = valid & (vectors[..., kind] > 0.5) & (back == k) & inside
            image = image.at[batch, row, col, ch].max(on.astype(jnp.float32), mode="drop")
    return image


class RasterConvNet(nn.Module):
    """The ConvNet baseline (reconstruction): `rasterize` then ResNet-18 to `[B, num_future, 2]`.
    Called like `VectorNet` (`vectors, vec_mask, kind`)."""

    num_obs: int
    num_future: int
    widths: Sequence[int] = (10, 20, 40, 80)
    size: int = 64
    metres: float = 64.0
    frames: Sequence[int] = (0, 4, 8, 12, 16)
    coord_scale: float = 10.0

    def setup(self):
        self.resnet = ResNet(num_classes=2 * self.num_future, stage_sizes=(2, 2, 2, 2), widths=tuple(self.widths),
                             norm="group")

    def __call__(self, vectors, vec_mask, kind, node_mask=None):
        del kind, node_mask
        return self.network(self.render(vectors, vec_mask))

    def render(self, vectors, vec_mask):
        return rasterize(vectors, vec_mask, num_obs=self.num_obs, size=self.size, metres=self.metres,
                         frames=tuple(self.frames))

    def network(self, image):
        """The ResNet on a rendered image (what the MAC count of Table 4 covers)."""
        return self.resnet(image).reshape(image.shape[0], self.num_future, 2) * self.coord_scale
