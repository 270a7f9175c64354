"""Waymo Open Dataset v1 segments: TFRecord framing, the Frame subset the range-image path and
the FRONT camera need, and Waymo's range-image-to-points and camera conventions (no TensorFlow,
no compiled protos).

Record framing: u64 length (LE), u32 masked CRC32C(length bytes), payload, u32 masked
CRC32C(payload); mask(c) = ((c >> 15) | (c << 17)) + 0xa282ead8 (mod 2^32).

Protobuf fields read (numbers from `dataset.proto` and `label.proto`):
  Frame: context 1, timestamp_micros 2, pose 3 (Transform), images 4, lasers 5, camera_labels 8.
  Context: camera_calibrations 2, laser_calibrations 3.  LaserCalibration: name 1, beam_inclinations 2
  (repeated double, packed or not), beam_inclination_min 3, beam_inclination_max 4, extrinsic 5 (Transform).
  CameraCalibration: name 1, intrinsic 2 (repeated double [f_u, f_v, c_u, c_v, k1, k2, p1, p2, k3]),
  extrinsic 3 (Transform, camera -> vehicle), width 4, height 5 (rolling_shutter_direction 6 not read).
  Transform: transform 1 (16 doubles, row-major, packed or not).
  CameraImage: name 1, image 2 (JPEG bytes); pose 3, velocity 4, pose_timestamp 5, shutter 6,
  camera_trigger_time 7, camera_readout_done_time 8 not read.
  CameraLabels: name 1, labels 2 (Label).  Label: box 1 (Box), metadata 2 (not read), type 3 (UNKNOWN 0,
  VEHICLE 1, PEDESTRIAN 2, SIGN 3, CYCLIST 4), id 4 (string).  Box: center_x 1, center_y 2, center_z 3,
  width 4, length 5, height 6, heading 7 (doubles; note width 4 before length 5). A camera label's box
  is 2-D, in pixels: center_x, center_y, length = x (column) extent, width = y (row) extent.
  Laser: name 1, ri_return1 2, ri_return2 3.  RangeImage: range_image_compressed 2,
  range_image_pose_compressed 4 = zlib(MatrixFloat).  MatrixFloat: data 1 (packed float),
  shape 2 (MatrixShape: dims 1, repeated int32).
Lasers: TOP 1, FRONT 2, SIDE_LEFT 3, SIDE_RIGHT 4, REAR 5.
Cameras: FRONT 1, FRONT_LEFT 2, FRONT_RIGHT 3, SIDE_LEFT 4, SIDE_RIGHT 5.

Range image to points (`range_image_utils.py`): row inclinations = reversed(beam_inclinations)
(row 0 the highest beam; empty -> min + (i + 0.5)(max - min)/H, i ascending, then reversed);
azimuth of column j = (2 (W - j - 0.5) / W - 1) pi - atan2(E[1,0], E[0,0]); sensor point
r (cos az cos inc, sin az cos inc, sin inc); vehicle point E p; with the TOP laser's per-pixel
pose [roll, pitch, yaw, x, y, z]: inv(frame.pose) T_pixel E p with T_pixel rotation
Rz(yaw) Ry(pitch) Rx(roll). A pixel is a return iff its range > 0 (no return is -1).

Camera (`camera_calib`): the camera frame is x forward, y left, z up; a vehicle point X maps to
the optical frame (x right, y down, z forward) as A inv(extrinsic) X, A = [[0,-1,0],[0,0,-1],[1,0,0]],
then u = f_u x / z + c_u, v = f_v y / z + c_v. Lens distortion (k1, k2, p1, p2, k3) is ignored: the
calibration is a pinhole. Pixel coordinates (of the intrinsics and of the camera labels) are used as
stored, so boxes and projections share one convention.
"""

from __future__ import annotations

import dataclasses
import io
import pathlib
import struct
import zlib

import numpy as np

from jaxlab.core.errors import DataFormatError

TOP, FRONT, SIDE_LEFT, SIDE_RIGHT, REAR = 1, 2, 3, 4, 5
CAMERA_FRONT, CAMERA_FRONT_LEFT, CAMERA_FRONT_RIGHT, CAMERA_SIDE_LEFT, CAMERA_SIDE_RIGHT = 1, 2, 3, 4, 5
TYPE_UNKNOWN, TYPE_VEHICLE, TYPE_PEDESTRIAN, TYPE_SIGN, TYPE_CYCLIST = 0, 1, 2, 3, 4
CLASS_OF_TYPE = {TYPE_VEHICLE: 1, TYPE_PEDESTRIAN: 2, TYPE_CYCLIST: 3}  # the pipeline's classes; others dropped
TYPE_OF_KITTI = {"Car": TYPE_VEHICLE, "Van": TYPE_VEHICLE, "Truck": TYPE_VEHICLE, "Pedestrian": TYPE_PEDESTRIAN,
                 "Person_sitting": TYPE_PEDESTRIAN, "Cyclist": TYPE_CYCLIST}
# Waymo camera frame (x forward, y left, z up) -> optical frame (x right, y down, z forward).
CAMERA_AXES = np.array([[0.0, -1.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]])
_MASK_DELTA = 0xA282EAD8


def _crc_table() -> list[int]:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_TABLE = _crc_table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), as TFRecord uses."""
    c = 0xFFFFFFFF
    for b in data:
        c = _TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def masked_crc(data: bytes) -> int:
    c = crc32c(data)
    return (((c >> 15) | (c << 17)) + _MASK_DELTA) & 0xFFFFFFFF


# ----------------------------------------------------------------------------- TFRecord


def write_records(path: str | pathlib.Path, payloads) -> None:
    with open(path, "wb") as f:
        for p in payloads:
            head = struct.pack("<Q", len(p))
            f.write(head + struct.pack("<I", masked_crc(head)) + p + struct.pack("<I", masked_crc(p)))


def read_records(path: str | pathlib.Path, check_crc: bool = True):
    """Yields the payloads of a TFRecord file; a short or corrupt record raises `DataFormatError`."""
    path = pathlib.Path(path)
    raw = path.read_bytes()
    pos, k = 0, 0
    while pos < len(raw):
        if pos + 12 > len(raw):
            raise DataFormatError(f"{path}: record {k} at byte {pos}: expected a 12-byte header, file ends")
        (n,), (hc,) = struct.unpack_from("<Q", raw, pos), struct.unpack_from("<I", raw, pos + 8)
        if check_crc and masked_crc(raw[pos:pos + 8]) != hc:
            raise DataFormatError(f"{path}: record {k} at byte {pos}: length CRC mismatch (not a TFRecord file?)")
        if pos + 12 + n + 4 > len(raw):
            raise DataFormatError(f"{path}: record {k} at byte {pos}: length {n} runs past the end of the file")
        payload = raw[pos + 12:pos + 12 + n]
        (pc,) = struct.unpack_from("<I", raw, pos + 12 + n)
        if check_crc and masked_crc(payload) != pc:
            raise DataFormatError(f"{path}: record {k} at byte {pos}: payload CRC mismatch (corrupt record)")
        yield payload
        pos, k = pos + 16 + n, k + 1


# ----------------------------------------------------------------------------- protobuf wire format


def _varint(buf: bytes, pos: int, where: str) -> tuple[int, int]:
    out = shift = 0
    while True:
        if pos >= len(buf):
            raise DataFormatError(f"{where}: truncated varint")
        b = buf[pos]
        out |= (b & 0x7F) << shift
        pos, shift = pos + 1, shift + 7
        if not b & 0x80:
            return out, pos


def parse(buf: bytes, where: str) -> dict[int, list]:
    """Fields of one message: `{number: [(wire_type, value), ...]}` (value int, or bytes for wire types 1, 2, 5)."""
    fields: dict[int, list] = {}
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos, where)
        num, wt = key >> 3, key & 7
        if wt == 0:
            val, pos = _varint(buf, pos, where)
        elif wt in (1, 5):
            size = 8 if wt == 1 else 4
            if pos + size > len(buf):
                raise DataFormatError(f"{where}: field {num}: truncated fixed-size value")
            val, pos = buf[pos:pos + size], pos + size
        elif wt == 2:
            n, pos = _varint(buf, pos, where)
            if pos + n > len(buf):
                raise DataFormatError(f"{where}: field {num}: length {n} runs past the message end")
            val, pos = buf[pos:pos + n], pos + n
        else:
            raise DataFormatError(f"{where}: field {num}: unsupported wire type {wt}")
        fields.setdefault(num, []).append((wt, val))
    return fields


def _doubles(fields: dict, num: int, where: str) -> np.ndarray:
    """A repeated double field, packed (wire type 2) or not (wire type 1), in order."""
    out = []
    for wt, v in fields.get(num, []):
        if wt == 2 and len(v) % 8 == 0:
            out.extend(struct.unpack(f"<{len(v) // 8}d", v))
        elif wt == 1:
            out.append(struct.unpack("<d", v)[0])
        else:
            raise DataFormatError(f"{where}: field {num}: expected doubles, got wire type {wt} of {len(v)} bytes")
    return np.array(out, np.float64)


def _message(fields: dict, num: int, where: str) -> bytes | None:
    vals = fields.get(num, [])
    if not vals:
        return None
    wt, v = vals[-1]
    if wt != 2:
        raise DataFormatError(f"{where}: field {num}: expected a message, got wire type {wt}")
    return v


def _messages(fields: dict, num: int, where: str) -> list[bytes]:
    """A repeated message field, in order."""
    out = []
    for wt, v in fields.get(num, []):
        if wt != 2:
            raise DataFormatError(f"{where}: field {num}: expected a message, got wire type {wt}")
        out.append(v)
    return out


def _int(fields: dict, num: int, default: int = 0) -> int:
    vals = fields.get(num, [])
    return int(vals[-1][1]) if vals and vals[-1][0] == 0 else default


def _double(fields: dict, num: int, where: str, default: float = 0.0) -> float:
    vals = fields.get(num, [])
    if not vals:
        return default
    wt, v = vals[-1]
    if wt != 1:
        raise DataFormatError(f"{where}: field {num}: expected a double (wire type 1), got wire type {wt}")
    return struct.unpack("<d", v)[0]


def _transform(buf: bytes | None, where: str) -> np.ndarray:
    if buf is None:
        return np.eye(4)
    t = _doubles(parse(buf, where), 1, where)
    if t.size != 16:
        raise DataFormatError(f"{where}: transform: expected 16 doubles (row-major 4x4), got {t.size}")
    return t.reshape(4, 4)


def decode_matrix_float(compressed: bytes, where: str, channels: int) -> np.ndarray:
    """A zlib-compressed MatrixFloat `[H, W, channels]`."""
    try:
        raw = zlib.decompress(compressed)
    except zlib.error as e:
        raise DataFormatError(f"{where}: not zlib data ({e})") from e
    f = parse(raw, where)
    data = b"".join(v if wt == 2 else b"" for wt, v in f.get(1, []))
    unpacked = [v for wt, v in f.get(1, []) if wt == 5]
    values = np.frombuffer(data, "<f4") if data else np.frombuffer(b"".join(unpacked), "<f4")
    shape_msg = _message(f, 2, where)
    dims = []
    if shape_msg is not None:
        for wt, v in parse(shape_msg, where + " shape").get(1, []):
            if wt == 0:
                dims.append(int(v))
            else:  # packed int32
                p = 0
                while p < len(v):
                    d, p = _varint(v, p, where)
                    dims.append(d)
    if len(dims) != 3 or dims[2] != channels:
        raise DataFormatError(f"{where}: shape: expected [H, W, {channels}], got {dims}")
    if values.size != np.prod(dims):
        raise DataFormatError(f"{where}: data: {values.size} floats for shape {dims} ({int(np.prod(dims))} expected)")
    return values.reshape(dims).astype(np.float32)


@dataclasses.dataclass
class LaserCalibration:
    name: int
    beam_inclinations: np.ndarray  # [H] ascending as stored, or empty
    inclination_min: float
    inclination_max: float
    extrinsic: np.ndarray  # [4, 4] laser -> vehicle


@dataclasses.dataclass
class CameraCalibration:
    name: int
    intrinsic: np.ndarray  # [9] f_u, f_v, c_u, c_v, k1, k2, p1, p2, k3
    extrinsic: np.ndarray  # [4, 4] camera (x forward, y left, z up) -> vehicle
    width: int  # image size (px); 0 when not stored
    height: int


@dataclasses.dataclass
class Label:
    """One `Label`; for a camera label the box is 2-D: center_x, center_y (px), length = x extent,
    width = y extent (px), the rest 0."""

    box: np.ndarray  # [7] center_x, center_y, center_z, length, width, height, heading
    type: int  # TYPE_*
    id: str = ""


@dataclasses.dataclass
class WaymoFrame:
    """The range-image and camera subset of a Waymo v1 Frame."""

    timestamp_micros: int
    pose: np.ndarray  # [4, 4] vehicle -> global
    calibrations: dict[int, LaserCalibration]
    range_images: dict[int, np.ndarray]  # laser -> first return [H, W, 4] (range, intensity, elongation, in-NLZ)
    range_image_poses: dict[int, np.ndarray]  # laser -> [H, W, 6] (TOP only)
    camera_calibrations: dict[int, CameraCalibration] = dataclasses.field(default_factory=dict)
    images: dict[int, bytes] = dataclasses.field(default_factory=dict)  # camera -> JPEG bytes (`camera_image`)
    camera_labels: dict[int, list[Label]] = dataclasses.field(default_factory=dict)  # camera -> labels
    source: str = ""  # "FILE: record K" of a frame read from a file (error messages)


def _camera_calibration(buf: bytes, where: str) -> CameraCalibration:
    c = parse(buf, where)
    name = _int(c, 1)
    w = f"{where}[name={name}]"
    intrinsic = _doubles(c, 2, w + ".intrinsic")
    if intrinsic.size != 9:
        raise DataFormatError(f"{w}.intrinsic: expected 9 doubles [f_u, f_v, c_u, c_v, k1, k2, p1, p2, k3], "
                              f"got {intrinsic.size}")
    if not (intrinsic[0] > 0 and intrinsic[1] > 0):
        raise DataFormatError(f"{w}.intrinsic: expected focal lengths f_u, f_v > 0, got {intrinsic[:2].tolist()}")
    return CameraCalibration(name, intrinsic, _transform(_message(c, 3, w), w + ".extrinsic"), _int(c, 4), _int(c, 5))


def _label(buf: bytes, where: str) -> Label:
    f = parse(buf, where)
    box = np.zeros(7)
    b = _message(f, 1, where)
    if b is not None:
        bf = parse(b, where + ".box")
        box = np.array([_double(bf, n, where + ".box") for n in (1, 2, 3, 5, 4, 6, 7)])
    ident = _message(f, 4, where)
    return Label(box, _int(f, 3), ident.decode("utf-8", "replace") if ident is not None else "")


def decode_frame(payload: bytes, where: str) -> WaymoFrame:
    f = parse(payload, where)
    ctx = _message(f, 1, where)
    cals, cams = {}, {}
    if ctx is not None:
        ctx_fields = parse(ctx, where + " context")
        for v in _messages(ctx_fields, 2, where + " context"):
            cam = _camera_calibration(v, f"{where} context.camera_calibrations")
            cams[cam.name] = cam
        for v in _messages(ctx_fields, 3, where + " context"):
            w = f"{where} context.laser_calibrations"
            c = parse(v, w)
            b = c.get(3, [(1, struct.pack("<d", 0.0))])[-1][1]
            e = c.get(4, [(1, struct.pack("<d", 0.0))])[-1][1]
            cals[_int(c, 1)] = LaserCalibration(_int(c, 1), _doubles(c, 2, w + ".beam_inclinations"),
                                                struct.unpack("<d", b)[0], struct.unpack("<d", e)[0],
                                                _transform(_message(c, 5, w), w + ".extrinsic"))
    images, poses = {}, {}
    for _wt, v in f.get(5, []):
        w = f"{where} lasers"
        laser = parse(v, w)
        name = _int(laser, 1)
        ri = _message(laser, 2, w)
        if ri is None:
            continue
        r = parse(ri, f"{w}[{name}].ri_return1")
        comp = _message(r, 2, f"{w}[{name}].ri_return1")
        if comp is not None:
            images[name] = decode_matrix_float(comp, f"{w}[{name}].ri_return1.range_image_compressed", 4)
        pc = _message(r, 4, f"{w}[{name}].ri_return1")
        if pc is not None:
            poses[name] = decode_matrix_float(pc, f"{w}[{name}].ri_return1.range_image_pose_compressed", 6)
    for name, img in images.items():
        if name not in cals:
            raise DataFormatError(f"{where}: laser {name} has a range image but no laser calibration")
        cal = cals[name]
        if cal.beam_inclinations.size not in (0, img.shape[0]):
            raise DataFormatError(f"{where}: laser {name}: {cal.beam_inclinations.size} beam inclinations for "
                                  f"{img.shape[0]} range-image rows")
    jpegs, labels = {}, {}
    for i, v in enumerate(_messages(f, 4, where)):
        w = f"{where} images[{i}]"
        im = parse(v, w)
        jpegs[_int(im, 1)] = _message(im, 2, w) or b""
    for i, v in enumerate(_messages(f, 8, where)):
        w = f"{where} camera_labels[{i}]"
        cl = parse(v, w)
        labels[_int(cl, 1)] = [_label(x, f"{w}.labels[{j}]") for j, x in enumerate(_messages(cl, 2, w))]
    return WaymoFrame(_int(f, 2), _transform(_message(f, 3, where), where + " pose"), cals, images, poses,
                      cams, jpegs, labels, where)


def read_frames(path: str | pathlib.Path):
    """Yields the `WaymoFrame`s of a segment file (TFRecord of Frame protos); camera images stay
    JPEG bytes until `camera_image` decodes one."""
    for k, payload in enumerate(read_records(path)):
        yield decode_frame(payload, f"{path}: record {k}")


# ----------------------------------------------------------------------------- conventions


def row_inclinations(cal: LaserCalibration, height: int) -> np.ndarray:
    """Inclination of each range-image row `[H]` (row 0 the highest)."""
    inc = cal.beam_inclinations
    if inc.size == 0:
        inc = cal.inclination_min + (np.arange(height) + 0.5) * (cal.inclination_max - cal.inclination_min) / height
    return inc[::-1].copy()


def column_azimuths(width: int, extrinsic: np.ndarray) -> np.ndarray:
    """Sensor-frame azimuth of each column `[W]`."""
    ratios = (width - np.arange(width) - 0.5) / width
    return (2.0 * ratios - 1.0) * np.pi - np.arctan2(extrinsic[1, 0], extrinsic[0, 0])


def _rotation(roll, pitch, yaw) -> np.ndarray:
    cr, sr, cp, sp, cy, sy = np.cos(roll), np.sin(roll), np.cos(pitch), np.sin(pitch), np.cos(yaw), np.sin(yaw)
    return np.stack([np.stack([cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr], -1),
                     np.stack([sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr], -1),
                     np.stack([-sp, cp * sr, cp * cr], -1)], -2)


def range_image_to_points(ranges: np.ndarray, inclinations: np.ndarray, extrinsic: np.ndarray,
                          pixel_pose: np.ndarray | None = None, frame_pose: np.ndarray | None = None):
    """Vehicle-frame points `[H, W, 3]` and the return mask `[H, W]` (range > 0) of a range image."""
    h, w = ranges.shape
    az = column_azimuths(w, extrinsic)[None, :]
    inc = inclinations[:, None]
    r = np.where(ranges > 0, ranges, 0.0).astype(np.float64)
    p = np.stack([r * np.cos(az) * np.cos(inc), r * np.sin(az) * np.cos(inc), r * np.sin(inc) + 0 * az], -1)
    p = p @ extrinsic[:3, :3].T + extrinsic[:3, 3]
    if pixel_pose is not None:
        rot = _rotation(pixel_pose[..., 0], pixel_pose[..., 1], pixel_pose[..., 2])
        p = np.einsum("hwij,hwj->hwi", rot, p) + pixel_pose[..., 3:6]
        inv = np.linalg.inv(np.eye(4) if frame_pose is None else frame_pose)
        p = p @ inv[:3, :3].T + inv[:3, 3]
    return p, ranges > 0


def frame_points(frame: WaymoFrame, laser: int = TOP) -> tuple[np.ndarray, np.ndarray]:
    """Vehicle-frame points `[H, W, 3]` and return mask of one laser's first return."""
    if laser not in frame.range_images:
        raise DataFormatError(f"frame {frame.timestamp_micros}: no range image of laser {laser}")
    img, cal = frame.range_images[laser], frame.calibrations[laser]
    return range_image_to_points(img[..., 0], row_inclinations(cal, img.shape[0]), cal.extrinsic,
                                 frame.range_image_poses.get(laser), frame.pose)


def camera_image(frame: WaymoFrame, name: int = CAMERA_FRONT) -> np.ndarray:
    """The decoded image `[h, w, 3]` uint8 of one camera.

    Args:
      frame: a frame with `images[name]` (JPEG bytes).
      name: the camera (CAMERA_*).
    Returns:
      The RGB image; a missing, undecodable or truncated image, or one whose size differs from
      its camera calibration's width/height, raises `DataFormatError` naming the record.
    """
    from PIL import Image, UnidentifiedImageError

    where = f"{frame.source or f'frame {frame.timestamp_micros}'}: images[name={name}].image"
    if name not in frame.images:
        raise DataFormatError(f"{where}: the frame has no image of camera {name}")
    try:
        with Image.open(io.BytesIO(frame.images[name])) as im:
            img = np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise DataFormatError(f"{where}: not a readable JPEG image ({e})") from e
    cal = frame.camera_calibrations.get(name)
    if cal is not None and cal.width and cal.height and (cal.width, cal.height) != (img.shape[1], img.shape[0]):
        raise DataFormatError(f"{where}: the image is {img.shape[1]}x{img.shape[0]} px, its camera calibration "
                              f"says {cal.width}x{cal.height}")
    return img


def camera_calib(cam: CameraCalibration) -> dict:
    """The KITTI-style calibration of a camera for vehicle-frame points (x forward, y left, z up).

    Args:
      cam: the camera's calibration.
    Returns:
      `{"P2": [3, 4], "R0_rect": I [3, 3], "Tr_velo_to_cam": [3, 4]}` with Tr = A inv(extrinsic)[:3]
      (A = `CAMERA_AXES`, Waymo camera frame -> optical frame) and P2 = [[f_u, 0, c_u, 0],
      [0, f_v, c_v, 0], [0, 0, 1, 0]], so a vehicle point X lies at pixel P2 R0_rect Tr [X; 1]
      (homogeneous). The lens distortion k1, k2, p1, p2, k3 is ignored (pinhole model).
    """
    f_u, f_v, c_u, c_v = (float(v) for v in cam.intrinsic[:4])
    p2 = np.array([[f_u, 0.0, c_u, 0.0], [0.0, f_v, c_v, 0.0], [0.0, 0.0, 1.0, 0.0]])
    return {"P2": p2, "R0_rect": np.eye(3), "Tr_velo_to_cam": CAMERA_AXES @ np.linalg.inv(cam.extrinsic)[:3]}


def camera_from_kitti(calib: dict, width: int, height: int, extrinsic: np.ndarray | None = None,
                      name: int = CAMERA_FRONT) -> CameraCalibration:
    """The Waymo calibration of KITTI's camera 2 (the inverse of `camera_calib`).

    Args:
      calib: KITTI calibration (P2 = K [I | b], R0_rect, Tr_velo_to_cam) of LiDAR-frame points.
      width, height: the image size (px).
      extrinsic: `[4, 4]` LiDAR -> vehicle (identity if None).
      name: the camera name to store.
    Returns:
      The `CameraCalibration` (no distortion) whose `camera_calib` maps vehicle points to the same
      pixels as P2 R0_rect Tr_velo_to_cam maps the LiDAR points.
    """
    p2 = np.asarray(calib["P2"], np.float64)
    k = p2[:, :3]
    if abs(k[0, 1]) > 1e-9 or np.abs(k[1:, 0]).max() > 1e-9 or np.abs(k[2] - [0.0, 0.0, 1.0]).max() > 1e-9:
        raise ValueError(f"P2[:, :3] must be [[f_u, 0, c_u], [0, f_v, c_v], [0, 0, 1]], got {k.tolist()}")
    b = np.linalg.solve(k, p2[:, 3])
    tr = np.asarray(calib["Tr_velo_to_cam"], np.float64)
    r0 = np.asarray(calib["R0_rect"], np.float64)
    rot, t = r0 @ tr[:, :3], r0 @ tr[:, 3] + b  # optical = rot p + t
    cam_to_lidar = np.eye(4)
    cam_to_lidar[:3, :3], cam_to_lidar[:3, 3] = rot.T @ CAMERA_AXES, -rot.T @ t
    e = np.eye(4) if extrinsic is None else np.asarray(extrinsic, np.float64)
    intrinsic = np.array([k[0, 0], k[1, 1], k[0, 2], k[1, 2], 0.0, 0.0, 0.0, 0.0, 0.0])
    return CameraCalibration(name, intrinsic, e @ cam_to_lidar, int(width), int(height))


# ----------------------------------------------------------------------------- writer


def _key(num: int, wt: int) -> bytes:
    return _enc_varint((num << 3) | wt)


def _enc_varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _len_field(num: int, payload: bytes) -> bytes:
    return _key(num, 2) + _enc_varint(len(payload)) + payload


def _packed_doubles(num: int, values) -> bytes:
    v = np.asarray(values, np.float64).ravel()
    return _len_field(num, struct.pack(f"<{v.size}d", *v)) if v.size else b""


def _matrix_float(array: np.ndarray) -> bytes:
    a = np.asarray(array, "<f4")
    shape = b"".join(_key(1, 0) + _enc_varint(d) for d in a.shape)
    return zlib.compress(_len_field(1, a.tobytes()) + _len_field(2, shape))


def _double_field(num: int, value: float) -> bytes:
    return _key(num, 1) + struct.pack("<d", float(value))


def encode_jpeg(image: np.ndarray, quality: int = 95) -> bytes:
    """JPEG bytes of an `[h, w, 3]` uint8 image (as `CameraImage.image`)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.asarray(image, np.uint8)).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def encode_frame(frame: WaymoFrame) -> bytes:
    """The Frame proto bytes of `frame` (the same subset `decode_frame` reads)."""
    cals = b""
    for c in frame.camera_calibrations.values():
        body = (_key(1, 0) + _enc_varint(c.name) + _packed_doubles(2, c.intrinsic)
                + _len_field(3, _packed_doubles(1, c.extrinsic)) + _key(4, 0) + _enc_varint(c.width)
                + _key(5, 0) + _enc_varint(c.height))
        cals += _len_field(2, body)
    for c in frame.calibrations.values():
        body = (_key(1, 0) + _enc_varint(c.name) + _packed_doubles(2, c.beam_inclinations)
                + _key(3, 1) + struct.pack("<d", c.inclination_min) + _key(4, 1) + struct.pack("<d", c.inclination_max)
                + _len_field(5, _packed_doubles(1, c.extrinsic)))
        cals += _len_field(3, body)
    lasers = b""
    for name, img in frame.range_images.items():
        ri = _len_field(2, _matrix_float(img))
        if name in frame.range_image_poses:
            ri += _len_field(4, _matrix_float(frame.range_image_poses[name]))
        lasers += _len_field(5, _key(1, 0) + _enc_varint(name) + _len_field(2, ri))
    images = b"".join(_len_field(4, _key(1, 0) + _enc_varint(name) + _len_field(2, jpeg))
                      for name, jpeg in frame.images.items())
    labels = b""
    for name, labs in frame.camera_labels.items():
        body = _key(1, 0) + _enc_varint(name)
        for lb in labs:
            box = b"".join(_double_field(n, v) for n, v in zip((1, 2, 3, 5, 4, 6, 7), lb.box, strict=True))
            body += _len_field(2, _len_field(1, box) + _key(3, 0) + _enc_varint(lb.type)
                               + _len_field(4, lb.id.encode("utf-8")))
        labels += _len_field(8, body)
    return (_len_field(1, cals) + _key(2, 0) + _enc_varint(frame.timestamp_micros)
            + _len_field(3, _packed_doubles(1, frame.pose)) + images + lasers + labels)


def write_frames(path: str | pathlib.Path, frames) -> None:
    """Writes a segment file (TFRecord of Frame protos)."""
    write_records(path, [encode_frame(f) for f in frames])


def from_simulation(frame, extrinsic: np.ndarray, timestamp_micros: int = 0, camera: bool = True,
                    jpeg_quality: int = 95) -> WaymoFrame:
    """A simulated scan as a Waymo frame whose TOP laser -> vehicle transform is `extrinsic`.

    The simulator's columns are sensor azimuths pi (1 - 2 (c + 0.5) / W); a Waymo column j looks
    at sensor azimuth pi (1 - 2 (j + 0.5) / W) - yaw, so the extrinsic's yaw must be a whole number
    s of columns (2 pi s / W) and Waymo column j is simulator column (j + s) mod W.

    With `camera`, the simulator's camera becomes the FRONT camera: its calibration
    (`camera_from_kitti`, rigidly attached to the laser), its image JPEG-encoded, and its
    ground-truth boxes (`data.labelled_objects`) as camera labels (ids = object index).
    """
    h, w = frame.range_image.shape
    yaw = float(np.arctan2(extrinsic[1, 0], extrinsic[0, 0]))
    s = yaw * w / (2 * np.pi)
    if abs(s - round(s)) > 1e-6:
        raise ValueError(f"extrinsic yaw {np.rad2deg(yaw):.4f} deg is not a whole number of columns of 360/{w} deg")
    ranges = np.roll(frame.range_image, -int(round(s)), axis=1)
    intensity = np.zeros((h, w), np.float32)
    intensity[frame.range_image > 0] = frame.points[:, 3]  # the points are the returns in row-major order
    img = np.zeros((h, w, 4), np.float32)
    img[..., 0] = np.where(ranges > 0, ranges, -1.0)
    img[..., 1] = np.roll(intensity, -int(round(s)), axis=1)
    inc = np.asarray(frame.inclinations, np.float64)[::-1]
    cal = LaserCalibration(TOP, inc, float(inc[0]), float(inc[-1]), np.asarray(extrinsic, np.float64))
    out = WaymoFrame(timestamp_micros, np.eye(4), {TOP: cal}, {TOP: img}, {})
    if camera:
        from jaxlab.lidarfirst import data

        ih, iw = frame.image.shape[:2]
        out.camera_calibrations[CAMERA_FRONT] = camera_from_kitti(frame.calib, iw, ih, extrinsic)
        out.images[CAMERA_FRONT] = encode_jpeg(frame.image, jpeg_quality)
        labels, index = data.labelled_objects(frame)
        out.camera_labels[CAMERA_FRONT] = [
            Label(np.array([(lb.bbox[0] + lb.bbox[2]) / 2, (lb.bbox[1] + lb.bbox[3]) / 2, 0.0,
                            lb.bbox[2] - lb.bbox[0], lb.bbox[3] - lb.bbox[1], 0.0, 0.0]),
                  TYPE_OF_KITTI[lb.type], str(int(k))) for lb, k in zip(labels, index, strict=True)]
    return out
