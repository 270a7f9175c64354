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


# ----------------------------------------------------------------------------- FRONT camera


def _d(num, v):
    return _key(num, 1) + struct.pack("<d", v)


def _rot_y(a):
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def test_hand_written_camera_fields_decode(tmp_path):
    """Camera calibration, image and labels assembled field by field (unpacked doubles, the
    proto2 default, and the fields the reader skips), by the numbers of dataset.proto/label.proto."""
    from jaxlab.lidarfirst import waymo as w

    img = np.zeros((6, 8, 3), np.uint8)
    img[:, 4:] = 200
    jpeg = w.encode_jpeg(img)
    e = np.eye(4)
    e[:3, :3], e[:3, 3] = _rot_z(0.02), (1.5, -0.1, 2.1)
    intr = [2000.0, 2001.0, 3.5, 2.5, -0.3, 0.1, 0.001, -0.002, 0.0]
    cam = (_key(1, 0) + _vint(1) + b"".join(_d(2, v) for v in intr) + _ld(3, b"".join(_d(1, v) for v in e.ravel()))
           + _key(4, 0) + _vint(8) + _key(5, 0) + _vint(6) + _key(6, 0) + _vint(2))
    image = _key(1, 0) + _vint(1) + _ld(2, jpeg) + _ld(3, _d(1, 1.0)) + _ld(4, _key(1, 5) + struct.pack("<f", 3.0))
    box = _d(1, 4.0) + _d(2, 3.0) + _d(3, 0.0) + _d(4, 2.0) + _d(5, 6.0) + _d(6, 0.0) + _d(7, 0.0)
    label = _ld(1, box) + _ld(2, _d(1, 9.0)) + _key(3, 0) + _vint(4) + _ld(4, b"obj-7")
    sign = _ld(1, box) + _key(3, 0) + _vint(3) + _ld(4, b"s")
    frame = (_ld(1, _ld(2, cam)) + _key(2, 0) + _vint(55) + _ld(4, image)
             + _ld(8, _key(1, 0) + _vint(1) + _ld(2, label) + _ld(2, sign)))
    path = tmp_path / "cam.tfrecord"
    path.write_bytes(_record(frame))
    (f,) = list(w.read_frames(path))
    c = f.camera_calibrations[w.CAMERA_FRONT]
    np.testing.assert_array_equal(c.intrinsic, intr)
    np.testing.assert_array_equal(c.extrinsic, e)
    assert (c.width, c.height) == (8, 6) and f.source == f"{path}: record 0"
    assert w.camera_image(f).shape == (6, 8, 3)
    lab = f.camera_labels[w.CAMERA_FRONT]
    assert [lb.type for lb in lab] == [w.TYPE_CYCLIST, w.TYPE_SIGN] and lab[0].id == "obj-7"
    np.testing.assert_array_equal(lab[0].box, [4.0, 3.0, 0.0, 6.0, 2.0, 0.0, 0.0])  # length 5 = 6, width 4 = 2
    # the writer writes the same fields back
    again = w.decode_frame(w.encode_frame(f), "again")
    assert again.images == f.images and again.camera_labels[1][0].id == "obj-7"
    np.testing.assert_array_equal(again.camera_labels[1][1].box, lab[1].box)
    np.testing.assert_array_equal(again.camera_calibrations[1].extrinsic, e)


def test_camera_calib_projects_a_vehicle_point_to_the_hand_computed_pixel():
    e = np.eye(4)
    e[:3, :3], e[:3, 3] = _rot_z(0.1) @ _rot_y(0.05), (1.5, 0.2, 2.0)
    cam = waymo.CameraCalibration(1, np.array([2050.0, 2040.0, 960.0, 640.0, -0.3, 0.1, 0, 0, 0]), e, 1920, 1280)
    x = np.array([20.0, 3.0, 0.5])
    q = np.linalg.inv(e) @ np.append(x, 1.0)  # camera frame: x forward, y left, z up
    want = [2050.0 * -q[1] / q[0] + 960.0, 2040.0 * -q[2] / q[0] + 640.0]
    pix = simulator.velo_to_image_matrix(waymo.camera_calib(cam)) @ np.append(x, 1.0)
    np.testing.assert_allclose(pix[:2] / pix[2], want, atol=1e-9)


def _sim_segment(tmp_path, s, seed=3, name="seg.tfrecord", frames=1):
    """A simulated smoke frame written as a Waymo segment whose TOP laser yaw is s columns."""
    scene = configs.get_config("smoke").scene
    frame = simulator.simulate_frame(seed, scene)
    e = np.eye(4)
    e[:3, :3], e[:3, 3] = _rot_z(2 * np.pi * s / scene.num_columns), (1.43, 0.0, 2.184)
    wf = waymo.from_simulation(frame, e, 7)
    path = tmp_path / name
    waymo.write_frames(path, [wf] * frames)
    return frame, e, path


def _rz4(a):
    m = np.eye(4)
    m[:3, :3] = _rot_z(a)
    return m


def test_from_waymo_reproduces_the_simulated_frame(tmp_path):
    from jaxlab.lidarfirst import pipeline

    s = 105
    frame, e, path = _sim_segment(tmp_path, s)
    (wf,) = list(waymo.read_frames(path))
    inp = pipeline.from_waymo(wf, "x")
    sim = pipeline.from_frame("x", frame)
    psi = 2 * np.pi * s / frame.range_image.shape[1]
    np.testing.assert_allclose(inp.range_image, np.roll(frame.range_image, -s, axis=1), rtol=1e-6)
    np.testing.assert_allclose(inp.inclinations, frame.inclinations, atol=1e-12)
    np.testing.assert_allclose(inp.azimuths, simulator.azimuths(frame.range_image.shape[1]), atol=1e-12)
    # points: the simulator's, in Waymo's column order, turned by the laser's yaw (the LiDAR frame of `inp`)
    pts = np.zeros(frame.range_image.shape + (4,))
    pts[frame.range_image > 0] = frame.points
    pts = np.roll(pts, -s, axis=1)[np.roll(frame.range_image > 0, -s, axis=1)]
    np.testing.assert_allclose(inp.points[:, :3], pts[:, :3] @ _rot_z(psi).T, atol=1e-3)
    np.testing.assert_allclose(inp.points[:, 3], pts[:, 3], atol=1e-6)
    # camera: M_waymo (Rz(psi) p) = M_sim p
    m = simulator.velo_to_image_matrix(inp.calib)
    want = simulator.velo_to_image_matrix(frame.calib) @ _rz4(-psi)
    np.testing.assert_allclose(m, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
    assert inp.image.shape == frame.image.shape and np.abs(inp.image.astype(float) - frame.image).mean() < 4
    assert len(sim.gt_boxes) > 0
    np.testing.assert_allclose(inp.gt_boxes, sim.gt_boxes, atol=1e-9)
    np.testing.assert_array_equal(inp.gt_classes, sim.gt_classes)
    assert inp.objects is None


def test_waymo_range_image_path_segments_like_the_simulated_frame(tmp_path):
    """Zero laser yaw (the camera then looks along the vehicle's +x): the same pixels, masks and boxes."""
    from jaxlab.lidarfirst import pipeline

    cfg = configs.get_config("smoke")
    frame, _, path = _sim_segment(tmp_path, 0)
    inp = pipeline.from_waymo(next(waymo.read_frames(path)), "w")
    a = pipeline.segment_frame(pipeline.from_frame("s", frame), cfg)
    b = pipeline.segment_frame(inp, cfg)
    assert a["columns"] == b["columns"] and a["columns"] != (0, frame.range_image.shape[1])
    np.testing.assert_allclose(b["range_image"], a["range_image"], rtol=1e-5)
    np.testing.assert_array_equal(b["ground"], a["ground"])
    np.testing.assert_array_equal(b["cluster"], a["cluster"])
    np.testing.assert_array_equal(b["valid"], a["valid"])
    assert a["valid"].sum() >= 3
    np.testing.assert_allclose(b["boxes"][b["valid"]], a["boxes"][a["valid"]], atol=1.0)
    np.testing.assert_allclose(b["distance"][b["valid"]], a["distance"][a["valid"]], atol=1e-3)
    # the run's figure draws the frame's own rows and columns, whatever the config's beams are
    from jaxlab.lidarfirst import report

    other = configs.get_config("smoke")
    other.scene.num_beams, other.scene.num_columns = 16, 512
    report.plot_frame(tmp_path, inp, {"segmentation": b, "detections": []}, other)
    assert (tmp_path / "figures" / "frame.png").stat().st_size > 0


def test_waymo_range_image_path_with_a_turned_laser_over_the_full_turn(tmp_path):
    """Laser yaw 105 of 256 columns, all columns segmented: the masks are the simulator's shifted by
    105 columns, and the polygon image boxes the same set (they do not depend on the frame's yaw)."""
    from jaxlab.lidarfirst import pipeline

    cfg = configs.get_config("smoke")
    cfg.pipeline.camera_fov_only = False
    s = 105
    frame, _, path = _sim_segment(tmp_path, s)
    a = pipeline.segment_frame(pipeline.from_frame("s", frame), cfg)
    b = pipeline.segment_frame(pipeline.from_waymo(next(waymo.read_frames(path)), "w"), cfg)
    np.testing.assert_array_equal(b["ground"], np.roll(a["ground"], -s, axis=1))
    np.testing.assert_array_equal(b["cluster"] >= 0, np.roll(a["cluster"] >= 0, -s, axis=1))
    boxes_a, boxes_b = (np.array(sorted(x["boxes"][x["valid"]].tolist())).reshape(-1, 4) for x in (a, b))
    assert len(boxes_a) >= 3
    np.testing.assert_allclose(boxes_b, boxes_a, atol=1.0)


def test_evaluation_frames_read_a_segment_file_or_folder(tmp_path):
    from jaxlab.lidarfirst import pipeline

    cfg = configs.get_config("smoke")
    frame, _, path = _sim_segment(tmp_path, 0, frames=2)
    cfg.data_dir = str(path)
    got = list(pipeline.evaluation_frames(cfg))
    assert [f.name for f in got] == ["seg-0", "seg-1"]
    want = pipeline.from_waymo(next(waymo.read_frames(path)), "seg-0")
    np.testing.assert_array_equal(got[1].range_image, want.range_image)
    np.testing.assert_array_equal(got[0].gt_boxes, want.gt_boxes)
    cfg.data_dir = str(tmp_path)  # a folder of segment files
    assert [f.name for f in pipeline.evaluation_frames(cfg)] == ["seg-0", "seg-1"]
    cfg.data_dir = str(tmp_path / "missing.tfrecord")
    with pytest.raises(DataFormatError, match="missing.tfrecord: no such Waymo segment file"):
        list(pipeline.evaluation_frames(cfg))


def test_malformed_camera_data_names_the_record(tmp_path):
    from jaxlab.lidarfirst import pipeline

    scene = configs.get_config("smoke").scene
    wf = waymo.from_simulation(simulator.simulate_frame(0, scene), np.eye(4))
    path = tmp_path / "bad.tfrecord"

    def frames(f):
        waymo.write_frames(path, [wf, f])
        return list(waymo.read_frames(path))

    import copy

    bad = copy.deepcopy(wf)
    bad.images[waymo.CAMERA_FRONT] = wf.images[waymo.CAMERA_FRONT][:len(wf.images[waymo.CAMERA_FRONT]) // 2]
    _, f = frames(bad)
    with pytest.raises(DataFormatError, match=r"bad.tfrecord: record 1: images\[name=1\].image: not a readable JPEG"):
        pipeline.from_waymo(f, "x")
    bad = copy.deepcopy(wf)
    del bad.camera_calibrations[waymo.CAMERA_FRONT]
    _, f = frames(bad)
    with pytest.raises(DataFormatError, match=r"bad.tfrecord: record 1: no FRONT camera calibration"):
        pipeline.from_waymo(f, "x")
    bad = copy.deepcopy(wf)
    del bad.images[waymo.CAMERA_FRONT]
    _, f = frames(bad)
    with pytest.raises(DataFormatError, match=r"bad.tfrecord: record 1: no FRONT camera image"):
        pipeline.from_waymo(f, "x")
    bad = copy.deepcopy(wf)
    bad.range_images, bad.range_image_poses = {}, {}
    _, f = frames(bad)
    with pytest.raises(DataFormatError, match=r"bad.tfrecord: record 1: no TOP laser range image"):
        pipeline.from_waymo(f, "x")
    bad = copy.deepcopy(wf)
    bad.camera_calibrations[waymo.CAMERA_FRONT].intrinsic = np.ones(4)
    with pytest.raises(DataFormatError, match=r"bad.tfrecord: record 1 context.camera_calibrations\[name=1\]"
                                              r".intrinsic: expected 9 doubles"):
        frames(bad)
    bad = copy.deepcopy(wf)
    bad.camera_calibrations[waymo.CAMERA_FRONT].width = 100
    _, f = frames(bad)
    with pytest.raises(DataFormatError, match="record 1: images.*calibration says 100x160"):
        pipeline.from_waymo(f, "x")
