"""Procedural scenes: lane changes (smooth, onto the neighbour's route) and, without them, the
scenes of lane-keeping agents exactly as they were generated before lane changes existed."""

import dataclasses

import numpy as np
import pytest

from jaxlab.vectornet import configs, data

# Recorded from `procedural_scenes(3, split, n, 0.6, 20, 50)` before lane changes were added:
# (scene id, number of tracks, target track id, target xy at steps 0, 19 and 49, sum of all track xy)
LANE_KEEPING = {
    "train": [
        ("0", 8, "1dc45e4a-a1b2-4570-a913-c80b1edc7dd8",
         [33.65308881070957, 5.669542211963793, 13.682403071513683, 3.449445443021269, -2.7319331774955184,
          -15.781115649230879], -2661.638202301792),
        ("1", 7, "25767685-af0a-40e8-ae71-547a7c5fb802",
         [1021.2988879270441, 30.01930376890693, 1007.901316895181, 13.227255706707872, 1008.0721595461357,
          -11.735243702533934], 318698.4543880771),
    ],
    "test": [
        ("2000000", 8, "092b3f03-cc82-4f49-ab3b-1c6a8a7c6f46",
         [-26.509667103830417, 19999990.66955686, -15.28994652169434, 19999990.98487587, -1.352571360884499,
          19999986.221583147], 7539995691.177453),
    ],
}


@pytest.mark.parametrize("kwargs", [{}, {"lane_change": 0.0}])
def test_without_lane_changes_the_scenes_are_those_of_before(kwargs):
    for split, expected in LANE_KEEPING.items():
        scenes = data.procedural_scenes(3, split, len(expected), 0.6, 20, 50, **kwargs)
        for sc, (sid, n, tid, target_xy, total) in zip(scenes, expected):
            assert (sc.scene_id, len(sc.tracks), sc.target_id) == (sid, n, tid)
            np.testing.assert_allclose(sc.tracks[0].xy[[0, 19, 49]].ravel(), target_xy, rtol=1e-13, atol=0)
            np.testing.assert_allclose(sum(tr.xy.sum() for tr in sc.tracks), total, rtol=1e-13)


def _distance_to_polyline(p, xy):
    a, b = xy[:-1], xy[1:]
    t = np.clip(np.sum((p - a) * (b - a), 1) / np.maximum(np.sum((b - a) ** 2, 1), 1e-12), 0, 1)
    return float(np.min(np.linalg.norm(a + t[:, None] * (b - a) - p, axis=1)))


def _routes(seed):
    rng = np.random.default_rng(seed)
    lanes, routes = data.intersection_lanes(rng, 1000)
    return rng, {ln.lane_id: ln for ln in lanes}, routes


def _changing_drives(start_s: float, speed: float):
    """`(own route xy, change, xy, changed)` of every route of 5 scenes driven with lane-change
    probability 1 from arc length `start_s` at a constant `speed`, noise off."""
    for seed in range(5):
        rng, by_id, routes = _routes(seed)
        for (a, k), ids in routes.items():
            change = data._neighbour_route(rng, by_id, routes, a, k)
            own = data._route_xy(by_id, ids)
            xy, changed = data._drive(rng, own, start_s, 19, 50, speed_range=(speed, speed), lane_change=1.0,
                                      change=change, noise=0.0)
            yield own, change, xy, changed


def test_lane_change_ends_on_the_neighbour_lane_smoothly():
    """Every agent of every route, kept on the inbound lanes (arc length 3-38 m of 48): with
    probability 1 it moves one lane width over, onto its neighbour's centreline, and its path
    (noise off) has the bounded acceleration and jerk of a 2-4 s minimum-jerk blend."""
    dt, width = 0.1, data.LANE_WIDTH
    for own, change, xy, changed in _changing_drives(15.0, 6.0):
        assert changed
        other = change[0]
        start, end = xy[0], xy[-1]
        assert _distance_to_polyline(start, own) < 1e-9
        assert _distance_to_polyline(start, other) == pytest.approx(width, abs=1e-9)
        assert _distance_to_polyline(end, other) < 1e-9
        assert _distance_to_polyline(end, own) == pytest.approx(width, abs=1e-9)
        acc = np.linalg.norm(np.diff(xy, 2, axis=0), axis=1) / dt ** 2
        jerk = np.linalg.norm(np.diff(xy, 3, axis=0), axis=1) / dt ** 3
        # longitudinal |a| <= 1.5; lateral <= 5.77 width / T^2 and jerk <= 60 width / T^3 with T >= 2 s
        assert acc.max() < 1.5 + 5.78 * width / 4 + 0.1, acc.max()
        assert jerk.max() < 60 * width / 8 + 1.0, jerk.max()
        # the lateral offset grows monotonically from 0 to one lane width
        offset = np.array([_distance_to_polyline(p, own) for p in xy])
        assert np.all(np.diff(offset) > -1e-9) and offset[0] < 1e-9


def test_lane_change_follows_the_neighbour_route_through_the_intersection():
    """Agents that leave the inbound lane after changing end on the neighbour's route, off their own."""
    ends = 0
    for own, change, xy, changed in _changing_drives(30.0, 10.0):
        if not changed:  # no 2-4 s window left on the inbound lane before it ends
            continue
        ends += 1
        assert _distance_to_polyline(xy[-1], change[0]) < 1e-9
        assert _distance_to_polyline(xy[-1], own) > 1.0
    assert ends >= 30


def test_lane_change_probability_and_config():
    """Probability 1 changes the scenes, 0 does not; the config field reaches the cached splits."""
    keep = data.procedural_scenes(3, "train", 4, 0.6, 20, 50)
    moved = data.procedural_scenes(3, "train", 4, 0.6, 20, 50, lane_change=1.0)
    assert any(not np.array_equal(a.tracks[0].xy, b.tracks[0].xy) for a, b in zip(keep, moved))
    c = configs.get_config("smoke")
    assert c.lane_change == 0.0 and configs.get_config("paper").lane_change == 0.2
    c.num_train, c.num_val, c.num_test = 4, 4, 4
    c0, c1 = dataclasses.replace(c, lane_change=0.0), dataclasses.replace(c, lane_change=1.0)
    f0, f1 = data.split_arrays(c0, "test")["future"], data.split_arrays(c1, "test")["future"]
    assert not np.array_equal(f0, f1)
    np.testing.assert_array_equal(data.split_arrays(c0, "test")["future"], f0)
