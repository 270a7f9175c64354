"""Procedural images in which resolution carries information.

Each class is a (shape, texture) pair: `num_shapes` coarse silhouettes (disk, square,
ring, triangle, cross, ...) filled with stripes of one of `num_textures` spatial
frequencies. The scene of example `i` is a pure function of `(seed, i)` and is defined
in continuous image coordinates, so the same example can be rendered at any resolution.
Rendering supersamples and box-filters each pixel, as a camera does: stripes finer than
about two pixels average out to flat grey, so the fine-texture classes are separable
only at high resolution while the shapes remain visible at low resolution. That makes
accuracy depend on the input resolution, which is what resolution-scaling searches
(ScaleNet) need to measure.
"""

from __future__ import annotations

import numpy as np

__all__ = ["make_images", "SHAPES", "class_factors"]

SHAPES = ("disk", "square", "ring", "triangle", "cross", "diamond", "bar", "corner")
# Stripe periods, as a fraction of the image side, from coarse to fine.
_PERIODS = (1 / 3, 1 / 20, 1 / 40, 1 / 9, 1 / 60)


def class_factors(num_classes: int, num_textures: int = 2) -> list[tuple[int, int]]:
    """`(shape, texture)` of each class: textures vary fastest."""
    num_shapes = -(-num_classes // num_textures)
    if num_shapes > len(SHAPES) or num_textures > len(_PERIODS):
        raise ValueError(
            f"num_classes={num_classes} with num_textures={num_textures} needs {num_shapes} shapes; "
            f"at most {len(SHAPES)} shapes and {len(_PERIODS)} textures are defined")
    return [(c // num_textures, c % num_textures) for c in range(num_classes)]


def _shape_mask(kind: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Inside-mask of a unit shape in local coordinates `u, v` (radius about 1)."""
    r = np.sqrt(u * u + v * v)
    name = SHAPES[kind]
    if name == "disk":
        return r <= 1.0
    if name == "square":
        return np.maximum(abs(u), abs(v)) <= 0.85
    if name == "ring":
        return (r <= 1.0) & (r >= 0.55)
    if name == "triangle":
        return (v <= 0.8) & (v >= -0.8 + 2 * abs(u) * 0.9 - 0.0) & (abs(u) <= 0.9)
    if name == "cross":
        return ((abs(u) <= 0.3) & (abs(v) <= 1.0)) | ((abs(v) <= 0.3) & (abs(u) <= 1.0))
    if name == "diamond":
        return abs(u) + abs(v) <= 1.0
    if name == "bar":
        return (abs(u) <= 1.0) & (abs(v) <= 0.4)
    if name == "corner":
        return ((abs(u) <= 0.9) & (v >= 0.5) & (v <= 0.9)) | ((u >= -0.9) & (u <= -0.5) & (abs(v) <= 0.9))
    raise ValueError(kind)


def make_images(
    num_examples: int,
    *,
    resolution: int,
    num_classes: int = 10,
    seed: int = 0,
    num_textures: int = 2,
    supersample: int = 4,
    noise: float = 0.05,
    start: int = 0,
    chunk: int = 256,
):
    """Renders `num_examples` labelled scenes at `resolution x resolution`.

    Args:
      num_examples: number of images.
      resolution: side of the square output in pixels.
      num_classes: number of (shape, texture) classes (at most 8 x num_textures).
      seed: the dataset's seed; example `start + i` depends only on `(seed, start + i)`.
      num_textures: stripe frequencies per shape; the finest ones need resolution.
      supersample: samples per pixel side used for box filtering.
      noise: std of additive pixel noise (drawn per example, per resolution).
      start: index of the first example (to render a slice of a larger set).

    Returns:
      `(images float32 [N, R, R, 3] in [0, 1], labels int32 [N])`.
    """
    if resolution < 4:
        raise ValueError(f"resolution must be at least 4, got {resolution}")
    factors = class_factors(num_classes, num_textures)
    periods = np.array(_PERIODS[:num_textures])
    periods = np.sort(periods)[::-1]  # texture 0 is the coarsest
    out = np.empty((num_examples, resolution, resolution, 3), np.float32)
    labels = np.empty((num_examples,), np.int32)
    s = resolution * supersample
    grid = (np.arange(s) + 0.5) / s  # continuous coordinates in [0, 1)
    yy, xx = np.meshgrid(grid, grid, indexing="ij")
    for lo in range(0, num_examples, chunk):
        hi = min(num_examples, lo + chunk)
        for j in range(lo, hi):
            idx = start + j
            rng = np.random.default_rng([seed, idx])
            label = int(rng.integers(num_classes))
            shape, texture = factors[label]
            cx, cy = rng.uniform(0.3, 0.7, size=2)
            radius = rng.uniform(0.22, 0.32)
            angle = rng.uniform(0, np.pi)
            stripe_angle = rng.uniform(0, np.pi)
            fg = rng.uniform(0.55, 1.0, size=3)
            bg = rng.uniform(0.0, 0.35, size=3)
            phase = rng.uniform(0, 2 * np.pi)
            du, dv = (xx - cx) / radius, (yy - cy) / radius
            c, s_ = np.cos(angle), np.sin(angle)
            u, v = c * du + s_ * dv, -s_ * du + c * dv
            inside = _shape_mask(shape, u, v).astype(np.float32)
            t = np.cos(stripe_angle) * xx + np.sin(stripe_angle) * yy
            stripes = 0.5 + 0.5 * np.sign(np.sin(2 * np.pi * t / periods[texture] + phase))
            shade = inside * (0.35 + 0.65 * stripes)
            img = bg[None, None, :] * (1 - inside[..., None]) + fg[None, None, :] * shade[..., None]
            img = img.reshape(resolution, supersample, resolution, supersample, 3).mean(axis=(1, 3))
            img += noise * rng.standard_normal(img.shape)
            out[j] = np.clip(img, 0.0, 1.0)
            labels[j] = label
    return out, labels
