"""The NumPy scene simulator: ground, cuboid objects, a spinning LiDAR and a pinhole camera.

Frames (LiDAR frame: x forward, y left, z up, origin at the sensor):

  * ground: the plane z = -h + x tan(slope) (h = sensor height);
  * objects: yawed cuboids of three classes (car 4.5x1.8x1.5 m, pedestrian 0.6x0.6x1.7 m,
    cyclist 1.8x0.6x1.7 m) standing on the ground, with constant velocities;
  * LiDAR: beam inclinations theta_r (row 0 the highest) and azimuths
    phi_c = pi (1 - 2 (c + 0.5) / W) (column W/2 looks forward, Waymo's convention without
    the extrinsic yaw); each ray (cos theta cos phi, cos theta sin phi, sin theta) is cast
    analytically against the plane and the cuboids (slab method); the first hit gives the
    range, plus Gaussian noise; no hit or a range beyond `max_range` is -1 (invalid);
  * camera: KITTI-style calibration (P2, R0_rect = I, Tr_velo_to_cam) whose pixel rays are cast
    against the same scene, flat-shaded by face with a texture per class.

Everything is a pure function of the seed.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from jaxlab.lidarfirst.configs import SceneConfig

CLASSES = ("background", "vehicle", "pedestrian", "cyclist")
KITTI_TYPES = {1: "Car", 2: "Pedestrian", 3: "Cyclist"}
SIZES = {1: (4.5, 1.8, 1.5), 2: (0.6, 0.6, 1.7), 3: (1.8, 0.6, 1.7)}  # l, w, h (m)
MAX_SPEED = {1: 12.0, 2: 1.5, 3: 5.0}
CAMERA_OFFSET = np.array([0.27, 0.0, -0.08])  # camera 0 centre in the LiDAR frame (m), KITTI-like
STEREO_BASELINE = 0.06  # camera 2 sits this far left of camera 0 (m): P2's 4th column

# Waymo-TOP-like inclinations (deg), +2.47 ... -17.52, denser near the horizon (64 beams).
_u = np.linspace(0.0, 1.0, 64)
WAYMO_INCLINATIONS_DEG = 2.47 - 20.0 * (0.55 * _u + 0.45 * _u ** 2)


@dataclasses.dataclass
class Objects:
    """Cuboids of one frame, `[M]` or `[M, k]` arrays (LiDAR frame).

    Attributes:
      cls: class index (1 vehicle, 2 pedestrian, 3 cyclist).
      center: box centre `[M, 3]` (the true 3-D centre, not the bottom).
      size: l, w, h `[M, 3]` (l along the heading).
      yaw: heading about z (rad).
      velocity: vx, vy `[M, 2]` (m/s, absolute, LiDAR-frame axes).
    """

    cls: np.ndarray
    center: np.ndarray
    size: np.ndarray
    yaw: np.ndarray
    velocity: np.ndarray

    def __len__(self) -> int:
        return len(self.cls)


@dataclasses.dataclass
class Frame:
    """One simulated frame.

    Attributes:
      points: `[N, 4]` float32 x, y, z, reflectance of the valid returns (row-major pixel order).
      range_image: `[H, W]` ranges (m), -1 where invalid.
      instance_image: `[H, W]` 0 ground, k >= 1 object k-1, -1 no return.
      inclinations: `[H]` beam inclinations (rad), row 0 the highest.
      image: `[h, w, 3]` uint8 camera image.
      image_instances: `[h, w]` instance per pixel (like `instance_image`).
      calib: KITTI calibration dict (P0..P3 3x4, R0_rect 3x3, Tr_velo_to_cam, Tr_imu_to_velo 3x4).
      objects: the cuboids.
      ego_velocity: `[2]` (m/s).
    """

    points: np.ndarray
    range_image: np.ndarray
    instance_image: np.ndarray
    inclinations: np.ndarray
    image: np.ndarray
    image_instances: np.ndarray
    calib: dict
    objects: Objects
    ego_velocity: np.ndarray


def inclinations(cfg: SceneConfig) -> np.ndarray:
    """Beam inclinations `[H]` (rad), descending (row 0 the highest beam)."""
    if cfg.beam_layout == "waymo":
        return np.deg2rad(WAYMO_INCLINATIONS_DEG)
    return np.deg2rad(np.linspace(cfg.incl_max_deg, cfg.incl_min_deg, cfg.num_beams))


def azimuths(num_columns: int) -> np.ndarray:
    """Column azimuths `[W]`: phi_c = pi (1 - 2 (c + 0.5) / W), from +pi (behind, left) down."""
    return np.pi * (1.0 - 2.0 * (np.arange(num_columns) + 0.5) / num_columns)


def calibration(cfg: SceneConfig) -> dict:
    """The KITTI calibration of the simulated camera (LiDAR -> rectified camera 0 -> image 2).

    Tr_velo_to_cam = [A | -A t] with A = [[0,-1,0],[0,0,-1],[1,0,0]] (x fwd/y left/z up -> x
    right/y down/z fwd) and t = CAMERA_OFFSET; P_i = K [I | (-b_i, 0, 0)]. Shapes 3x4 / 3x3.
    """
    k = np.array([[cfg.focal, 0.0, (cfg.image_width - 1) / 2.0],
                  [0.0, cfg.focal, (cfg.image_height - 1) / 2.0],
                  [0.0, 0.0, 1.0]])
    a = np.array([[0.0, -1.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]])
    tr = np.concatenate([a, (-a @ CAMERA_OFFSET)[:, None]], axis=1)
    ps = {}
    for i, b in enumerate((0.0, -0.54, STEREO_BASELINE, STEREO_BASELINE - 0.54)):
        ps[f"P{i}"] = k @ np.concatenate([np.eye(3), np.array([[b], [0.0], [0.0]])], axis=1)
    imu = np.concatenate([np.eye(3), np.array([[-0.81], [0.32], [-0.8]])], axis=1)
    return {**ps, "R0_rect": np.eye(3), "Tr_velo_to_cam": tr, "Tr_imu_to_velo": imu}


def velo_to_image_matrix(calib: dict) -> np.ndarray:
    """`M = P2 R0_rect Tr_velo_to_cam` `[3, 4]` (R0 and Tr padded to 4x4)."""
    r0 = np.eye(4)
    r0[:3, :3] = calib["R0_rect"]
    tr = np.eye(4)
    tr[:3, :] = calib["Tr_velo_to_cam"]
    return calib["P2"] @ r0 @ tr


def ground_height(x: np.ndarray, cfg: SceneConfig) -> np.ndarray:
    return -cfg.lidar_height + x * np.tan(np.deg2rad(cfg.ground_slope_deg))


def sample_objects(rng: np.random.Generator, cfg: SceneConfig) -> Objects:
    """Non-overlapping cuboids on the ground, mostly ahead of the sensor (two thirds in the
    camera's field of view), random headings and speeds below the class maximum."""
    classes = [1] * cfg.num_cars + [2] * cfg.num_pedestrians + [3] * cfg.num_cyclists
    half_fov = np.arctan2(cfg.image_width / 2.0, cfg.focal)
    rows = []
    for c in classes:
        l, w, h = SIZES[c]
        for _ in range(200):
            dist = rng.uniform(cfg.min_distance, cfg.max_distance)
            az = rng.uniform(-0.85 * half_fov, 0.85 * half_fov) if rng.random() < 2 / 3 else rng.uniform(-np.pi, np.pi)
            xy = dist * np.array([np.cos(az), np.sin(az)])
            radius = 0.5 * np.hypot(l, w)
            if all(np.hypot(*(xy - r[1][:2])) > radius + r[4] + 0.8 for r in rows):
                break
        else:
            continue
        yaw = rng.uniform(-np.pi, np.pi)
        speed = rng.uniform(0.0, MAX_SPEED[c])
        z = ground_height(xy[0], cfg) + h / 2.0
        rows.append((c, np.array([xy[0], xy[1], z]), np.array([l, w, h]), yaw, radius,
                     speed * np.array([np.cos(yaw), np.sin(yaw)])))
    if not rows:
        return Objects(np.zeros(0, np.int32), np.zeros((0, 3)), np.zeros((0, 3)), np.zeros(0), np.zeros((0, 2)))
    return Objects(np.array([r[0] for r in rows], np.int32), np.stack([r[1] for r in rows]),
                   np.stack([r[2] for r in rows]), np.array([r[3] for r in rows]), np.stack([r[5] for r in rows]))


def cast_rays(origin: np.ndarray, dirs: np.ndarray, objects: Objects, cfg: SceneConfig):
    """First hit of rays `origin + t dirs` (`dirs` `[N, 3]` unit) with the ground and the cuboids.

    Returns `(t [N] (inf: no hit), instance [N] (0 ground, k+1 object k, -1 none),
    face [N] (0..2 the box axis hit, 3 ground))`.
    """
    n = len(dirs)
    t_best = np.full(n, np.inf)
    inst = np.full(n, -1, np.int32)
    face = np.full(n, 3, np.int32)
    tan_s = np.tan(np.deg2rad(cfg.ground_slope_deg))
    denom = dirs[:, 2] - dirs[:, 0] * tan_s
    with np.errstate(divide="ignore", invalid="ignore"):
        t_g = (-cfg.lidar_height + origin[0] * tan_s - origin[2]) / denom
    ok = np.isfinite(t_g) & (t_g > 1e-6)
    t_best[ok], inst[ok] = t_g[ok], 0
    for k in range(len(objects)):
        c, s = np.cos(objects.yaw[k]), np.sin(objects.yaw[k])
        rot = np.array([[c, s, 0.0], [-s, c, 0.0], [0.0, 0.0, 1.0]])  # world -> box
        o = rot @ (origin - objects.center[k])
        d = dirs @ rot.T
        d = np.where(np.abs(d) < 1e-12, 1e-12, d)
        half = objects.size[k] / 2.0
        t1, t2 = (-half - o) / d, (half - o) / d
        tlo, thi = np.minimum(t1, t2), np.maximum(t1, t2)
        tmin, tmax = tlo.max(1), thi.min(1)
        hit = (tmax >= tmin) & (tmin > 1e-6) & (tmin < t_best)
        t_best[hit] = tmin[hit]
        inst[hit] = k + 1
        face[hit] = tlo.argmax(1)[hit]
    return t_best, inst, face


def lidar_scan(rng: np.random.Generator, objects: Objects, cfg: SceneConfig):
    """Range image `[H, W]` (-1 invalid), instance image `[H, W]`, and points `[N, 4]`."""
    theta = inclinations(cfg)
    phi = azimuths(cfg.num_columns)
    th, ph = np.meshgrid(theta, phi, indexing="ij")
    dirs = np.stack([np.cos(th) * np.cos(ph), np.cos(th) * np.sin(ph), np.sin(th)], -1).reshape(-1, 3)
    t, inst, face = cast_rays(np.zeros(3), dirs, objects, cfg)
    r = t + cfg.range_noise * rng.standard_normal(t.shape)
    valid = np.isfinite(t) & (r > 0) & (r <= cfg.max_range)
    if cfg.dropout > 0:  # drawn only then: frames without dropout keep their random stream
        valid &= rng.random(t.shape) >= cfg.dropout
    r = np.where(valid, r, -1.0)
    inst = np.where(valid, inst, -1)
    pts = dirs[valid] * r[valid, None]
    refl = np.where(inst[valid] == 0, 0.2, 0.5 + 0.1 * face[valid])
    points = np.concatenate([pts, refl[:, None]], 1).astype(np.float32)
    shape = (len(theta), len(phi))
    return r.reshape(shape), inst.reshape(shape), points


_COLOURS = np.array([[110, 110, 110], [200, 40, 40], [40, 160, 220], [230, 190, 40]], np.float64)


def render_camera(objects: Objects, calib: dict, cfg: SceneConfig, rng: np.random.Generator):
    """The camera image `[h, w, 3]` uint8 and its instance image `[h, w]`.

    Pixel (u, v) (0-based centres) casts the ray through M^-1 [u, v, 1] from the camera centre
    (M = P2 R0 Tr). Objects are flat-shaded per face (by box axis) with a class texture:
    vehicles horizontal stripes, pedestrians vertical stripes, cyclists a checkerboard.
    """
    m = velo_to_image_matrix(calib)
    m3 = np.linalg.inv(m[:, :3])
    centre = -m3 @ m[:, 3]
    h, w = cfg.image_height, cfg.image_width
    v, u = np.mgrid[0:h, 0:w]
    pix = np.stack([u.ravel(), v.ravel(), np.ones(h * w)], 0)
    dirs = (m3 @ pix).T
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    t, inst, face = cast_rays(centre, dirs, objects, cfg)
    hit = centre + dirs * np.where(np.isfinite(t), t, 0.0)[:, None]
    img = np.empty((h * w, 3))
    sky = np.isinf(t)
    img[sky] = np.array([150.0, 190.0, 235.0])
    ground = inst == 0
    checker = ((np.floor(hit[:, 0]) + np.floor(hit[:, 1])) % 2)[:, None]
    img[ground] = (_COLOURS[0] * (0.9 + 0.15 * checker))[ground]
    obj = inst > 0
    if obj.any():
        k = inst[obj] - 1
        cls = objects.cls[k]
        shade = np.array([1.0, 0.75, 0.55])[np.minimum(face[obj], 2)]
        cz = (hit[obj, 2] - objects.center[k, 2]) * 6.0
        ca = (hit[obj, 0] + hit[obj, 1]) * 6.0
        tex = np.where(cls == 1, np.floor(cz) % 2, np.where(cls == 2, np.floor(ca) % 2,
                                                            (np.floor(cz) + np.floor(ca)) % 2))
        img[obj] = _COLOURS[cls] * (shade * (0.7 + 0.3 * tex))[:, None]
    img += rng.normal(0.0, 4.0, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8).reshape(h, w, 3), inst.reshape(h, w)


def box_corners(center: np.ndarray, size: np.ndarray, yaw: np.ndarray) -> np.ndarray:
    """The 8 corners `[M, 8, 3]` of yawed boxes (`center` `[M, 3]`, `size` l, w, h `[M, 3]`)."""
    signs = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], np.float64)
    local = signs[None] * size[:, None, :] / 2.0
    c, s = np.cos(yaw)[:, None], np.sin(yaw)[:, None]
    x = c * local[..., 0] - s * local[..., 1]
    y = s * local[..., 0] + c * local[..., 1]
    return np.stack([x, y, local[..., 2]], -1) + center[:, None, :]


def simulate_frame(seed: int, cfg: SceneConfig) -> Frame:
    """One frame, a pure function of `seed` and the scene config."""
    rng = np.random.default_rng(seed)
    objects = sample_objects(rng, cfg)
    r, inst, points = lidar_scan(rng, objects, cfg)
    calib = calibration(cfg)
    image, image_inst = render_camera(objects, calib, cfg, rng)
    return Frame(points, r, inst, inclinations(cfg), image, image_inst, calib, objects,
                 np.array([cfg.ego_speed, 0.0]))
