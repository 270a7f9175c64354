"""Projection of LiDAR boxes into the camera and the crops the classifier sees.

A LiDAR-frame point X projects with M = P2 R0_rect Tr_velo_to_cam (`[3, 4]`, R0 and Tr padded to
4x4): [u', v', w]^T = M [X; 1], pixel (u, v) = (u'/w, v'/w), depth w > 0 (the KITTI chain).
A box projects to the min/max of its 8 corners, clipped to the image; it is dropped when a corner
lies behind the camera (depth_clustering) or when the clipped-away fraction of its area is at
least the truncation threshold.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def project_points(points: jax.Array, m: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Pixels `[..., 2]` and depths `[...]` of LiDAR-frame points `[..., 3]` under `m` `[3, 4]`."""
    h = points @ m[:, :3].T + m[:, 3]
    depth = h[..., 2]
    safe = jnp.where(jnp.abs(depth) < 1e-9, 1e-9, depth)
    return h[..., :2] / safe[..., None], depth


def project_boxes(corners: jax.Array, m: jax.Array, width: int, height: int, truncation_threshold: float = 1.0):
    """Image boxes of 3-D boxes.

    Args:
      corners: `[K, 8, 3]` box corners (LiDAR frame).
      m: `[3, 4]` LiDAR-to-image matrix.
    Returns:
      `(boxes [K, 4] = left, top, right, bottom clipped to [0, w-1] x [0, h-1],
      truncated [K] = clipped-away fraction of the unclipped box area, ok [K] bool)`.
    """
    uv, depth = project_points(corners, m)
    lo, hi = uv.min(1), uv.max(1)
    raw = jnp.concatenate([lo, hi], -1)
    clipped = jnp.stack([jnp.clip(raw[:, 0], 0, width - 1), jnp.clip(raw[:, 1], 0, height - 1),
                         jnp.clip(raw[:, 2], 0, width - 1), jnp.clip(raw[:, 3], 0, height - 1)], -1)
    area = jnp.maximum((raw[:, 2] - raw[:, 0]) * (raw[:, 3] - raw[:, 1]), 1e-9)
    inside = jnp.maximum(clipped[:, 2] - clipped[:, 0], 0) * jnp.maximum(clipped[:, 3] - clipped[:, 1], 0)
    trunc = 1.0 - inside / area
    in_front = (depth > 0).all(1)
    ok = in_front & (inside > 0) & ((trunc < truncation_threshold) | (truncation_threshold >= 1.0))
    return clipped, trunc, ok


def project_boxes_np(corners: np.ndarray, m: np.ndarray, width: int, height: int, truncation_threshold: float = 1.0):
    """NumPy twin of `project_boxes` (used by the writer of KITTI labels)."""
    boxes, trunc, ok = jax.jit(project_boxes, static_argnums=(2, 3, 4))(
        jnp.asarray(corners, jnp.float32), jnp.asarray(m, jnp.float32), width, height, float(truncation_threshold))
    return np.asarray(boxes, np.float64), np.asarray(trunc, np.float64), np.asarray(ok)


def crop_and_resize(image: np.ndarray, boxes: np.ndarray, size: int, margin: float = 0.0) -> np.ndarray:
    """Crops `[K, size, size, 3]` float32 in [0, 1], bilinear samples of `image` `[h, w, 3]` uint8
    inside `boxes` `[K, 4]` (left, top, right, bottom) enlarged by `margin` of their size per side."""
    h, w = image.shape[:2]
    img = image.astype(np.float32) / 255.0
    out = np.zeros((len(boxes), size, size, 3), np.float32)
    g = (np.arange(size) + 0.5) / size
    for k, (x0, y0, x1, y1) in enumerate(np.asarray(boxes, np.float64)):
        mx, my = margin * (x1 - x0), margin * (y1 - y0)
        xs = np.clip(x0 - mx + g * (x1 - x0 + 2 * mx), 0, w - 1)
        ys = np.clip(y0 - my + g * (y1 - y0 + 2 * my), 0, h - 1)
        xi, yi = np.floor(xs).astype(int), np.floor(ys).astype(int)
        xj, yj = np.minimum(xi + 1, w - 1), np.minimum(yi + 1, h - 1)
        fx, fy = (xs - xi)[None, :, None], (ys - yi)[:, None, None]
        top = img[yi][:, xi] * (1 - fx) + img[yi][:, xj] * fx
        bot = img[yj][:, xi] * (1 - fx) + img[yj][:, xj] * fx
        out[k] = top * (1 - fy) + bot * fy
    return out
