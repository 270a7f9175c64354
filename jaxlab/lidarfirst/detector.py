"""The full-frame baseline: a small CenterNet-style Flax detector over the whole camera image.

The camera-only pipeline the paper compares with runs one DNN over every pixel of every frame.
Here that DNN is a CenterNet-style network (objects as points): a strided conv backbone gives a
`[h/s, w/s]` grid (s = output stride); three heads predict per cell a class heatmap (sigmoid,
3 classes: vehicle, pedestrian, cyclist), the box size (w, h in grid cells) and the sub-cell
offset of the centre. Training targets: an elliptical Gaussian per box around its centre cell
(sigma = box side / 6 in grid cells, at least 0.5: *reconstruction*, CenterNet's IoU-derived radius
is replaced by this TTFNet-like rule), the penalty-reduced focal loss (alpha 2, beta 4) on the
heatmap and L1 on size and offset at the centre cells. Decoding: 3x3 max-pool peaks, top-K.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxlab.lidarfirst.configs import DetectorConfig
from jaxlab.nn.conv import Conv

NUM_CLASSES = 3  # vehicle, pedestrian, cyclist (class index c + 1 in the pipeline's numbering)


class CenterNet(nn.Module):
    """`[B, H, W, 3]` images in [0, 1] -> `(heatmap logits [B, h, w, 3], size [B, h, w, 2], offset [B, h, w, 2])`.

    Backbone: per stage a 3x3 conv with the stage's stride then a 3x3 conv (GroupNorm, ReLU);
    heads: 3x3 conv (head width, ReLU) then 1x1 conv.
    """

    stages: tuple[int, ...] = (16, 32, 48)
    strides: tuple[int, ...] = (2, 2, 1)
    head: int = 32

    @nn.compact
    def __call__(self, x):
        for width, stride in zip(self.stages, self.strides):
            for s in (stride, 1):
                x = Conv(width, (3, 3), strides=(s, s), padding="SAME", use_bias=False)(x)
                x = nn.relu(nn.GroupNorm(num_groups=min(8, width))(x))

        def head(n, bias=0.0):
            y = nn.relu(Conv(self.head, (3, 3), padding="SAME")(x))
            return Conv(n, (1, 1), bias_init=nn.initializers.constant(bias))(y)

        return head(NUM_CLASSES, -2.19), head(2), head(2)  # -2.19: initial heatmap prior 0.1


def make_detector(cfg: DetectorConfig) -> CenterNet:
    if len(cfg.strides) != len(cfg.stages):
        raise ValueError(f"detector.strides {cfg.strides} and detector.stages {cfg.stages} differ in length")
    return CenterNet(tuple(cfg.stages), tuple(cfg.strides), cfg.head)


def output_stride(cfg: DetectorConfig) -> int:
    return int(np.prod(cfg.strides))


def grid_shape(height: int, width: int, stride: int) -> tuple[int, int]:
    """Output grid of SAME-padded strided convs: ceil(H / s), ceil(W / s)."""
    return -(-height // stride), -(-width // stride)


def encode(boxes: np.ndarray, classes: np.ndarray, grid: tuple[int, int], stride: int, max_objects: int):
    """Targets of one image.

    Args:
      boxes: `[G, 4]` left, top, right, bottom (px); classes: `[G]` in 1..3.
    Returns:
      dict of `heatmap [h, w, 3]`, `size [K, 2]`, `offset [K, 2]`, `index [K]` (flat cell),
      `mask [K]` (K = max_objects; extra boxes are dropped).
    """
    gh, gw = grid
    heat = np.zeros((gh, gw, NUM_CLASSES), np.float32)
    size = np.zeros((max_objects, 2), np.float32)
    offset = np.zeros((max_objects, 2), np.float32)
    index = np.zeros(max_objects, np.int32)
    mask = np.zeros(max_objects, np.float32)
    ys, xs = np.mgrid[0:gh, 0:gw]
    for k, (b, c) in enumerate(zip(np.asarray(boxes, np.float64)[:max_objects], classes[:max_objects])):
        cx, cy = (b[0] + b[2]) / 2 / stride, (b[1] + b[3]) / 2 / stride
        w, h = (b[2] - b[0]) / stride, (b[3] - b[1]) / stride
        ix, iy = min(int(cx), gw - 1), min(int(cy), gh - 1)
        sx, sy = max(w / 6, 0.5), max(h / 6, 0.5)
        g = np.exp(-((xs - ix) ** 2) / (2 * sx * sx) - ((ys - iy) ** 2) / (2 * sy * sy))
        heat[..., c - 1] = np.maximum(heat[..., c - 1], g)
        size[k], offset[k], index[k], mask[k] = (w, h), (cx - ix, cy - iy), iy * gw + ix, 1.0
    return {"heatmap": heat, "size": size, "offset": offset, "index": index, "mask": mask}


def loss(outputs, targets, size_weight: float = 0.1):
    """Focal heatmap loss + size_weight * L1(size) + L1(offset), each normalised by the object count."""
    logits, size, offset = outputs
    gt = targets["heatmap"]
    p = jax.nn.sigmoid(logits)
    logp, log1mp = jax.nn.log_sigmoid(logits), jax.nn.log_sigmoid(-logits)
    pos = (gt >= 1.0 - 1e-6).astype(jnp.float32)
    focal = -(pos * (1 - p) ** 2 * logp + (1 - pos) * (1 - gt) ** 4 * p ** 2 * log1mp)
    n = jnp.maximum(targets["mask"].sum(), 1.0)
    b = logits.shape[0]

    def gather(x):
        return jnp.take_along_axis(x.reshape(b, -1, 2), targets["index"][..., None], axis=1)

    m = targets["mask"][..., None]
    l_size = jnp.sum(jnp.abs(gather(size) - targets["size"]) * m) / n
    l_off = jnp.sum(jnp.abs(gather(offset) - targets["offset"]) * m) / n
    l_heat = focal.sum() / n
    return l_heat + size_weight * l_size + l_off, {"heatmap_loss": l_heat, "size_loss": l_size, "offset_loss": l_off}


def decode(outputs, stride: int, top_k: int):
    """Boxes `[B, K, 4]` (px), scores `[B, K]` and classes `[B, K]` (1..3) of the K best heatmap peaks."""
    logits, size, offset = outputs
    heat = jax.nn.sigmoid(logits)
    peak = nn.max_pool(heat, (3, 3), strides=(1, 1), padding="SAME")
    heat = jnp.where(heat == peak, heat, 0.0)
    b, gh, gw, c = heat.shape
    scores, idx = jax.lax.top_k(heat.reshape(b, -1), top_k)
    cls, cell = idx % c, idx // c
    iy, ix = cell // gw, cell % gw
    sz = jnp.take_along_axis(size.reshape(b, -1, 2), cell[..., None], 1)
    off = jnp.take_along_axis(offset.reshape(b, -1, 2), cell[..., None], 1)
    cx, cy = ix + off[..., 0], iy + off[..., 1]
    boxes = jnp.stack([cx - sz[..., 0] / 2, cy - sz[..., 1] / 2, cx + sz[..., 0] / 2, cy + sz[..., 1] / 2], -1)
    return boxes * stride, scores, cls + 1


def training_set(cfg, stream: int, num_frames: int) -> tuple[np.ndarray, dict]:
    """Images `[2N, H, W, 3]` float32 in [0, 1] and stacked targets of N simulated frames and their
    horizontal mirror images (boxes mirrored), from the same scene stream as the crop classifier."""
    from jaxlab.lidarfirst import pipeline, simulator

    d = cfg.detector
    stride = output_stride(d)
    images, targets = [], []
    for i in range(num_frames):
        inp = pipeline.from_frame(str(i), simulator.simulate_frame(pipeline.stream_seed(cfg.seed, stream, i),
                                                                   cfg.scene))
        h, w = inp.image.shape[:2]
        grid = grid_shape(h, w, stride)
        flipped = inp.gt_boxes.copy()
        flipped[:, [0, 2]] = (w - 1) - inp.gt_boxes[:, [2, 0]]
        for img, boxes in ((inp.image, inp.gt_boxes), (inp.image[:, ::-1], flipped)):
            images.append(img.astype(np.float32) / 255.0)
            targets.append(encode(boxes, inp.gt_classes, grid, stride, d.max_objects))
    return np.stack(images), {k: np.stack([t[k] for t in targets]) for k in targets[0]}
