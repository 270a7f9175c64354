"""Projection of LiDAR boxes into the camera and the crops the classifier sees.

A LiDAR-frame point X projects with M = P2 R0_rect Tr_velo_to_cam (`[3, 4]`, R0 and Tr padded to
4x4): [u', v', w]^T = M [X; 1], pixel (u, v) = (u'/w, v'/w), depth w > 0 (the KITTI chain).
A box projects to the min/max of its corners (8 for a "cube", 2 |hull| for a "polygon"),
clipped to the image; it is dropped when a corner lies behind the camera (depth_clustering) or
when the clipped-away fraction of its area is at least the truncation threshold.
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


def _clip(lo: jax.Array, hi: jax.Array, in_front: jax.Array, width: int, height: int,
          truncation_threshold: float):
    raw = jnp.concatenate([lo, hi], -1)
    clipped = jnp.stack([jnp.clip(raw[:, 0], 0, width - 1), jnp.clip(raw[:, 1], 0, height - 1),
                         jnp.clip(raw[:, 2], 0, width - 1), jnp.clip(raw[:, 3], 0, height - 1)], -1)
    area = jnp.maximum((raw[:, 2] - raw[:, 0]) * (raw[:, 3] - raw[:, 1]), 1e-9)
    inside = jnp.maximum(clipped[:, 2] - clipped[:, 0], 0) * jnp.maximum(clipped[:, 3] - clipped[:, 1], 0)
    trunc = 1.0 - inside / area
    ok = in_front & (inside > 0) & ((trunc < truncation_threshold) | (truncation_threshold >= 1.0))
    return clipped, trunc, ok


def project_boxes(corners: jax.Array, m: jax.Array, width: int, height: int, truncation_threshold: float = 1.0):
    """Image boxes of 3-D boxes.

    Args:
      corners: `[K, C, 3]` box corners (LiDAR frame; C = 8 for a cube).
      m: `[3, 4]` LiDAR-to-image matrix.
    Returns:
      `(boxes [K, 4] = left, top, right, bottom clipped to [0, w-1] x [0, h-1],
      truncated [K] = clipped-away fraction of the unclipped box area, ok [K] bool)`.
    """
    uv, depth = project_points(corners, m)
    return _clip(uv.min(1), uv.max(1), (depth > 0).all(1), width, height, truncation_threshold)


def project_polygons(points: jax.Array, slot: jax.Array, z_lo: jax.Array, z_hi: jax.Array, m: jax.Array,
                     width: int, height: int, truncation_threshold: float = 1.0):
    """Image boxes of "polygon" boxes: each cluster's 2-D convex hull of (x, y), extruded from
    its z_min to its z_max (depth_clustering's default box).

    The image box of the extruded hull is the min/max over the projections of its 2 |hull|
    corners. Every point of the cluster lies in the hull, and a perspective projection maps a
    convex set in front of the camera into the convex hull of its corners' projections, so
    the min/max over all of the cluster's points lifted to z_min and z_max is the same box,
    without computing the hull (static shapes, one pass over the points).

    Args:
      points: `[P, 3]` LiDAR-frame points; slot: `[P]` cluster slot in [0, K) or -1.
      z_lo / z_hi: `[K]` each cluster's lowest and highest z.
      m: `[3, 4]` LiDAR-to-image matrix.
    Returns:
      as `project_boxes`; a cluster is dropped when any of its lifted points is behind the camera.
    """
    points, slot = jnp.asarray(points), jnp.asarray(slot)
    k = z_lo.shape[0]
    sid = jnp.where(slot >= 0, slot, k)
    s = jnp.clip(slot, 0, k - 1)
    lifted = jnp.concatenate([points.at[:, 2].set(z_lo[s]), points.at[:, 2].set(z_hi[s])])
    uv, depth = project_points(lifted, m)
    sid2 = jnp.concatenate([sid, sid])
    lo = jax.ops.segment_min(uv, sid2, k + 1)[:k]
    hi = jax.ops.segment_max(uv, sid2, k + 1)[:k]
    behind = jax.ops.segment_max((depth <= 0).astype(jnp.int32), sid2, k + 1)[:k] > 0
    return _clip(lo, hi, ~behind, width, height, truncation_threshold)


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
