import struct
import zlib

import numpy as np
import pytest

from jaxlab.core.errors import DataFormatError
from jaxlab.lidarfirst import configs, simulator, waymo


def _key(num, wt):
    return bytes([(num << 3) | wt])  # field numbers < 16: one byte


def _vint(n):
    out = b""
    while True:
        out += bytes([(n & 0x7F) | (0x80 if n >> 7 else 0)])
        n >>= 7
        if not n:
            return out


def _ld(num, payload):
    return _key(num, 2) + _vint(len(payload)) + payload


def _record(payload):
    head = struct.pack("<Q", len(payload))
    return head + struct.pack("<I", waymo.masked_crc(head)) + payload + struct.pack("<I", waymo.masked_crc(payload))


def _rot_z(a):
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _hand_frame(ranges, inclinations_ascending, extrinsic, packed_inclinations=False):
    """Frame bytes assembled here field by field (unpacked doubles unless asked), not by waymo.encode_frame."""
    if packed_inclinations:
        inc = _ld(2, struct.pack(f"<{len(inclinations_ascending)}d", *inclinations_ascending))
    else:
        inc = b"".join(_key(2, 1) + struct.pack("<d", v) for v in inclinations_ascending)
    ext = _ld(5, b"".join(_key(1, 1) + struct.pack("<d", v) for v in extrinsic.ravel()))
    cal = (_key(1, 0) + _vint(1) + inc + _key(3, 1) + struct.pack("<d", -0.3) + _key(4, 1) + struct.pack("<d", 0.05)
           + ext)
    h, w = ranges.shape
    data = np.zeros((h, w, 4), "<f4")
    data[..., 0] = ranges
    mat = _ld(1, data.tobytes()) + _ld(2, _key(1, 0) + _vint(h) + _key(1, 0) + _vint(w) + _key(1, 0) + _vint(4))
    laser = _key(1, 0) + _vint(1) + _ld(2, _ld(2, zlib.compress(mat)))
    return _ld(1, _ld(3, cal)) + _key(2, 0) + _vint(1234) + _ld(5, laser)


def test_crc32c_known_value():
    assert waymo.crc32c(b"123456789") == 0xE3069283  # the standard CRC-32C check value
    assert waymo.crc32c(b"") == 0


@pytest.mark.parametrize("packed", [False, True])
def test_hand_written_frame_decodes_to_the_analytic_points(tmp_path, packed):
    rng = np.random.default_rng(0)
    h, w = 4, 6
    ranges = rng.uniform(2.0, 70.0, (h, w)).astype(np.float32)
    ranges[1, 2] = ranges[3, 0] = -1.0
    inc_asc = np.array([-0.30, -0.12, -0.02, 0.04])  # non-uniform, stored ascending
    e = np.eye(4)
    e[:3, :3], e[:3, 3] = _rot_z(np.deg2rad(148.0)), (1.43, 0.0, 2.184)
    path = tmp_path / "segment.tfrecord"
    path.write_bytes(_record(_hand_frame(ranges, inc_asc, e, packed)))
    (frame,) = list(waymo.read_frames(path))
    assert frame.timestamp_micros == 1234
    pts, valid = waymo.frame_points(frame)
    np.testing.assert_array_equal(valid, ranges > 0)
    for i in range(h):
        for j in range(w):
            if ranges[i, j] <= 0:
                continue
            inc = inc_asc[h - 1 - i]  # rows run from the highest beam down
            az = np.pi * (1 - 2 * (j + 0.5) / w)  # vehicle-frame azimuth (the extrinsic's yaw cancels)
            want = ranges[i, j] * np.array([np.cos(az) * np.cos(inc), np.sin(az) * np.cos(inc), np.sin(inc)])
            np.testing.assert_allclose(pts[i, j], want + e[:3, 3], atol=1e-4)


def test_empty_inclinations_are_uniform_between_min_and_max():
    cal = waymo.LaserCalibration(1, np.zeros(0), -0.3, 0.1, np.eye(4))
    np.testing.assert_allclose(waymo.row_inclinations(cal, 4), [0.05, -0.05, -0.15, -0.25])


def test_simulated_scan_round_trip_matches_the_simulator_points(tmp_path):
    cfg = configs.get_config("smoke").scene
    frame = simulator.simulate_frame(3, cfg)
    s = 105  # 105 of 256 columns = 147.7 deg, the TOP laser's yaw
    e = np.eye(4)
    e[:3, :3], e[:3, 3] = _rot_z(2 * np.pi * s / cfg.num_columns), (1.43, 0.0, 2.184)
    wf = waymo.from_simulation(frame, e, 7)
    waymo.write_frames(tmp_path / "seg.tfrecord", [wf, wf])
    frames = list(waymo.read_frames(tmp_path / "seg.tfrecord"))
    assert len(frames) == 2
    pts, valid = waymo.frame_points(frames[1])
    sim = np.zeros(frame.range_image.shape + (3,))
    sim[frame.range_image > 0] = frame.points[:, :3]  # the simulator's points, sensor frame, row-major
    want = np.roll(sim, -s, axis=1) @ e[:3, :3].T + e[:3, 3]
    np.testing.assert_array_equal(valid, np.roll(frame.range_image > 0, -s, axis=1))
    np.testing.assert_allclose(pts[valid], want[valid], atol=1e-4)


def test_per_pixel_pose():
    ranges = np.full((2, 4), 10.0)
    cal_inc = np.array([0.1, -0.1])
    base, _ = waymo.range_image_to_points(ranges, cal_inc, np.eye(4))
    pose = np.zeros((2, 4, 6))
    pose[..., 3] = 1.0  # the vehicle was 1 m further along x when these pixels were measured
    frame_pose = np.eye(4)
    moved, _ = waymo.range_image_to_points(ranges, cal_inc, np.eye(4), pose, frame_pose)
    np.testing.assert_allclose(moved, base + [1.0, 0.0, 0.0], atol=1e-12)
    # a pixel pose equal to the frame pose leaves the points where they are
    pose = np.zeros((2, 4, 6))
    pose[..., 2], pose[..., 3:] = 0.3, (5.0, -2.0, 0.5)
    fp = np.eye(4)
    fp[:3, :3], fp[:3, 3] = _rot_z(0.3), (5.0, -2.0, 0.5)
    same, _ = waymo.range_image_to_points(ranges, cal_inc, np.eye(4), pose, fp)
    np.testing.assert_allclose(same, base, atol=1e-9)


def test_malformed_files_give_clear_errors(tmp_path):
    payload = _hand_frame(np.ones((2, 3), np.float32), np.array([-0.1, 0.1]), np.eye(4))
    good = _record(payload)
    bad = tmp_path / "bad.tfrecord"
    bad.write_bytes(good[:-1] + bytes([good[-1] ^ 1]))
    with pytest.raises(DataFormatError, match=r"bad.tfrecord: record 0 at byte 0: payload CRC"):
        list(waymo.read_frames(bad))
    bad.write_bytes(good + good[:20])
    with pytest.raises(DataFormatError, match="record 1 .*runs past the end"):
        list(waymo.read_frames(bad))
    # 3 beam inclinations for a 2-row range image
    bad.write_bytes(_record(_hand_frame(np.ones((2, 3), np.float32), np.array([-0.1, 0.0, 0.1]), np.eye(4))))
    with pytest.raises(DataFormatError, match="3 beam inclinations for 2 range-image rows"):
        list(waymo.read_frames(bad))
    # a MatrixFloat whose data does not fill its shape
    mat = _ld(1, np.zeros(5, "<f4").tobytes()) + _ld(2, _key(1, 0) + _vint(2) + _key(1, 0) + _vint(3) + _key(1, 0)
                                                     + _vint(4))
    with pytest.raises(DataFormatError, match=r"5 floats for shape \[2, 3, 4\]"):
        waymo.decode_matrix_float(zlib.compress(mat), "x", 4)
