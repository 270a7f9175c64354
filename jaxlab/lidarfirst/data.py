"""KITTI object format: the simulator's writer and strict readers for a user's KITTI folder.

Layout (`<root>/`): `velodyne/NNNNNN.bin` (float32 N x 4: x fwd, y left, z up, reflectance),
`calib/NNNNNN.txt` (`P0:`..`P3:` 12 values, `R0_rect:` 9, `Tr_velo_to_cam:` 12,
`Tr_imu_to_velo:` 12, row-major), `label_2/NNNNNN.txt` (15 fields per object, a 16th score in
results), `image_2/NNNNNN.png`. The simulator adds `jaxlab_objects/NNNNNN.txt` (not KITTI: the
LiDAR-frame boxes, velocities and ego velocity that the R^3 risk model needs; optional).

Every reader raises `DataFormatError` naming the file, the line and what was expected.
"""

from __future__ import annotations

import dataclasses
import math
import pathlib

import numpy as np

from jaxlab.core.errors import DataFormatError
from jaxlab.lidarfirst import simulator
from jaxlab.lidarfirst.simulator import Frame

KITTI_CLASSES = ("Car", "Van", "Truck", "Pedestrian", "Person_sitting", "Cyclist", "Tram", "Misc", "DontCare")
CLASS_OF_KITTI = {"Car": 1, "Van": 1, "Truck": 1, "Pedestrian": 2, "Person_sitting": 2, "Cyclist": 3}
CALIB_FIELDS = {"P0": 12, "P1": 12, "P2": 12, "P3": 12, "R0_rect": 9, "Tr_velo_to_cam": 12, "Tr_imu_to_velo": 12}


@dataclasses.dataclass
class Label:
    """One `label_2` line. `bbox` = left, top, right, bottom (px); `dims` = h, w, l (m);
    `location` = bottom-face centre in rectified camera coordinates (m)."""

    type: str
    truncated: float
    occluded: int
    alpha: float
    bbox: tuple[float, float, float, float]
    dims: tuple[float, float, float]
    location: tuple[float, float, float]
    rotation_y: float
    score: float | None = None


# ----------------------------------------------------------------------------- readers


def read_velodyne(path: str | pathlib.Path) -> np.ndarray:
    """`[N, 4]` float32 points of a `velodyne/*.bin` file (size a multiple of 16 bytes, finite)."""
    path = pathlib.Path(path)
    raw = path.read_bytes()
    if len(raw) % 16:
        raise DataFormatError(f"{path}: size {len(raw)} bytes is not a multiple of 16 (float32 x, y, z, r per point)")
    pts = np.frombuffer(raw, "<f4").reshape(-1, 4).copy()
    bad = ~np.isfinite(pts).all(1)
    if bad.any():
        raise DataFormatError(f"{path}: point {int(np.argmax(bad))} is not finite: {pts[np.argmax(bad)].tolist()}")
    return pts


def _floats(text: str, path: pathlib.Path, line: int, what: str) -> list[float]:
    try:
        vals = [float(x) for x in text.split()]
    except ValueError as e:
        raise DataFormatError(f"{path}:{line}: {what}: expected numbers, got {text.strip()!r}") from e
    if not all(math.isfinite(v) for v in vals):
        raise DataFormatError(f"{path}:{line}: {what}: non-finite value in {text.strip()!r}")
    return vals


def read_calib(path: str | pathlib.Path) -> dict:
    """`{"P0".."P3": [3, 4], "R0_rect": [3, 3], "Tr_velo_to_cam": [3, 4], "Tr_imu_to_velo": [3, 4]}`.

    KITTI object calib files name the rectification `R0_rect` and the transform
    `Tr_velo_to_cam`; `R_rect`/`Tr_velo_cam` (the tracking spelling) are accepted too.
    """
    path = pathlib.Path(path)
    alias = {"R_rect": "R0_rect", "Tr_velo_cam": "Tr_velo_to_cam", "Tr_imu_velo": "Tr_imu_to_velo"}
    out = {}
    for i, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        key, sep, rest = line.partition(":")
        key = alias.get(key.strip(), key.strip())
        if not sep or key not in CALIB_FIELDS:
            raise DataFormatError(f"{path}:{i}: expected 'KEY: values' with KEY in {sorted(CALIB_FIELDS)}, "
                                  f"got {line[:40]!r}")
        vals = _floats(rest, path, i, key)
        if len(vals) != CALIB_FIELDS[key]:
            raise DataFormatError(f"{path}:{i}: {key}: expected {CALIB_FIELDS[key]} values, got {len(vals)}")
        out[key] = np.array(vals).reshape(3, -1)
    missing = [k for k in ("P2", "R0_rect", "Tr_velo_to_cam") if k not in out]
    if missing:
        raise DataFormatError(f"{path}: missing {', '.join(missing)}")
    return out


def read_labels(path: str | pathlib.Path) -> list[Label]:
    """The objects of a `label_2/*.txt` file (15 fields, or 16 with a score), values checked."""
    path = pathlib.Path(path)
    labels = []
    for i, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        f = line.split()
        if not f:
            continue
        if len(f) not in (15, 16):
            raise DataFormatError(f"{path}:{i}: expected 15 fields (16 with a score), got {len(f)}")
        if f[0] not in KITTI_CLASSES:
            raise DataFormatError(f"{path}:{i}: type: expected one of {', '.join(KITTI_CLASSES)}, got {f[0]!r}")
        v = _floats(" ".join(f[1:]), path, i, "fields 2-" + str(len(f)))
        trunc, occ, alpha = v[0], v[1], v[2]
        if f[0] != "DontCare":
            if not 0.0 <= trunc <= 1.0:
                raise DataFormatError(f"{path}:{i}: truncated: expected a value in [0, 1], got {trunc}")
            if occ not in (0, 1, 2, 3):
                raise DataFormatError(f"{path}:{i}: occluded: expected 0, 1, 2 or 3, got {occ}")
            if not -math.pi - 1e-3 <= alpha <= math.pi + 1e-3:
                raise DataFormatError(f"{path}:{i}: alpha: expected a value in [-pi, pi], got {alpha}")
            if v[5] < v[3] or v[6] < v[4]:
                raise DataFormatError(f"{path}:{i}: bbox: expected left <= right and top <= bottom, got {v[3:7]}")
            if min(v[7:10]) < 0:
                raise DataFormatError(f"{path}:{i}: dimensions: expected h, w, l >= 0, got {v[7:10]}")
        labels.append(Label(f[0], trunc, int(occ), alpha, tuple(v[3:7]), tuple(v[7:10]), tuple(v[10:13]), v[13],
                            v[14] if len(v) == 15 else None))
    return labels


def read_image(path: str | pathlib.Path) -> np.ndarray:
    """`[h, w, 3]` uint8 of an `image_2/*.png`."""
    from PIL import Image, UnidentifiedImageError

    path = pathlib.Path(path)
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError) as e:
        raise DataFormatError(f"{path}: not a readable PNG image ({e})") from e


def read_objects(path: str | pathlib.Path) -> tuple[simulator.Objects, np.ndarray]:
    """The simulator's `jaxlab_objects/*.txt`: line 1 `ego vx vy`, then one object a line
    `class x y z l w h yaw vx vy` (LiDAR frame)."""
    path = pathlib.Path(path)
    lines = [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    if not lines or lines[0].split()[0] != "ego" or len(lines[0].split()) != 3:
        raise DataFormatError(f"{path}:1: expected 'ego vx vy'")
    ego = np.array(_floats(lines[0].split(None, 1)[1], path, 1, "ego"))
    rows = []
    for i, ln in enumerate(lines[1:], 2):
        v = _floats(ln, path, i, "object")
        if len(v) != 10 or v[0] not in (1, 2, 3):
            raise DataFormatError(f"{path}:{i}: expected 10 fields 'class(1-3) x y z l w h yaw vx vy'")
        rows.append(v)
    a = np.array(rows).reshape(-1, 10)
    return simulator.Objects(a[:, 0].astype(np.int32), a[:, 1:4], a[:, 4:7], a[:, 7], a[:, 8:10]), ego


def frame_ids(root: str | pathlib.Path) -> list[str]:
    """The frame names (`000000`, ...) of a KITTI folder: those with a `velodyne/*.bin`."""
    root = pathlib.Path(root)
    if not (root / "velodyne").is_dir():
        raise DataFormatError(f"{root}: not a KITTI object folder (no velodyne/ directory)")
    ids = sorted(p.stem for p in (root / "velodyne").glob("*.bin"))
    if not ids:
        raise DataFormatError(f"{root}/velodyne: no .bin files")
    return ids


# ----------------------------------------------------------------------------- writers


def _fmt(vals) -> str:
    return " ".join(f"{float(x):.12e}" for x in np.ravel(vals))


def write_calib(path: pathlib.Path, calib: dict) -> None:
    path.write_text("".join(f"{k}: {_fmt(calib[k])}\n" for k in CALIB_FIELDS))


def write_labels(path: pathlib.Path, labels: list[Label]) -> None:
    lines = []
    for lab in labels:
        vals = [lab.truncated, lab.occluded, lab.alpha, *lab.bbox, *lab.dims, *lab.location, lab.rotation_y]
        text = f"{lab.type} {lab.truncated:.2f} {lab.occluded:d} " + " ".join(f"{x:.6f}" for x in vals[2:])
        if lab.score is not None:
            text += f" {lab.score:.6f}"
        lines.append(text + "\n")
    path.write_text("".join(lines))


def frame_labels(frame: Frame) -> list[Label]:
    """KITTI labels of the objects visible in the camera (2-D boxes from P2 on the 8 corners)."""
    return labelled_objects(frame)[0]


def labelled_objects(frame: Frame) -> tuple[list[Label], np.ndarray]:
    """`frame_labels` and the index in `frame.objects` of each label's object."""
    from jaxlab.lidarfirst import camera

    objs = frame.objects
    if len(objs) == 0:
        return [], np.zeros(0, np.int64)
    h, w = frame.image.shape[:2]
    boxes, trunc, ok = camera.project_boxes_np(simulator.box_corners(objs.center, objs.size, objs.yaw),
                                               simulator.velo_to_image_matrix(frame.calib), w, h)
    tr = frame.calib["Tr_velo_to_cam"]
    labels, index = [], []
    for k in range(len(objs)):
        visible = int((frame.image_instances == k + 1).sum())
        if not ok[k] or visible == 0:
            continue
        index.append(k)
        area = max((boxes[k, 2] - boxes[k, 0] + 1) * (boxes[k, 3] - boxes[k, 1] + 1), 1.0)
        frac = visible / area
        occ = 0 if frac > 0.6 else 1 if frac > 0.3 else 2
        bottom = objs.center[k] - np.array([0.0, 0.0, objs.size[k, 2] / 2.0])
        loc = tr[:, :3] @ bottom + tr[:, 3]
        ry = float(np.arctan2(np.sin(-objs.yaw[k] - np.pi / 2), np.cos(-objs.yaw[k] - np.pi / 2)))
        alpha = ry - np.arctan2(loc[0], loc[2])
        alpha = float(np.arctan2(np.sin(alpha), np.cos(alpha)))
        l_, w_, h_ = objs.size[k]
        labels.append(Label(simulator.KITTI_TYPES[int(objs.cls[k])], float(min(trunc[k], 1.0)), occ, alpha,
                            tuple(float(x) for x in boxes[k]), (h_, w_, l_), tuple(loc), ry))
    return labels, np.array(index, np.int64)


def write_frame(root: str | pathlib.Path, name: str, frame: Frame) -> None:
    """Writes one frame in the KITTI object layout under `root` (plus `jaxlab_objects/`)."""
    from PIL import Image

    root = pathlib.Path(root)
    for d in ("velodyne", "calib", "label_2", "image_2", "jaxlab_objects"):
        (root / d).mkdir(parents=True, exist_ok=True)
    frame.points.astype("<f4").tofile(root / "velodyne" / f"{name}.bin")
    write_calib(root / "calib" / f"{name}.txt", frame.calib)
    write_labels(root / "label_2" / f"{name}.txt", frame_labels(frame))
    Image.fromarray(frame.image).save(root / "image_2" / f"{name}.png")
    o = frame.objects
    rows = [f"ego {frame.ego_velocity[0]:.9g} {frame.ego_velocity[1]:.9g}\n"]
    for k in range(len(o)):
        rows.append(f"{int(o.cls[k])} " + " ".join(f"{x:.9g}" for x in (*o.center[k], *o.size[k], o.yaw[k],
                                                                         *o.velocity[k])) + "\n")
    (root / "jaxlab_objects" / f"{name}.txt").write_text("".join(rows))


@dataclasses.dataclass
class KittiFrame:
    """A frame read back from a KITTI folder (objects/ego velocity from `jaxlab_objects/` or None)."""

    name: str
    points: np.ndarray
    calib: dict
    labels: list[Label]
    image: np.ndarray
    objects: simulator.Objects | None
    ego_velocity: np.ndarray


def read_frame(root: str | pathlib.Path, name: str) -> KittiFrame:
    root = pathlib.Path(root)
    for d, ext in (("calib", "txt"), ("label_2", "txt"), ("image_2", "png")):
        if not (root / d / f"{name}.{ext}").exists():
            raise DataFormatError(f"{root / d / f'{name}.{ext}'}: missing (frame {name} has a velodyne file)")
    objs, ego = None, np.zeros(2)
    extra = root / "jaxlab_objects" / f"{name}.txt"
    if extra.exists():
        objs, ego = read_objects(extra)
    return KittiFrame(name, read_velodyne(root / "velodyne" / f"{name}.bin"),
                      read_calib(root / "calib" / f"{name}.txt"),
                      read_labels(root / "label_2" / f"{name}.txt"), read_image(root / "image_2" / f"{name}.png"),
                      objs, ego)
