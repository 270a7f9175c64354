import numpy as np
import pytest

from jaxlab.vectornet import polylines
from jaxlab.vectornet.polylines import AGENT, LANE, PAD, TARGET, Lane, Scene, Track


def _scene():
    steps = np.arange(50)
    target = Track("t", "AGENT", steps, np.stack([np.full(50, 10.0), 20.0 + steps], 1))
    other = Track("o", "OTHERS", np.arange(15, 20), np.stack([np.full(5, 13.0), np.arange(5.0) + 30], 1))
    gone = Track("g", "OTHERS", np.array([25, 26]), np.array([[0.0, 0.0], [1.0, 0.0]]))  # future only
    lane = Lane("1", np.array([[5.0, 39.0], [5.0, 45.0]]), is_intersection=True, turn="LEFT")
    far = Lane("2", np.array([[500.0, 0.0], [510.0, 0.0]]))
    return Scene("s", [lane, far], [target, other, gone], "t")


def test_resample_equal_arc_length_hand_values():
    out = polylines.resample(np.array([[0.0, 0.0], [3.0, 0.0], [3.0, 2.0]]), 2.0)
    # length 5 -> ceil(5/2) = 3 pieces of 5/3 m; the corner at s=3 is cut
    s = np.array([0, 5 / 3, 10 / 3, 5])
    expect = np.array([[0, 0], [5 / 3, 0], [3, 1 / 3], [3, 2]])
    np.testing.assert_allclose(out, expect, atol=1e-12)
    assert len(s) == len(out)


def test_split_pieces_share_end_points():
    pts = np.arange(8)
    assert [p.tolist() for p in polylines.split(pts, 3)] == [[0, 1, 2, 3], [3, 4, 5, 6], [6, 7]]
    assert polylines.split(pts[:1], 3) == []


def test_frame_hand_worked():
    sc = _scene()
    origin, heading = polylines.target_frame(sc.track("t"), 19)
    np.testing.assert_allclose(origin, [10, 39])
    np.testing.assert_allclose(heading, np.pi / 2)
    # travelling +y: a point 1 m to the east is on the right (-y in the frame), 2 m ahead is +x
    np.testing.assert_allclose(polylines.to_frame(np.array([[11.0, 39.0], [10.0, 41.0]]), origin, heading),
                               [[0, -1], [2, 0]], atol=1e-12)
    back = polylines.from_frame(np.array([[0.0, -1.0]]), origin, heading)
    np.testing.assert_allclose(back, [[11, 39]], atol=1e-12)


def test_vectorize_hand_worked_values():
    out = polylines.vectorize(_scene(), num_obs=20, num_future=30, max_vectors=10, max_polylines=6,
                              max_agents=5, map_radius=50.0, lane_spacing=2.0)
    f = {name: i for i, name in enumerate(polylines.FEATURES)}
    # rows: target's last piece, target's first piece, the other agent, the near lane, padding
    np.testing.assert_array_equal(out["kind"], [TARGET, TARGET, AGENT, LANE, PAD, PAD])
    np.testing.assert_array_equal(out["vec_mask"].sum(1), [9, 10, 4, 3, 0, 0])
    t0 = out["vectors"][0]
    # steps 10..19 at (10, 30..39): in the frame (-9..0, 0); last vector ends at the origin
    np.testing.assert_allclose(t0[:9, 0], np.arange(-9, 0), atol=1e-5)
    np.testing.assert_allclose(t0[8, 2:4], [0, 0], atol=1e-5)
    np.testing.assert_allclose(t0[0, f["time"]], (10 - 19) / 20)
    np.testing.assert_allclose(out["vectors"][1][0, f["time"]], -19 / 20)
    assert t0[0, f["is_target"]] == 1 and t0[0, f["is_lane"]] == 0
    # the other agent at (13, 30..34) -> frame (x = y - 39, y = -(13 - 10) = -3)
    ag = out["vectors"][2][:4]
    np.testing.assert_allclose(ag[:, 0:2], np.stack([np.arange(-9.0, -5.0), np.full(4, -3.0)], 1), atol=1e-5)
    assert np.all(ag[:, f["is_agent"]] == 1)
    # the lane (5, 39)->(5, 45), 6 m at 2 m spacing, 5 m to the left: (0..6, +5)
    ln = out["vectors"][3][:3]
    np.testing.assert_allclose(ln[:, 0:4], [[0, 5, 2, 5], [2, 5, 4, 5], [4, 5, 6, 5]], atol=1e-5)
    assert np.all(ln[:, f["is_intersection"]] == 1) and np.all(ln[:, f["turn_left"]] == 1)
    np.testing.assert_allclose(out["future"][[0, -1]], [[1, 0], [30, 0]], atol=1e-5)
    assert out["future_mask"].all()
    assert np.all(out["vectors"][4:] == 0)


def test_vectorize_budget_keeps_target_first_and_nearest():
    out = polylines.vectorize(_scene(), num_obs=20, num_future=30, max_vectors=10, max_polylines=2,
                              max_agents=0, map_radius=50.0, lane_spacing=2.0)
    np.testing.assert_array_equal(out["kind"], [TARGET, TARGET])


def test_target_not_observed_at_last_step_is_an_error():
    sc = _scene()
    tr = sc.track("t")
    tr.steps, tr.xy = tr.steps[:10], tr.xy[:10]
    with pytest.raises(ValueError, match="not observed at step 19"):
        polylines.vectorize(sc, num_obs=20, num_future=30, max_vectors=10, max_polylines=6, max_agents=5,
                            map_radius=50.0, lane_spacing=2.0)
