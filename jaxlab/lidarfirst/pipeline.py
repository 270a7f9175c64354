"""The cluster-first pipeline of one frame, the classifier's training crops, and the metrics.

Per frame: points -> range image (JAX) -> camera-FOV columns -> ground removal and clusters
(`segmentation.segment`, one compile per image size) -> polygon or cube boxes -> image boxes (P2 R0 Tr) ->
R^3 risk -> crops classified in risk order, one (or `crop_batch`) at a time, until the crop budget
(early exit); the time of each detection is measured from the start of the frame.
"""

from __future__ import annotations

import dataclasses
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxlab.core.errors import DataFormatError
from jaxlab.lidarfirst import camera, data, risk, segmentation, simulator, waymo
from jaxlab.lidarfirst.configs import LidarFirstConfig

# Named random streams: fold_in(key(seed), STREAM).
TRAIN_SCENES, EVAL_SCENES, INIT, BATCHES, BACKGROUND = 1, 2, 3, 4, 5

# The per-frame JAX steps, each compiled once per shape (eager op-by-op dispatch dominated the frame time).
_range_image = jax.jit(segmentation.points_to_range_image, static_argnums=(3,))
_corners = jax.jit(segmentation.cube_corners)
_project = jax.jit(camera.project_boxes, static_argnums=(2, 3, 4))
_project_polygons = jax.jit(camera.project_polygons, static_argnums=(5, 6, 7))
_points = jax.jit(segmentation.range_image_to_points)
_r3 = jax.jit(risk.r3, static_argnames=("dt", "t_compute", "a_max", "margin", "max_steps"))


def stream_seed(seed: int, stream: int, index: int) -> int:
    """A NumPy seed from `fold_in(fold_in(key(seed), stream), index)`."""
    k = jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), stream), index)
    return int(jax.random.bits(k, dtype=jnp.uint32))


@dataclasses.dataclass
class Inputs:
    """What the pipeline sees of a frame (from the simulator, a KITTI folder or a Waymo segment).

    `points`, `calib` (Tr_velo_to_cam), `range_image`, `inclinations` and `azimuths` share one
    LiDAR frame (x forward, y left, z up). A frame with a `range_image` (Waymo) is segmented on
    that image, with its own `inclinations` and `azimuths`; the others are rasterised with the
    config's beams and columns.
    """

    name: str
    points: np.ndarray  # [N, 4] x, y, z, intensity
    calib: dict
    image: np.ndarray  # [h, w, 3] uint8
    gt_boxes: np.ndarray  # [G, 4] left, top, right, bottom
    gt_classes: np.ndarray  # [G] 1 vehicle, 2 pedestrian, 3 cyclist
    objects: simulator.Objects | None = None
    ego_velocity: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(2))
    instance_image: np.ndarray | None = None  # [H, W], simulated frames only
    gt_objects: np.ndarray | None = None  # [G] index in `objects` of each ground-truth box (simulated frames)
    range_image: np.ndarray | None = None  # [H, W] ranges (m), <= 0 invalid, row 0 the highest beam (Waymo)
    inclinations: np.ndarray | None = None  # [H] rad, of the range image's rows
    azimuths: np.ndarray | None = None  # [W] rad, LiDAR-frame azimuth of each range-image column


def from_frame(name: str, frame: simulator.Frame) -> Inputs:
    labels, index = data.labelled_objects(frame)
    return Inputs(name, frame.points, frame.calib, frame.image, np.array([lb.bbox for lb in labels]).reshape(-1, 4),
                  np.array([data.CLASS_OF_KITTI[lb.type] for lb in labels], np.int32), frame.objects,
                  frame.ego_velocity, frame.instance_image, index)


def from_kitti(root, name: str) -> Inputs:
    k = data.read_frame(root, name)
    labs = [lb for lb in k.labels if lb.type in data.CLASS_OF_KITTI]
    return Inputs(name, k.points, k.calib, k.image, np.array([lb.bbox for lb in labs]).reshape(-1, 4),
                  np.array([data.CLASS_OF_KITTI[lb.type] for lb in labs], np.int32), k.objects, k.ego_velocity)


def from_waymo(frame: waymo.WaymoFrame, name: str) -> Inputs:
    """The `Inputs` of a Waymo v1 frame: TOP laser and FRONT camera.

    The LiDAR frame of the result is the TOP laser's frame turned about its z axis by the laser
    extrinsic's yaw psi = atan2(E[1, 0], E[0, 0]): origin at the laser, and with a level laser the
    vehicle's axes, so column j's azimuth is Waymo's `column_azimuths(W, E) + psi` =
    pi (1 - 2 (j + 0.5) / W) and the FRONT camera looks along azimuth 0 (as `fov_columns`
    assumes). The segmentation's points r (cos inc cos az, cos inc sin az, sin inc) are then exact
    in this frame; it maps to the vehicle frame by S = E Rz(-psi) (the laser's roll, pitch and
    position), and `calib`'s Tr_velo_to_cam = `waymo.camera_calib(cam)` Tr S.

    Args:
      frame: a frame with a TOP range image and a FRONT camera image and calibration.
      name: the frame's name.
    Returns:
      `Inputs` with `range_image` (TOP, first return, channel 0; -1 where no return),
      `inclinations`, `azimuths`, `points` (the returns in that frame, row-major, with their
      intensity), the FRONT image and calibration (pinhole: lens distortion ignored), and the
      FRONT camera labels as ground truth (vehicle 1, pedestrian 2, cyclist 3; signs and unknowns
      dropped; boxes left, top, right, bottom). The per-pixel pose (ego motion during the spin)
      is not applied. A frame without these raises `DataFormatError` naming its record.
    """
    where = frame.source or f"frame {frame.timestamp_micros}"
    if waymo.TOP not in frame.range_images:
        raise DataFormatError(f"{where}: no TOP laser range image (lasers[name=1].ri_return1.range_image_compressed)")
    if waymo.CAMERA_FRONT not in frame.camera_calibrations:
        raise DataFormatError(f"{where}: no FRONT camera calibration (context.camera_calibrations[name=1])")
    if waymo.CAMERA_FRONT not in frame.images:
        raise DataFormatError(f"{where}: no FRONT camera image (images[name=1])")
    ri, cal = frame.range_images[waymo.TOP], frame.calibrations[waymo.TOP]
    h, w = ri.shape[:2]
    e = cal.extrinsic
    psi = float(np.arctan2(e[1, 0], e[0, 0]))
    theta = waymo.row_inclinations(cal, h)
    phi = waymo.column_azimuths(w, e) + psi
    rng = np.where(ri[..., 0] > 0, ri[..., 0], -1.0).astype(np.float32)
    valid = rng > 0
    ct = np.cos(theta)[:, None]
    xyz = np.stack([rng * ct * np.cos(phi)[None], rng * ct * np.sin(phi)[None],
                    rng * np.sin(theta)[:, None] + 0.0 * phi[None]], -1)
    points = np.concatenate([xyz[valid], ri[..., 1][valid][:, None]], 1).astype(np.float32)
    c, s = np.cos(psi), np.sin(psi)
    unturn = np.eye(4)
    unturn[:2, :2] = [[c, s], [-s, c]]  # Rz(-psi)
    calib = waymo.camera_calib(frame.camera_calibrations[waymo.CAMERA_FRONT])
    calib["Tr_velo_to_cam"] = calib["Tr_velo_to_cam"] @ (e @ unturn)
    image = waymo.camera_image(frame, waymo.CAMERA_FRONT)
    labels = [lb for lb in frame.camera_labels.get(waymo.CAMERA_FRONT, []) if lb.type in waymo.CLASS_OF_TYPE]
    boxes = np.array([[lb.box[0] - lb.box[3] / 2, lb.box[1] - lb.box[4] / 2, lb.box[0] + lb.box[3] / 2,
                       lb.box[1] + lb.box[4] / 2] for lb in labels]).reshape(-1, 4)
    classes = np.array([waymo.CLASS_OF_TYPE[lb.type] for lb in labels], np.int32)
    return Inputs(name, points, calib, image, boxes, classes, None, range_image=rng, inclinations=theta,
                  azimuths=phi)


def segment_frame(inp: Inputs, cfg: LidarFirstConfig) -> dict:
    """Range image, ground, clusters, image boxes, risk and order of one frame (NumPy results).

    The range image is `inp.range_image` with its own rows and columns when given (Waymo; the
    camera's half FOV is arctan(w / 2 f_u), f_u = P2[0, 0], widened by the azimuth of its optical
    axis), else the points rasterised with the config's beams and `scene.num_columns` columns
    (half FOV arctan(w / 2 `scene.focal`)).
    """
    sc, p = cfg.scene, cfg.pipeline
    if inp.range_image is not None:  # the range-image path
        theta, phi = np.asarray(inp.inclinations, np.float64), np.asarray(inp.azimuths, np.float64)
        num_columns = inp.range_image.shape[1]
        if theta.shape != inp.range_image.shape[:1] or phi.shape != inp.range_image.shape[1:]:
            raise ValueError(f"{inp.name}: range image {inp.range_image.shape} with {theta.shape} inclinations and "
                             f"{phi.shape} azimuths")
        rng = jnp.asarray(inp.range_image, jnp.float32)
        axis = (np.asarray(inp.calib["R0_rect"]) @ np.asarray(inp.calib["Tr_velo_to_cam"])[:, :3])[2]
        half_fov = float(np.arctan2(inp.image.shape[1] / 2.0, inp.calib["P2"][0, 0])
                         + abs(np.arctan2(axis[1], axis[0])))
    else:
        theta = simulator.inclinations(sc)
        phi = simulator.azimuths(sc.num_columns)
        num_columns = sc.num_columns
        n = len(inp.points)
        budget = 1 << max(int(np.ceil(np.log2(max(n, 1)))), 10)  # padded point count: few compiles
        pts = np.zeros((budget, 3), np.float32)
        pts[:n] = inp.points[:, :3]
        rng = _range_image(jnp.asarray(pts), jnp.arange(budget) < n,
                           jnp.asarray(theta, jnp.float32), sc.num_columns)
        half_fov = float(np.arctan2(inp.image.shape[1] / 2.0, sc.focal))
    c0, c1 = 0, num_columns
    if p.camera_fov_only:
        c0, c1 = segmentation.fov_columns(phi, half_fov)
    out = segmentation.segment(
        rng[:, c0:c1], jnp.asarray(theta, jnp.float32), jnp.asarray(phi[c0:c1], jnp.float32),
        num_columns=num_columns, ground_angle=float(np.deg2rad(p.ground_angle_deg)),
        smooth_window=p.smooth_window, dilation=p.ground_dilation, cluster_angle=float(np.deg2rad(p.cluster_angle_deg)),
        min_size=p.min_cluster, max_size=p.max_cluster, max_clusters=p.max_clusters, wrap=not p.camera_fov_only,
        repair=p.repair_depth)
    corners = _corners(out["box_min"], out["box_max"])
    m = jnp.asarray(simulator.velo_to_image_matrix(inp.calib), jnp.float32)
    h, w = inp.image.shape[:2]
    if p.box_shape == "polygon":
        pts = _points(rng[:, c0:c1], jnp.asarray(theta, jnp.float32), jnp.asarray(phi[c0:c1], jnp.float32))
        boxes, _, ok = _project_polygons(pts.reshape(-1, 3), out["cluster"].reshape(-1), out["box_min"][:, 2],
                                         out["box_max"][:, 2], m, w, h, float(p.truncation_threshold))
    else:
        boxes, _, ok = _project(corners, m, w, h, float(p.truncation_threshold))
    out = jax.device_get(out)
    corners, boxes = np.asarray(corners), np.asarray(boxes)
    valid = np.asarray(ok) & out["valid"]
    distance = np.linalg.norm(corners, axis=-1).min(1)
    lo, hi = out["box_min"], out["box_max"]
    centre, size = (lo + hi)[:, :2] / 2, np.maximum(hi - lo, 0.1)[:, :2]
    vel = np.zeros_like(centre)
    if inp.objects is not None and len(inp.objects):  # velocity of the object under the cluster (oracle,
        d = np.linalg.norm(centre[:, None] - inp.objects.center[None, :, :2], axis=-1)  # as the paper's labels)
        j = d.argmin(1)
        near = d[np.arange(len(j)), j] < np.maximum(inp.objects.size[j, 0], 2.0)
        vel[near] = inp.objects.velocity[j[near]]
    cls, _ = _r3(jnp.asarray(centre), jnp.asarray(size), jnp.zeros(len(centre)), jnp.asarray(vel),
                     jnp.asarray(inp.ego_velocity, jnp.float32), dt=p.r3_dt, t_compute=p.r3_t_compute,
                     a_max=p.r3_a_max, margin=p.r3_margin)
    cls = np.asarray(cls)
    order = risk.order(cls, distance, valid, p.priority)
    return {"range_image": np.asarray(rng), "inclinations": theta, "azimuths": phi, "columns": (c0, c1),
            "ground": out["ground"], "cluster": out["cluster"], "boxes": boxes, "valid": valid, "distance": distance,
            "risk": cls, "order": order, "count": out["count"]}


def cluster_labels(seg: dict, instance_image: np.ndarray, objects: simulator.Objects) -> np.ndarray:
    """The class (0 background) of each cluster slot: its majority instance's class."""
    c0, c1 = seg["columns"]
    inst = instance_image[:, c0:c1]
    out = np.zeros(len(seg["boxes"]), np.int32)
    for k in range(len(out)):
        ids = inst[seg["cluster"] == k]
        if len(ids):
            top = np.bincount(ids + 1).argmax() - 1
            out[k] = objects.cls[top - 1] if top > 0 else 0
    return out


def training_crops(cfg: LidarFirstConfig, stream: int, num_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """Crops `[N, s, s, 3]` and classes `[N]` of simulated frames: ground-truth boxes, cluster boxes
    labelled by their majority instance, and random background boxes away from every object."""
    s, margin = cfg.model.crop_size, cfg.pipeline.crop_margin
    xs, ys = [], []
    for i in range(num_frames):
        frame = simulator.simulate_frame(stream_seed(cfg.seed, stream, i), cfg.scene)
        inp = from_frame(str(i), frame)
        seg = segment_frame(inp, cfg)
        cl = cluster_labels(seg, frame.instance_image, frame.objects)
        boxes = [inp.gt_boxes, seg["boxes"][seg["valid"]]]
        labels = [inp.gt_classes, cl[seg["valid"]]]
        rng = np.random.default_rng(stream_seed(cfg.seed, BACKGROUND, stream * 100003 + i))
        h, w = frame.image.shape[:2]
        bg = []
        for _ in range(40):
            bw, bh = rng.uniform(8, w / 3), rng.uniform(8, h / 3)
            x0, y0 = rng.uniform(0, w - bw), rng.uniform(h / 3, h - bh)
            b = np.array([x0, y0, x0 + bw, y0 + bh])
            if len(inp.gt_boxes) == 0 or iou(b[None], inp.gt_boxes).max() < 0.05:
                bg.append(b)
            if len(bg) >= max(2, len(inp.gt_boxes)):
                break
        boxes.append(np.array(bg).reshape(-1, 4))
        labels.append(np.zeros(len(bg), np.int32))
        b, lab = np.concatenate(boxes), np.concatenate(labels)
        keep = (b[:, 2] - b[:, 0] >= 2) & (b[:, 3] - b[:, 1] >= 2)
        xs.append(camera.crop_and_resize(frame.image, b[keep], s, margin))
        ys.append(lab[keep])
    return np.concatenate(xs), np.concatenate(ys).astype(np.int32)


def process_frame(inp: Inputs, classify, cfg: LidarFirstConfig) -> dict:
    """Runs the pipeline on a frame; `classify(crops [B, s, s, 3]) -> probabilities [B, 4]` with
    B = `pipeline.crop_batch`.

    The crops are classified in risk order, `crop_batch` at a time (the last batch padded with
    blank crops, so one compile), up to `crop_budget`; a crop's detection time is when its batch
    is done. Returns the segmentation (`segment_frame`), `detections` (box, class, score, time
    since the frame start in s, rank in the crop order, risk class), `crops` (classified),
    `crops_computed` (with the padding) and `times` (segmentation, total).
    """
    t0 = time.perf_counter()
    seg = segment_frame(inp, cfg)
    t_seg = time.perf_counter() - t0
    p = cfg.pipeline
    order = seg["order"][:p.crop_budget] if p.crop_budget else seg["order"]
    size, b = cfg.model.crop_size, p.crop_batch
    dets, computed = [], 0
    for start in range(0, len(order), b):
        chunk = order[start:start + b]
        crops = camera.crop_and_resize(inp.image, seg["boxes"][chunk], size, p.crop_margin)
        if len(chunk) < b:
            crops = np.concatenate([crops, np.zeros((b - len(chunk), size, size, 3), np.float32)])
        prob = np.asarray(classify(crops))
        done = time.perf_counter() - t0
        computed += b
        for i, k in enumerate(chunk):
            c = int(prob[i, 1:].argmax()) + 1
            if prob[i, c] >= p.score_threshold:
                dets.append({"box": seg["boxes"][k].tolist(), "class": c, "score": float(prob[i, c]),
                             "rank": start + i, "time_s": done, "risk": int(seg["risk"][k]),
                             "distance": float(seg["distance"][k])})
    return {"segmentation": seg, "detections": dets, "crops": len(order), "crops_computed": computed,
            "times": {"segment_s": t_seg, "total_s": time.perf_counter() - t0}}


# ----------------------------------------------------------------------------- metrics


def box_area(a: np.ndarray) -> np.ndarray:
    """Areas `[A]` of boxes (left, top, right, bottom)."""
    return np.prod(np.clip(a[:, 2:] - a[:, :2], 0, None), -1)


def intersection(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection areas `[A, B]` of boxes (left, top, right, bottom)."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    return np.prod(np.clip(rb - lt, 0, None), -1)


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU `[A, B]` of boxes (left, top, right, bottom; continuous coordinates)."""
    inter = intersection(a, b)
    return inter / np.maximum(box_area(a)[:, None] + box_area(b)[None] - inter, 1e-9)


def average_precision(dets: list[tuple[int, float, np.ndarray]], gts: list[np.ndarray], thr: float = 0.5) -> float:
    """VOC all-point AP of one class: `dets` = (frame, score, box), `gts[frame]` = `[G, 4]` boxes.

    Detections are matched greedily by score to the unmatched ground truth of highest IoU >= thr.
    Returns nan without ground truth.
    """
    total = sum(len(g) for g in gts)
    if total == 0:
        return float("nan")
    used = [np.zeros(len(g), bool) for g in gts]
    tp = []
    for f, _, box in sorted(dets, key=lambda d: -d[1]):
        g = gts[f]
        if len(g) == 0:
            tp.append(False)
            continue
        o = iou(box[None], g)[0]
        o[used[f]] = -1
        j = int(o.argmax())
        hit = o[j] >= thr
        used[f][j] |= hit
        tp.append(bool(hit))
    tp = np.array(tp, bool)
    recall = np.concatenate([[0.0], np.cumsum(tp) / total])
    precision = np.concatenate([[1.0], np.cumsum(tp) / np.maximum(np.arange(1, len(tp) + 1), 1)])
    for i in range(len(precision) - 2, -1, -1):
        precision[i] = max(precision[i], precision[i + 1])
    return float(np.sum((recall[1:] - recall[:-1]) * precision[1:]))


def ground_and_purity(seg: dict, instance_image: np.ndarray) -> dict:
    """Ground precision/recall and cluster purity (majority-instance share of clustered points)."""
    c0, c1 = seg["columns"]
    inst = instance_image[:, c0:c1]
    g, truth = seg["ground"], inst == 0
    cl = seg["cluster"]
    major = sum(np.bincount(inst[cl == k] + 1).max() for k in range(cl.max() + 1) if (cl == k).any())
    return {"ground_tp": int((g & truth).sum()), "ground_pred": int(g.sum()), "ground_true": int(truth.sum()),
            "cluster_majority": int(major), "cluster_points": int((cl >= 0).sum())}


def evaluation_frames(config: LidarFirstConfig):
    """The frames the `run` action processes: those of `config.data_dir` (a Waymo v1 segment file
    `*.tfrecord` or a directory of them: `from_waymo` frames named `<segment stem>-<frame index>`;
    else a KITTI-layout folder), or `scene.num_frames` simulated frames of the evaluation stream."""
    if config.data_dir:
        root = pathlib.Path(config.data_dir)
        if root.suffix == ".tfrecord" and not root.is_file():
            raise DataFormatError(f"{root}: no such Waymo segment file")
        segments = [root] if root.suffix == ".tfrecord" else []
        if root.is_dir() and not (root / "velodyne").is_dir():
            segments = sorted(root.glob("*.tfrecord"))
        if segments:
            for path in segments:
                for k, frame in enumerate(waymo.read_frames(path)):
                    yield from_waymo(frame, f"{path.stem}-{k}")
            return
        for name in data.frame_ids(config.data_dir):
            yield from_kitti(config.data_dir, name)
        return
    for i in range(config.scene.num_frames):
        seed = stream_seed(config.seed, EVAL_SCENES, i)
        yield from_frame(f"{i:06d}", simulator.simulate_frame(seed, config.scene))
