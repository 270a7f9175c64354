"""Range-image segmentation in JAX: projection, angle-based ground removal, clustering, boxes.

All functions work on a range image `[H, W]` (ranges in m, <= 0 invalid) with row inclinations
`theta [H]` (row 0 the highest beam) and column azimuths `phi [W]`; every shape is static, so
`segment` compiles once per image size.

* Ground (Bogoslavskyi & Stachniss; depth_clustering `depth_ground_remover`): optionally the
  depth repair of invalid pixels from their column neighbours (`repair_depth`), then for each pixel
  the inclination of the segment to the row below, alpha_{r,c} = atan2(|z_r - z_{r+1}|,
  |x_r - x_{r+1}|) with x = d cos(theta), z = d sin(theta); Savitzky-Golay smoothing along each
  column; ground = the 4-connected components, under |alpha_p - alpha_q| < ground_angle, that
  contain the lowest valid pixel of a column whose angle is below ground_angle.
* Clusters (depth_clustering `linear_image_labeler` with `angles_precomputed`): 4-neighbours
  p, q of the non-ground points join when beta = atan2(d2 sin a, d1 - d2 cos a) > cluster_angle,
  d1 = max(d_p, d_q), d2 = min, a the angular step between their beams (rows) or columns.
* Connected components by min-label propagation with hooking and pointer jumping to a fixed
  point (`lax.while_loop`, `propagate_labels`) in place of depth_clustering's sequential BFS.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

# Savitzky-Golay smoothing coefficients (quadratic fit, centre value).
SAVGOL = {1: np.array([1.0]), 5: np.array([-3.0, 12.0, 17.0, 12.0, -3.0]) / 35.0,
          7: np.array([-2.0, 3.0, 6.0, 7.0, 6.0, 3.0, -2.0]) / 21.0}


def points_to_range_image(points: jax.Array, mask: jax.Array, theta: jax.Array, num_columns: int) -> jax.Array:
    """Range image `[H, W]` (-1 where empty) of points `[N, 3]` (`mask [N]` marks real rows).

    Row = the beam with the nearest inclination asin(z / r); column = floor((pi - phi) W / 2 pi)
    with phi = atan2(y, x) (the simulator's and Waymo's azimuth order); a pixel hit by several
    points keeps the nearest.
    """
    r = jnp.linalg.norm(points, axis=-1)
    incl = jnp.arcsin(jnp.clip(points[:, 2] / jnp.maximum(r, 1e-9), -1.0, 1.0))
    row = jnp.argmin(jnp.abs(incl[:, None] - theta[None, :]), axis=1)
    phi = jnp.arctan2(points[:, 1], points[:, 0])
    col = jnp.floor((jnp.pi - phi) * num_columns / (2 * jnp.pi)).astype(jnp.int32) % num_columns
    idx = jnp.where(mask & (r > 0), row * num_columns + col, theta.shape[0] * num_columns)
    flat = jnp.full(theta.shape[0] * num_columns + 1, jnp.inf).at[idx].min(r)[:-1]
    return jnp.where(jnp.isinf(flat), -1.0, flat).reshape(theta.shape[0], num_columns)


def range_image_to_points(rng: jax.Array, theta: jax.Array, phi: jax.Array) -> jax.Array:
    """`[H, W, 3]` points (d cos(theta) cos(phi), d cos(theta) sin(phi), d sin(theta))."""
    ct = jnp.cos(theta)[:, None]
    return jnp.stack([rng * ct * jnp.cos(phi)[None], rng * ct * jnp.sin(phi)[None],
                      rng * jnp.sin(theta)[:, None]], -1)


def propagate_labels(active: jax.Array, join_down: jax.Array, join_right: jax.Array, wrap: bool = False,
                     jumps: int = 1):
    """Connected components of a grid graph: min-label propagation with hooking and pointer jumping.

    Every active pixel holds a parent pointer (initially itself). Each round, a pixel reads its
    label (its parent's parent), takes the smallest label among itself and its joined
    4-neighbours, and hooks: the root of its old label is pointed at that smallest label
    (a scatter-min), so two regions that meet merge at once rather than one pixel per round;
    `jumps` rounds of pointer jumping then shorten the chains. Pointers only decrease and
    always point into the same component, so at the fixed point every pixel points at the
    smallest flat index of its component. Because regions that meet merge at once, the rounds
    stay few where a plain stencil propagation needs up to a component's diameter (7 against
    up to 1,752 on a 64 x 2048 ground mask).

    Args:
      active: `[H, W]` bool, the vertices.
      join_down: `[H-1, W]` bool, an edge between (r, c) and (r+1, c).
      join_right: `[H, W]` bool, an edge between (r, c) and (r, c+1); the last column joins
        column 0 only when `wrap`.
      jumps: pointer-jumping steps per round (1 was the fastest on a 64 x 2048 image: 7 rounds;
        0 needs 12, 2 saves one round but costs more per round).
    Returns:
      `(labels [H, W] int32, rounds)`: each active pixel's label is the smallest flat index
      in its component; inactive pixels are -1. Edges touching an inactive pixel are ignored.
    """
    h, w = active.shape
    n = h * w
    down = join_down & active[:-1] & active[1:]
    right = join_right & active & jnp.roll(active, -1, axis=1)
    if not wrap:
        right = right.at[:, -1].set(False)
    left = jnp.roll(right, 1, axis=1)  # edge (r, c-1) - (r, c), seen from (r, c)
    sink = jnp.array([n], jnp.int32)  # parent n: an inactive pixel (the extra last slot)
    init = jnp.where(active.reshape(-1), jnp.arange(n, dtype=jnp.int32), n)

    def round_(par):
        ext = jnp.concatenate([par, sink])
        lab = ext[par]  # one jump: the label each pixel reads
        grid = lab.reshape(h, w)
        edge = jnp.full((1, w), n, jnp.int32)
        from_below = jnp.concatenate([jnp.where(down, grid[1:], n), edge])
        from_above = jnp.concatenate([edge, jnp.where(down, grid[:-1], n)])
        from_right = jnp.where(right, jnp.roll(grid, -1, axis=1), n)
        from_left = jnp.where(left, jnp.roll(grid, 1, axis=1), n)
        low = jnp.minimum(jnp.minimum(grid, jnp.minimum(from_below, from_above)),
                          jnp.minimum(from_right, from_left)).reshape(-1)
        ext = jnp.concatenate([jnp.minimum(par, low), sink]).at[lab].min(low)  # hook my label's root
        for _ in range(jumps):
            ext = ext[ext]
        return ext[:n]

    def body(carry):
        par, it, _ = carry
        new = round_(par)
        return new, it + 1, jnp.any(new != par)

    par, rounds, _ = jax.lax.while_loop(lambda c: c[2], body, (init, jnp.int32(0), jnp.bool_(True)))
    return jnp.where(active, par.reshape(h, w), -1), rounds


def ground_angles(rng: jax.Array, theta: jax.Array, smooth_window: int = 5) -> jax.Array:
    """Smoothed inclination angles alpha `[H, W]` (rad) of each pixel to the row below it;
    pi/2 where either pixel is invalid. The last row takes the angle of the row above."""
    valid = rng > 0
    x = rng * jnp.cos(theta)[:, None]
    z = rng * jnp.sin(theta)[:, None]
    a = jnp.arctan2(jnp.abs(z[:-1] - z[1:]), jnp.abs(x[:-1] - x[1:]))
    ok = valid[:-1] & valid[1:]
    a = jnp.where(ok, a, jnp.pi / 2)
    a = jnp.concatenate([a, a[-1:]], 0)
    ok = jnp.concatenate([ok, ok[-1:]], 0)
    k = SAVGOL[smooth_window]
    if len(k) > 1:  # invalid neighbours take the centre's value (validity-aware: reconstruction)
        p = len(k) // 2
        pa = jnp.pad(a, ((p, p), (0, 0)), mode="edge")
        pok = jnp.pad(ok, ((p, p), (0, 0)), constant_values=False)
        a = sum(float(k[i]) * jnp.where(pok[i:i + a.shape[0]], pa[i:i + a.shape[0]], a) for i in range(len(k)))
    return jnp.where(ok, a, jnp.pi / 2)


def repair_depth(rng: jax.Array, step: int = 5, threshold: float = 1.0) -> jax.Array:
    """depth_clustering's `RepairDepth`: an invalid pixel (range <= 0) takes the mean of every pair
    (r - i, r + j), 1 <= i, j < step, of valid pixels of its column whose ranges differ by less
    than `threshold` (m); it stays invalid without such a pair. Rows are repaired top to bottom in
    place, so a repaired pixel counts as valid for the rows below it (as the C++ loop)."""
    h, w = rng.shape
    k = step - 1
    none = jnp.full((k, w), -1.0, rng.dtype)
    pad = jnp.concatenate([rng, none])
    below = jnp.stack([pad[j:j + h] for j in range(1, k + 1)], 1)  # [H, k, W]: rows r+1 ... r+k

    def row(above, xs):  # above: the k rows over row r, already repaired (oldest first)
        cur, bel = xs
        a, b = above[:, None], bel[None, :]  # [k, 1, W], [1, k, W]
        ok = (a > 0.001) & (b > 0.001) & (jnp.abs(a - b) < threshold)
        total = jnp.sum(jnp.where(ok, a + b, 0.0), (0, 1))
        count = 2 * jnp.sum(ok, (0, 1))
        new = jnp.where((cur < 0.001) & (count > 0), total / jnp.maximum(count, 1), cur)
        return jnp.concatenate([above[1:], new[None]]), new

    _, out = jax.lax.scan(row, none, (rng, below))
    return out


def remove_ground(rng: jax.Array, theta: jax.Array, *, angle: float, smooth_window: int = 5,
                  dilation: bool = False, wrap: bool = False, repair: bool = False):
    """Ground mask `[H, W]` bool by the angle criterion (module docstring), and the iteration count.

    With `repair`, the angles are computed on `repair_depth(rng)` (depth_clustering's step (a));
    the ground is still a subset of the valid pixels of `rng`."""
    h, w = rng.shape
    valid = rng > 0
    alpha = ground_angles(repair_depth(rng) if repair else rng, theta, smooth_window)
    join_down = jnp.abs(alpha[:-1] - alpha[1:]) < angle
    join_right = jnp.abs(alpha - jnp.roll(alpha, -1, axis=1)) < angle
    lab, iters = propagate_labels(valid, join_down, join_right, wrap)
    rows = jnp.arange(h)[:, None]
    lowest = jnp.max(jnp.where(valid, rows, -1), axis=0)  # [W]
    seed = (rows == lowest[None]) & valid & (alpha < angle)
    flat = lab.reshape(-1)
    seeded = jnp.zeros(h * w + 1, bool).at[jnp.where(seed.reshape(-1), flat, h * w)].set(True)[:-1]
    ground = valid & seeded[jnp.clip(flat, 0, h * w - 1)].reshape(h, w)
    if dilation:
        g = jnp.pad(ground, 1)
        ground = valid & jax.lax.reduce_window(g, False, jnp.logical_or, (3, 3), (1, 1), "VALID")
    return ground, iters


def cluster_edges(rng: jax.Array, theta: jax.Array, num_columns: int, angle: float):
    """The depth_clustering joins: `join_down [H-1, W]`, `join_right [H, W]` (beta > angle).

    beta = atan2(y, x) with y = d2 sin(a) > 0 lies in (0, pi), as does `angle`, so beta > angle
    is the sign test y cos(angle) - x sin(angle) > 0 (no arctangent per pixel pair). Pairs with
    an invalid range are decided arbitrarily; `propagate_labels` ignores them.
    """
    c, s = float(np.cos(angle)), float(np.sin(angle))

    def joins(d_a, d_b, step):
        d1, d2 = jnp.maximum(d_a, d_b), jnp.minimum(d_a, d_b)
        return d2 * jnp.sin(step) * c - (d1 - d2 * jnp.cos(step)) * s > 0

    step_v = jnp.abs(theta[:-1] - theta[1:])[:, None]
    down = joins(rng[:-1], rng[1:], step_v)
    right = joins(rng, jnp.roll(rng, -1, axis=1), 2 * np.pi / num_columns)
    return down, right


def largest(values: jax.Array, k: int, max_count: int) -> tuple[jax.Array, jax.Array]:
    """`lax.top_k(values, k)` (ties to the lower index) for a 1-D array in which at most
    `max_count` entries are >= 0 and the rest are negative: the same values, and the same
    indices where a value is >= 0 (slots past the non-negative entries hold -1).

    The non-negative entries are compacted first and only they are sorted (stable, by value
    descending): on CPU, XLA's TopK over the ~10^5 pixels of a range image costs about 7x the
    compaction and sort.
    """
    n = values.shape[0]
    m = min(max_count, n)
    cand = jnp.nonzero(values >= 0, size=m, fill_value=n)[0]
    vals = jnp.where(cand < n, values[jnp.minimum(cand, n - 1)], -1)
    if m < k:
        vals = jnp.concatenate([vals, jnp.full(k - m, -1, vals.dtype)])
        cand = jnp.concatenate([cand, jnp.full(k - m, n, cand.dtype)])
    neg, idx = jax.lax.sort((-vals, cand), num_keys=1, is_stable=True)
    return -neg[:k], jnp.minimum(idx[:k], n - 1)


@functools.partial(jax.jit, static_argnames=("num_columns", "ground_angle", "smooth_window", "dilation",
                                             "cluster_angle", "min_size", "max_size", "max_clusters", "wrap",
                                             "repair"))
def segment(rng: jax.Array, theta: jax.Array, phi: jax.Array, *, num_columns: int, ground_angle: float,
            smooth_window: int, dilation: bool, cluster_angle: float, min_size: int, max_size: int,
            max_clusters: int, wrap: bool, repair: bool = False) -> dict:
    """Ground removal, clustering and axis-aligned ("cube") boxes of one range image.

    Args:
      rng: `[H, W]` ranges (<= 0 invalid); theta `[H]`, phi `[W]` (rad); num_columns: columns of a
        full turn (the horizontal angular step is 2 pi / num_columns).
      max_clusters: K, the static budget: the K largest clusters of min_size...max_size points.
      repair: ground angles on the depth-repaired image (`repair_depth`).
    Returns:
      dict of `ground [H, W]`, `cluster [H, W]` (slot in [0, K) or -1), `box_min`/`box_max`
      `[K, 3]`, `count [K]`, `valid [K]`, `ground_iters`, `cluster_iters`.
    """
    h, w = rng.shape
    ground, g_it = remove_ground(rng, theta, angle=ground_angle, smooth_window=smooth_window,
                                 dilation=dilation, wrap=wrap, repair=repair)
    active = (rng > 0) & ~ground
    down, right = cluster_edges(rng, theta, num_columns, cluster_angle)
    lab, c_it = propagate_labels(active, down, right, wrap)
    flat = lab.reshape(-1)
    seg = jnp.where(flat >= 0, flat, h * w)
    size = jax.ops.segment_sum(jnp.ones_like(flat), seg, h * w + 1)[:-1]
    is_root = flat == jnp.arange(h * w)
    keep = is_root & (size >= min_size) & (size <= max_size)
    k = min(max_clusters, h * w)
    top, roots = largest(jnp.where(keep, size, -1), k, max_count=h * w // min_size + 1)
    slot_valid = top > 0
    slot_of_root = jnp.full(h * w + 1, -1, jnp.int32).at[jnp.where(slot_valid, roots, h * w)].set(
        jnp.arange(k, dtype=jnp.int32))[:-1]
    cluster = jnp.where(flat >= 0, slot_of_root[jnp.clip(flat, 0, h * w - 1)], -1)
    pts = range_image_to_points(rng, theta, phi).reshape(-1, 3)
    sid = jnp.where(cluster >= 0, cluster, k)
    box_min = jax.ops.segment_min(pts, sid, k + 1)[:-1]
    box_max = jax.ops.segment_max(pts, sid, k + 1)[:-1]
    count = jax.ops.segment_sum(jnp.ones(h * w, jnp.int32), sid, k + 1)[:-1]
    box_min = jnp.where(slot_valid[:, None], box_min, 0.0)
    box_max = jnp.where(slot_valid[:, None], box_max, 0.0)
    return {"ground": ground, "cluster": cluster.reshape(h, w), "box_min": box_min, "box_max": box_max,
            "count": count, "valid": slot_valid, "ground_iters": g_it, "cluster_iters": c_it}


def cube_corners(box_min: jax.Array, box_max: jax.Array) -> jax.Array:
    """The 8 corners `[K, 8, 3]` of axis-aligned boxes."""
    sel = jnp.array([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)])
    both = jnp.stack([box_min, box_max], 1)  # [K, 2, 3]
    return jnp.stack([both[:, sel[:, d], d] for d in range(3)], -1)


def fov_columns(phi: np.ndarray, half_fov: float) -> tuple[int, int]:
    """`[c0, c1)`, the contiguous columns whose azimuth lies within +-half_fov (+ one column)."""
    inside = np.nonzero(np.abs(phi) <= half_fov + abs(phi[1] - phi[0]))[0]
    return int(inside.min()), int(inside.max()) + 1
