import numpy as np
import pytest

from jaxlab.core.errors import DataFormatError
from jaxlab.lidarfirst import camera, configs, data, simulator


@pytest.fixture(scope="module")
def frame():
    return simulator.simulate_frame(3, configs.get_config("smoke").scene)


def test_simulator_is_deterministic_and_points_match_ranges(frame):
    cfg = configs.get_config("smoke").scene
    again = simulator.simulate_frame(3, cfg)
    np.testing.assert_array_equal(again.points, frame.points)
    np.testing.assert_array_equal(again.image, frame.image)
    other = simulator.simulate_frame(4, cfg)
    assert not np.array_equal(other.range_image, frame.range_image)
    valid = frame.range_image > 0
    assert valid.sum() == len(frame.points)
    np.testing.assert_allclose(np.linalg.norm(frame.points[:, :3], axis=1), frame.range_image[valid], atol=1e-4)
    assert frame.range_image.max() <= cfg.max_range
    # instance ids: -1 exactly where no return, at least one object hit.
    np.testing.assert_array_equal(frame.instance_image < 0, ~valid)
    assert frame.instance_image.max() >= 1


def test_ground_points_lie_on_the_plane_and_object_points_in_their_boxes(frame):
    cfg = configs.get_config("smoke").scene
    inst = frame.instance_image[frame.range_image > 0]
    pts = frame.points[:, :3].astype(np.float64)
    g = pts[inst == 0]
    # noise is along the ray: |dz| <= ~4 sigma.
    assert np.abs(g[:, 2] + cfg.lidar_height).max() < 5 * cfg.range_noise + 1e-3
    o = frame.objects
    for k in range(len(o)):
        p = pts[inst == k + 1] - o.center[k]
        c, s = np.cos(o.yaw[k]), np.sin(o.yaw[k])
        local = np.stack([c * p[:, 0] + s * p[:, 1], -s * p[:, 0] + c * p[:, 1], p[:, 2]], 1)
        assert (np.abs(local) <= o.size[k] / 2 + 5 * cfg.range_noise).all()


def test_sloped_ground_points_follow_the_slope():
    cfg = configs.get_config("smoke").scene
    cfg.ground_slope_deg = 4.0
    f = simulator.simulate_frame(0, cfg)
    g = f.points[f.instance_image[f.range_image > 0] == 0, :3].astype(np.float64)
    slope, icpt = np.polyfit(g[:, 0], g[:, 2], 1)
    assert abs(np.degrees(np.arctan(slope)) - 4.0) < 0.05 and abs(icpt + cfg.lidar_height) < 0.02


def test_projection_matches_hand_computed_pixels(frame):
    cfg = configs.get_config("smoke").scene
    m = simulator.velo_to_image_matrix(frame.calib)
    # A point 10 m ahead, 1 m left, 0.5 m up of the LiDAR: camera 0 is 0.27 m ahead and 0.08 m
    # lower, camera 2 is 0.06 m left of it (P2's 4th column f*0.06): X_c = (-1 + 0.06, -(0.5 + 0.08), 10 - 0.27).
    xc, yc, zc = -1.0 + simulator.STEREO_BASELINE, -0.58, 9.73
    u = cfg.focal * xc / zc + (cfg.image_width - 1) / 2
    v = cfg.focal * yc / zc + (cfg.image_height - 1) / 2
    uv, depth = camera.project_points(np.array([[10.0, 1.0, 0.5]], np.float32), m.astype(np.float32))
    assert abs(float(uv[0, 0]) - u) < 0.5 and abs(float(uv[0, 1]) - v) < 0.5 and abs(float(depth[0]) - zc) < 1e-3
    # Against the rendered image: the projected centre of each visible object is that object.
    o = frame.objects
    uv, depth = camera.project_points(o.center.astype(np.float32), m.astype(np.float32))
    for k in range(len(o)):
        x, y = np.round(np.asarray(uv[k])).astype(int)
        if depth[k] > 0 and 0 <= x < cfg.image_width and 0 <= y < cfg.image_height:
            assert frame.image_instances[y, x] > 0  # object k, or an object in front of it


def test_kitti_round_trip(frame, tmp_path):
    data.write_frame(tmp_path, "000007", frame)
    assert data.frame_ids(tmp_path) == ["000007"]
    k = data.read_frame(tmp_path, "000007")
    np.testing.assert_array_equal(k.points, frame.points)
    np.testing.assert_array_equal(k.image, frame.image)
    for key, val in frame.calib.items():
        np.testing.assert_allclose(k.calib[key], val, rtol=1e-12, atol=1e-12)
    labels = data.frame_labels(frame)
    assert len(k.labels) == len(labels) > 0
    for a, b in zip(k.labels, labels):
        assert a.type == b.type and a.occluded == b.occluded
        np.testing.assert_allclose(a.bbox, b.bbox, atol=1e-5)
        np.testing.assert_allclose(a.location, b.location, atol=1e-5)
    np.testing.assert_allclose(k.objects.center, frame.objects.center, rtol=1e-8)
    np.testing.assert_allclose(k.objects.velocity, frame.objects.velocity, rtol=1e-8, atol=1e-9)
    # KITTI location is the bottom-face centre in camera coordinates: back in LiDAR frame it is
    # the object's centre lowered by h/2.
    tr = np.eye(4)
    tr[:3] = k.calib["Tr_velo_to_cam"]
    lab = k.labels[0]
    idx = [i for i in range(len(frame.objects)) if (frame.image_instances == i + 1).any()]
    back = (np.linalg.inv(tr) @ np.array([*lab.location, 1.0]))[:3]
    match = min(idx, key=lambda i: np.linalg.norm(frame.objects.center[i] - back))
    want = frame.objects.center[match] - [0, 0, frame.objects.size[match, 2] / 2]
    np.testing.assert_allclose(back, want, atol=1e-5)


@pytest.mark.parametrize("body, words", [
    ("P0: 1 2 3\n", ["calib.txt:1", "P0", "expected 12 values, got 3"]),
    ("P2: " + "1 " * 12 + "\nR0_rect: 1 0 0 0 1 0 0 0 x\n", ["calib.txt:2", "R0_rect", "expected numbers"]),
    ("Q9: 1\n", ["calib.txt:1", "KEY"]),
    ("P2: " + "1 " * 12 + "\n", ["missing", "R0_rect"]),
])
def test_malformed_calib_is_named(tmp_path, body, words):
    p = tmp_path / "calib.txt"
    p.write_text(body)
    with pytest.raises(DataFormatError) as e:
        data.read_calib(p)
    for w in words:
        assert w in str(e.value), (w, str(e.value))


GOOD = "Car 0.00 0 -1.5 10 20 50 60 1.5 1.8 4.5 1.0 1.6 20.0 0.1"


@pytest.mark.parametrize("line, words", [
    ("Car 0 0 0 1 2 3", ["label.txt:2", "15 fields", "got 7"]),
    ("Truckk" + GOOD[3:], ["label.txt:2", "type", "Truckk"]),
    (GOOD.replace("0.00 0", "1.50 0"), ["label.txt:2", "truncated", "1.5"]),
    (GOOD.replace("0.00 0", "0.00 7"), ["label.txt:2", "occluded"]),
    (GOOD.replace("-1.5", "4.0"), ["label.txt:2", "alpha"]),
    (GOOD.replace("10 20 50", "60 20 50"), ["label.txt:2", "bbox"]),
    (GOOD.replace("1.6", "nan"), ["label.txt:2", "non-finite"]),
])
def test_malformed_labels_are_named(tmp_path, line, words):
    p = tmp_path / "label.txt"
    p.write_text(GOOD + "\n" + line + "\n")
    with pytest.raises(DataFormatError) as e:
        data.read_labels(p)
    for w in words:
        assert w in str(e.value), (w, str(e.value))


def test_labels_accept_dontcare_and_scores(tmp_path):
    p = tmp_path / "label.txt"
    p.write_text(GOOD + " 0.9\nDontCare -1 -1 -10 1 2 3 4 -1 -1 -1 -1000 -1000 -1000 -10\n")
    labs = data.read_labels(p)
    assert labs[0].score == 0.9 and labs[1].type == "DontCare" and labs[1].score is None


def test_malformed_velodyne_and_image_are_named(tmp_path):
    p = tmp_path / "000000.bin"
    np.zeros(10, "<f4").tofile(p)
    with pytest.raises(DataFormatError, match=r"000000.bin.*40 bytes.*multiple of 16"):
        data.read_velodyne(p)
    np.array([[0, 0, 0, 0], [1, np.nan, 0, 0]], "<f4").tofile(p)
    with pytest.raises(DataFormatError, match="point 1 is not finite"):
        data.read_velodyne(p)
    q = tmp_path / "x.png"
    q.write_bytes(b"not a png")
    with pytest.raises(DataFormatError, match="x.png"):
        data.read_image(q)
    with pytest.raises(DataFormatError, match="no velodyne"):
        data.frame_ids(tmp_path)


def test_polygon_boxes_equal_the_projected_convex_hull_prisms(frame):
    """`project_polygons` (no hull computed) against scipy's convex hull of each cluster's (x, y),
    extruded from z_min to z_max and projected corner by corner."""
    import scipy.spatial

    cfg = configs.get_config("smoke").scene
    m = simulator.velo_to_image_matrix(frame.calib).astype(np.float32)
    rng = np.random.default_rng(0)
    # three clusters of random points in front of the camera, one partly outside the image, and noise
    centres = np.array([[8.0, 1.0, -0.5], [15.0, -3.0, 0.0], [6.0, 4.5, 0.2]])
    pts, slot = [], []
    for k, c in enumerate(centres):
        p = c + rng.normal(0, [0.8, 0.6, 0.5], (40, 3))
        pts.append(p)
        slot.append(np.full(40, k))
    pts.append(rng.normal([10.0, 0, 0], 1.0, (15, 3)))
    slot.append(np.full(15, -1))
    pts, slot = np.concatenate(pts).astype(np.float32), np.concatenate(slot)
    z_lo = np.array([pts[slot == k, 2].min() for k in range(3)] + [0.0], np.float32)
    z_hi = np.array([pts[slot == k, 2].max() for k in range(3)] + [0.0], np.float32)
    boxes, trunc, ok = camera.project_polygons(pts, slot, z_lo, z_hi, m, cfg.image_width, cfg.image_height, 1.0)
    for k in range(3):
        xy = pts[slot == k, :2].astype(np.float64)
        hull = xy[scipy.spatial.ConvexHull(xy).vertices]
        prism = np.concatenate([np.c_[hull, np.full(len(hull), z_lo[k])], np.c_[hull, np.full(len(hull), z_hi[k])]])
        ref, ref_trunc, ref_ok = camera.project_boxes_np(prism[None], m, cfg.image_width, cfg.image_height, 1.0)
        np.testing.assert_allclose(np.asarray(boxes[k]), ref[0], atol=1e-3)
        np.testing.assert_allclose(float(trunc[k]), ref_trunc[0], atol=1e-5)
        assert bool(ok[k]) == bool(ref_ok[0])
        # and the polygon's box lies inside the axis-aligned cube's
        lo, hi = pts[slot == k].min(0), pts[slot == k].max(0)
        cube = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
        cb, _, _ = camera.project_boxes_np(cube[None], m, cfg.image_width, cfg.image_height, 1.0)
        b = np.asarray(boxes[k])
        assert (b[:2] >= cb[0, :2] - 1e-3).all() and (b[2:] <= cb[0, 2:] + 1e-3).all()
    assert not bool(ok[3])  # an empty slot
    assert float(trunc[2]) > 0  # the third cluster leaves the image on the left
