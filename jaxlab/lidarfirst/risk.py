"""Collision-risk ranking: the R^3 model (imminent / potential / none) and the crop order.

R^3 (risk-ranked-recall `collisionPossibility.py`; MECO 2021) in the ego frame: the ego
footprint is a 4 m x 2 m axis-aligned box at the origin moving with the ego velocity; an object is
its oriented footprint (centre, l, w, yaw) moving with its own velocity. Both are extrapolated at
constant velocity every dt up to TTS = t_compute + |v_ego| / a_max. At the first step t where

  * the footprints overlap (separating-axis test)            -> IMMINENT,
  * else the centre distance < sqrt(l^2 + w^2) + margin + a_max t^2 -> POTENTIAL,

the class is returned (an earlier POTENTIAL pre-empts a later IMMINENT); no hit -> NONE.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

IMMINENT, POTENTIAL, NONE = 0, 1, 2
EGO_SIZE = (4.0, 2.0)


def _corners2d(center, size, yaw):
    """`[..., 4, 2]` footprint corners."""
    sx = jnp.array([-1.0, 1.0, 1.0, -1.0]) * size[..., :1] / 2
    sy = jnp.array([-1.0, -1.0, 1.0, 1.0]) * size[..., 1:2] / 2
    c, s = jnp.cos(yaw)[..., None], jnp.sin(yaw)[..., None]
    return jnp.stack([c * sx - s * sy, s * sx + c * sy], -1) + center[..., None, :]


def rectangles_overlap(center_a, size_a, yaw_a, center_b, size_b, yaw_b) -> jax.Array:
    """Whether oriented rectangles overlap (separating-axis theorem); broadcasts over `[...]`."""
    ca, cb = _corners2d(center_a, size_a, yaw_a), _corners2d(center_b, size_b, yaw_b)
    def normals(yaw):
        return [jnp.stack([jnp.cos(yaw), jnp.sin(yaw)], -1), jnp.stack([-jnp.sin(yaw), jnp.cos(yaw)], -1)]

    axes = jnp.stack(normals(yaw_a) + normals(yaw_b), -2)  # [..., 4, 2]
    pa = jnp.einsum("...kd,...ad->...ak", ca, axes)
    pb = jnp.einsum("...kd,...ad->...ak", cb, axes)
    separated = (pa.max(-1) < pb.min(-1)) | (pb.max(-1) < pa.min(-1))
    return ~separated.any(-1)


def r3(center, size, yaw, velocity, ego_velocity, *, dt: float = 0.1, t_compute: float = 0.1, a_max: float = 7.5,
       margin: float = 2.2, max_steps: int = 64):
    """R^3 classes `[K]` (IMMINENT, POTENTIAL, NONE) and the time of the first hit `[K]` (inf if none).

    Args: `center [K, 2]`, `size [K, 2]` (l, w), `yaw [K]`, `velocity [K, 2]`, `ego_velocity [2]`
    (m, m/s, ego frame); `max_steps` bounds the static number of steps (TTS is clipped to it).
    """
    tts = t_compute + jnp.linalg.norm(ego_velocity) / a_max
    t = jnp.arange(max_steps) * dt  # [T]
    live = t <= tts + 1e-9
    obj = center[:, None] + velocity[:, None] * t[None, :, None]  # [K, T, 2]
    ego = ego_velocity[None, None] * t[None, :, None]  # [1, T, 2]
    ego_size = jnp.array(EGO_SIZE)
    overlap = rectangles_overlap(obj, size[:, None], yaw[:, None] + 0 * t, ego + 0 * obj, ego_size + 0 * obj,
                                 jnp.zeros_like(obj[..., 0]))
    d_crit = jnp.linalg.norm(size, axis=-1)[:, None] + margin + a_max * t[None] ** 2
    near = jnp.linalg.norm(obj - ego, axis=-1) < d_crit
    hit = (overlap | near) & live[None]
    first = jnp.argmax(hit, axis=1)
    any_hit = hit.any(1)
    cls = jnp.where(any_hit, jnp.where(jnp.take_along_axis(overlap, first[:, None], 1)[:, 0], IMMINENT, POTENTIAL),
                    NONE)
    return cls, jnp.where(any_hit, t[first], jnp.inf)


def order(risk_class, distance, valid, priority: str = "r3"):
    """Indices `[K]` of the valid boxes first, by (R^3 class, distance) or by distance alone."""
    import numpy as np

    risk_class, distance, valid = (np.asarray(x) for x in (risk_class, distance, valid))
    key0 = risk_class if priority == "r3" else np.zeros_like(risk_class)
    idx = np.lexsort((distance, key0, ~valid))
    return idx[valid[idx]]
