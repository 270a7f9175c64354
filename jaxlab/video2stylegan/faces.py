"""Procedural faces: a parametric head mesh, a pinhole camera and a soft Lambertian rasteriser.

A stand-in for a 3DMM and face data (nothing real is available offline; see the spec §3):

    canonical mesh:  icosphere (unit sphere), the face looking towards −z
    identity (6):    head width/height/depth, eye spacing, nose length, skin tone       in [−1, 1]
    expression (4):  jaw open, smile, blink, brow raise                                 in [0, 1]
    pose (3):        yaw, pitch, roll (degrees); X_cam = Rz(roll) Ry(yaw) Rx(pitch) X + (0, 0, distance)
    camera:          u = f·x/z + R/2,  v = R/2 − f·y/z  (pixels, v down; f = focal·R)
    texture:         evaluated per pixel at the interpolated canonical position (eyes, brows, mouth, hair)
    shading:         albedo · (ambient + diffuse·max(0, n·l)); soft coverage σ(d/softness) of each
                     front-facing triangle, SoftRas depth weights exp(z̃/γ),
                     silhouette alpha 1 − Π(1 − coverage) over the background

Landmarks are K canonical points on the sphere deformed by the same function as the mesh
vertices and projected by the same camera: they are exact. Everything is JAX, jitted and vmapped.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["ID_DIM", "EXPR_DIM", "POSE_DIM", "LANDMARK_NAMES", "icosphere", "Mesh", "make_mesh",
           "deform", "rotation", "project", "render", "render_batch", "sample_params", "video_params",
           "BACKGROUND"]

ID_DIM, EXPR_DIM, POSE_DIM = 6, 4, 3
BACKGROUND = np.array([0.25, 0.3, 0.4], np.float32)
LIGHT = np.array([-0.4, 0.5, -0.77], np.float32)  # towards the light, camera frame (upper left, front)
LANDMARK_NAMES = ("eye_r", "eye_l", "eye_r_outer", "eye_l_outer", "brow_r", "brow_l", "nose_tip",
                  "mouth_r", "mouth_l", "lip_upper", "lip_lower", "chin")
_LMK_XY = np.array([[-0.16, 0.2], [0.16, 0.2], [-0.3, 0.2], [0.3, 0.2], [-0.18, 0.38], [0.18, 0.38],
                    [0.0, 0.0], [-0.22, -0.42], [0.22, -0.42], [0.0, -0.36], [0.0, -0.5], [0.0, -0.8]], np.float32)


def icosphere(level: int) -> tuple[np.ndarray, np.ndarray]:
    """Unit icosphere: vertices `[V, 3]` (V = 10·4^level + 2), triangles `[F, 3]` (F = 20·4^level),
    counter-clockwise seen from outside."""
    t = (1 + 5 ** 0.5) / 2
    v = [[-1, t, 0], [1, t, 0], [-1, -t, 0], [1, -t, 0], [0, -1, t], [0, 1, t], [0, -1, -t], [0, 1, -t],
         [t, 0, -1], [t, 0, 1], [-t, 0, -1], [-t, 0, 1]]
    f = [[0, 11, 5], [0, 5, 1], [0, 1, 7], [0, 7, 10], [0, 10, 11], [1, 5, 9], [5, 11, 4], [11, 10, 2],
         [10, 7, 6], [7, 1, 8], [3, 9, 4], [3, 4, 2], [3, 2, 6], [3, 6, 8], [3, 8, 9], [4, 9, 5], [2, 4, 11],
         [6, 2, 10], [8, 6, 7], [9, 8, 1]]
    verts = [np.array(p, np.float64) / np.linalg.norm(p) for p in v]
    for _ in range(level):
        cache: dict = {}

        def mid(a, b):
            key = (min(a, b), max(a, b))
            if key not in cache:
                m = verts[a] + verts[b]
                verts.append(m / np.linalg.norm(m))
                cache[key] = len(verts) - 1
            return cache[key]

        new = []
        for a, b, c in f:
            ab, bc, ca = mid(a, b), mid(b, c), mid(c, a)
            new += [[a, ab, ca], [b, bc, ab], [c, ca, bc], [ab, bc, ca]]
        f = new
    return np.array(verts, np.float32), np.array(f, np.int32)


class Mesh:
    """The canonical mesh: sphere vertices followed by the K landmark points, triangles over the
    sphere vertices only (`faces` index `vertices[:num_sphere]`)."""

    def __init__(self, level: int):
        sphere, self.faces = icosphere(level)
        z = -np.sqrt(np.clip(1 - np.sum(_LMK_XY ** 2, -1), 0, None))
        lmk = np.concatenate([_LMK_XY, z[:, None]], -1).astype(np.float32)
        self.num_sphere = len(sphere)
        self.vertices = np.concatenate([sphere, lmk], 0)
        self.landmark_index = np.arange(self.num_sphere, self.num_sphere + len(lmk))


@functools.lru_cache(maxsize=8)
def make_mesh(level: int) -> Mesh:
    return Mesh(level)


def _gauss(d2, s):
    return jnp.exp(-d2 / (2 * s * s))


def deform(canon: jnp.ndarray, ident: jnp.ndarray, expr: jnp.ndarray) -> jnp.ndarray:
    """Head-frame positions `[N, 3]` of canonical sphere points `[N, 3]` (the face looks towards −z)."""
    x, y, z = canon[:, 0], canon[:, 1], canon[:, 2]
    front = jax.nn.sigmoid(-z * 8.0)
    jaw, smile, _, brow = expr[0], expr[1], expr[2], expr[3]
    nose = 0.18 * (1 + 0.4 * ident[4]) * _gauss(x ** 2 + (y + 0.02) ** 2, 0.11) * front
    dy = -0.22 * jaw * jax.nn.sigmoid((-0.35 - y) / 0.06) * front
    dy = dy + 0.08 * smile * _gauss((jnp.abs(x) - 0.22) ** 2 + (y + 0.42) ** 2, 0.08) * front
    dy = dy + 0.07 * brow * _gauss((jnp.abs(x) - 0.18) ** 2 + (y - 0.38) ** 2, 0.1) * front
    sx, sy, sz = 0.8 * (1 + 0.12 * ident[0]), 1.0 * (1 + 0.1 * ident[1]), 0.85 * (1 + 0.1 * ident[2])
    return jnp.stack([x * sx, (y + dy) * sy, z * sz - nose], -1)


def albedo(canon: jnp.ndarray, ident: jnp.ndarray, expr: jnp.ndarray) -> jnp.ndarray:
    """RGB albedo `[N, 3]` at canonical points: skin, hair, eyes (blink), brows, mouth (jaw, smile)."""
    x, y, z = canon[..., 0], canon[..., 1], canon[..., 2]
    front = jax.nn.sigmoid(-z * 8.0)
    tone = (ident[5] + 1) / 2
    skin = jnp.array([0.95, 0.78, 0.65]) * (1 - tone)[..., None] + jnp.array([0.45, 0.3, 0.22]) * tone[..., None]
    hair_c = jnp.array([0.15, 0.1, 0.05]) + 0.25 * jnp.array([1.0, 0.7, 0.2]) * ((ident[3] + 1) / 2)
    hair = jax.nn.sigmoid((y - 0.55 + 0.25 * (1 - front)) / 0.05)
    e = 0.16 * (1 + 0.2 * ident[3])
    eye_h = 0.06 * (1 - 0.9 * expr[2]) + 1e-3
    eye = jnp.exp(-((jnp.abs(x) - e) ** 2 / (2 * 0.06 ** 2) + (y - 0.2) ** 2 / (2 * eye_h ** 2))) * front
    brow = jnp.exp(-((jnp.abs(x) - 0.18) ** 2 / (2 * 0.08 ** 2) + (y - 0.38) ** 2 / (2 * 0.025 ** 2))) * front
    mw = 0.2 * (1 + 0.3 * expr[1])
    mh = 0.03 + 0.1 * expr[0]
    mouth = jnp.exp(-(x ** 2 / (2 * mw ** 2) + (y + 0.42) ** 2 / (2 * mh ** 2))) * front
    c = skin * (1 - hair)[..., None] + hair_c * hair[..., None]
    c = c * (1 - 0.9 * eye)[..., None] + jnp.array([0.05, 0.05, 0.08]) * (0.9 * eye)[..., None]
    c = c * (1 - 0.7 * brow)[..., None] + hair_c * (0.7 * brow)[..., None]
    c = c * (1 - 0.85 * mouth)[..., None] + jnp.array([0.55, 0.1, 0.12]) * (0.85 * mouth)[..., None]
    return c


def rotation(pose_deg: jnp.ndarray) -> jnp.ndarray:
    """`Rz(roll) @ Ry(yaw) @ Rx(pitch)` for `pose_deg = (yaw, pitch, roll)` in degrees."""
    yaw, pitch, roll = (pose_deg[i] * (math.pi / 180) for i in range(3))
    c, s = jnp.cos, jnp.sin
    one, zero = jnp.ones(()), jnp.zeros(())
    rx = jnp.array([[one, zero, zero], [zero, c(pitch), -s(pitch)], [zero, s(pitch), c(pitch)]])
    ry = jnp.array([[c(yaw), zero, s(yaw)], [zero, one, zero], [-s(yaw), zero, c(yaw)]])
    rz = jnp.array([[c(roll), -s(roll), zero], [s(roll), c(roll), zero], [zero, zero, one]])
    return rz @ ry @ rx


def project(points_cam: jnp.ndarray, focal_px: float, resolution: int) -> jnp.ndarray:
    """Pinhole projection of camera-frame points `[N, 3]` (z forward) to pixels `[N, 2]` (u right, v down)."""
    u = focal_px * points_cam[:, 0] / points_cam[:, 2] + resolution / 2
    v = resolution / 2 - focal_px * points_cam[:, 1] / points_cam[:, 2]
    return jnp.stack([u, v], -1)


def _vertex_normals(v: jnp.ndarray, faces: np.ndarray) -> jnp.ndarray:
    a, b, c = v[faces[:, 0]], v[faces[:, 1]], v[faces[:, 2]]
    fn = jnp.cross(b - a, c - a)
    n = jnp.zeros_like(v).at[faces[:, 0]].add(fn).at[faces[:, 1]].add(fn).at[faces[:, 2]].add(fn)
    return n / (jnp.linalg.norm(n, axis=-1, keepdims=True) + 1e-9)


def render(ident, expr, pose, *, level: int = 2, resolution: int = 32, focal: float = 1.5, distance: float = 4.0,
           softness: float = 0.5, depth_gamma: float = 0.02) -> dict:
    """One frame: `{"image" [R, R, 3] in [0, 1], "landmarks" [K, 2] px, "vertices" [V, 3] camera frame,
    "landmarks3d" [K, 3]}`."""
    mesh = make_mesh(level)
    canon = jnp.asarray(mesh.vertices)
    head = deform(canon, ident, expr)
    cam = head @ rotation(pose).T + jnp.array([0.0, 0.0, distance])
    f_px = focal * resolution
    uv = project(cam, f_px, resolution)
    ns = mesh.num_sphere
    faces = mesh.faces
    normals = _vertex_normals(cam[:ns], faces)
    p0, p1, p2 = uv[faces[:, 0]], uv[faces[:, 1]], uv[faces[:, 2]]  # [F, 2]
    area = (p1[:, 0] - p0[:, 0]) * (p2[:, 1] - p0[:, 1]) - (p1[:, 1] - p0[:, 1]) * (p2[:, 0] - p0[:, 0])
    # v points down: a triangle counter-clockwise from outside that faces the camera has area > 0.
    visible = area > 0.05  # slivers at the silhouette (< 0.05 px²) are left out
    ys, xs = jnp.meshgrid(jnp.arange(resolution) + 0.5, jnp.arange(resolution) + 0.5, indexing="ij")
    pix = jnp.stack([xs.ravel(), ys.ravel()], -1)  # [P, 2]

    def edge(pa, pb, q):  # twice the signed area of (pa, pb, q): [P, F]
        return ((pb[None, :, 0] - pa[None, :, 0]) * (q[:, None, 1] - pa[None, :, 1])
                - (pb[None, :, 1] - pa[None, :, 1]) * (q[:, None, 0] - pa[None, :, 0]))

    safe = jnp.where(visible, area, 1.0)[None]
    l0, l1, l2 = edge(p1, p2, pix) / safe, edge(p2, p0, pix) / safe, edge(p0, p1, pix) / safe
    lens = jnp.stack([jnp.linalg.norm(p2 - p1, axis=-1), jnp.linalg.norm(p0 - p2, axis=-1),
                      jnp.linalg.norm(p1 - p0, axis=-1)], 0)  # edge opposite vertex i
    heights = jnp.abs(safe[0])[None] / (lens + 1e-9)  # [3, F]
    dist = jnp.minimum(jnp.minimum(l0 * heights[0], l1 * heights[1]), l2 * heights[2])  # px inside > 0
    cover = jax.nn.sigmoid(dist / softness) * visible[None]
    bary = jnp.clip(jnp.stack([l0, l1, l2], -1), 0.0, 1.0)
    bary = bary / (jnp.sum(bary, -1, keepdims=True) + 1e-9)  # [P, F, 3]
    zc = jnp.einsum("pfk,fk->pf", bary, cam[:ns, 2][faces])
    near, far = distance - 1.5, distance + 1.5
    zt = (far - zc) / (far - near)
    # depth-soft selection among the covering triangles, silhouette alpha = 1 − Π(1 − cover)
    # (triangles more than 2·softness px away are left out, so a nearer one cannot win a pixel it misses)
    near_enough = (dist > -2.0 * softness) & visible[None]
    w = jax.nn.softmax(jnp.where(near_enough, zt / depth_gamma + jnp.log(cover + 1e-12), -1e9), axis=-1)
    alpha = 1.0 - jnp.exp(jnp.sum(jnp.log1p(-jnp.clip(cover, 0.0, 1.0 - 1e-6)), -1, keepdims=True))
    can_p = jnp.einsum("pfk,fkc->pfc", bary, canon[:ns][faces])
    nrm_p = jnp.einsum("pfk,fkc->pfc", bary, normals[faces])
    nrm_p = nrm_p / (jnp.linalg.norm(nrm_p, axis=-1, keepdims=True) + 1e-9)
    light = jnp.asarray(LIGHT / np.linalg.norm(LIGHT))
    shade = 0.45 + 0.65 * jnp.maximum(0.0, nrm_p @ light)
    col = albedo(can_p, ident, expr) * shade[..., None]  # [P, F, 3]
    img = alpha * jnp.einsum("pf,pfc->pc", w, col) + (1 - alpha) * jnp.asarray(BACKGROUND)
    lmk = mesh.landmark_index
    return {"image": jnp.clip(img.reshape(resolution, resolution, 3), 0.0, 1.0), "landmarks": uv[lmk],
            "vertices": cam[:ns], "landmarks3d": cam[lmk]}


def render_batch(ident, expr, pose, fc) -> dict:
    """`render` vmapped over `[N, ...]` parameters, with the settings of a `FaceConfig`."""
    settings = (fc.mesh_level, fc.resolution, fc.focal, fc.distance, fc.softness, fc.depth_gamma)
    return _jitted(settings)(jnp.asarray(ident), jnp.asarray(expr), jnp.asarray(pose))


@functools.lru_cache(maxsize=16)
def _jitted(settings):
    level, resolution, focal, distance, softness, depth_gamma = settings
    fn = functools.partial(render, level=level, resolution=resolution, focal=focal, distance=distance,
                           softness=softness, depth_gamma=depth_gamma)
    return jax.jit(jax.vmap(fn))


def sample_params(rng: np.random.Generator, n: int, fc, identities: np.ndarray | None = None):
    """Random single frames: `(ident [n, 6], expr [n, 4], pose [n, 3], id_index [n])`; identities from the
    table `identities [I, 6]` when given (index drawn uniformly), else fresh."""
    if identities is None:
        idx = np.full(n, -1)
        ident = rng.uniform(-1, 1, (n, ID_DIM))
    else:
        idx = rng.integers(0, len(identities), n)
        ident = identities[idx]
    expr = rng.uniform(0, 1, (n, EXPR_DIM)) ** 2
    lim = np.array([fc.max_yaw, fc.max_pitch, fc.max_roll])
    pose = rng.uniform(-1, 1, (n, POSE_DIM)) * lim
    return ident.astype(np.float32), expr.astype(np.float32), pose.astype(np.float32), idx


def video_params(rng: np.random.Generator, frames: int, fc, ident: np.ndarray):
    """A smooth video of one identity: pose and expression are sums of two sinusoids with random
    frequencies (0.1-0.6 cycles over the clip per frame-length unit) and phases."""
    t = np.arange(frames)[:, None] / max(frames, 2)

    def wave(k):
        f = rng.uniform(0.3, 1.5, (2, k))
        ph = rng.uniform(0, 2 * np.pi, (2, k))
        a = rng.uniform(0.3, 1.0, (2, k))
        return (a[0] * np.sin(2 * np.pi * f[0] * t + ph[0]) + a[1] * np.sin(2 * np.pi * f[1] * t + ph[1])) / 2

    lim = np.array([fc.max_yaw, fc.max_pitch, fc.max_roll])
    pose = np.clip(wave(POSE_DIM), -1, 1) * lim
    expr = np.clip((wave(EXPR_DIM) + 1) / 2, 0, 1) ** 2
    ident = np.broadcast_to(ident, (frames, ID_DIM))
    return ident.astype(np.float32), expr.astype(np.float32), pose.astype(np.float32)
