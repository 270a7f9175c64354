import jax.numpy as jnp
import numpy as np

from jaxlab.lidarfirst import risk


def _r3(center, size, yaw, vel, ego):
    cls, t = risk.r3(jnp.array(center, jnp.float32), jnp.array(size, jnp.float32), jnp.array(yaw, jnp.float32),
                     jnp.array(vel, jnp.float32), jnp.array(ego, jnp.float32))
    return np.asarray(cls).tolist(), np.asarray(t)


def test_hand_made_r3_cases():
    # ego at 10 m/s: TTS = 0.1 + 10 / 7.5 = 1.433 s; car footprint 4.5 x 1.8, d_crit = hypot(4.5, 1.8) + 2.2 = 7.047 m.
    center = [[10.0, 0.0],   # stopped in the lane: the distance test fires first, at t = 0.3 s
             #  (|10 - 3| = 7 < 7.047 + 7.5 * 0.09 = 7.72; at t = 0.2: 8 > 7.35), before the footprints
             #  meet at t = 0.575 s: POTENTIAL pre-empts IMMINENT
              [40.0, 0.0],   # far ahead, stopped: nothing within TTS
              [6.0, 4.0],    # beside the lane: at t = 0 the distance 7.21 > 7.047; at t = 0.1: 6.40 < 7.12
              [-20.0, 0.0],  # behind, stopped
              [3.0, 0.0]]    # footprints overlap at t = 0 (3 - 2.25 < 2): IMMINENT
    size = [[4.5, 1.8]] * 5
    cls, t = _r3(center, size, [0.0] * 5, [[0.0, 0.0]] * 5, [10.0, 0.0])
    assert cls == [risk.POTENTIAL, risk.NONE, risk.POTENTIAL, risk.NONE, risk.IMMINENT]
    np.testing.assert_allclose(t[[0, 2, 4]], [0.3, 0.1, 0.0], atol=1e-6)
    assert np.isinf(t[1]) and np.isinf(t[3])
    # a car 30 m to the side, driving parallel at the ego's speed, stays out of reach: NONE
    cls, _ = _r3([[0.0, 30.0]], [[4.5, 1.8]], [0.0], [[10.0, 0.0]], [10.0, 0.0])
    assert cls == [risk.NONE]


def test_crossing_pedestrian_is_imminent_and_static_ego_sees_less():
    # a pedestrian 1.5 m to the side, walking into the lane at 1.5 m/s, ego stopped: TTS = 0.1 s
    cls, _ = _r3([[1.0, 1.5]], [[0.6, 0.6]], [0.0], [[0.0, -1.5]], [0.0, 0.0])
    assert cls == [risk.POTENTIAL]  # centres 1.8 m apart < d_crit 3.05 m at t = 0, no overlap yet
    cls, _ = _r3([[1.0, 1.2]], [[0.6, 0.6]], [0.0], [[0.0, -1.5]], [0.0, 0.0])
    assert cls == [risk.IMMINENT]   # the footprints already touch (1.2 - 0.3 < 1.0)


def test_rotated_rectangles_overlap_by_separating_axes():
    o = risk.rectangles_overlap
    z = jnp.zeros(())
    # a 4x1 bar rotated 45 deg reaches a unit square centred 2 m away on the x axis only diagonally
    bar = (jnp.array([0.0, 0.0]), jnp.array([4.0, 1.0]))
    sq = (jnp.array([1.9, 0.0]), jnp.array([1.0, 1.0]))
    assert bool(o(*bar, z, *sq, z))
    assert not bool(o(*bar, jnp.array(np.pi / 2), *sq, z))
    assert bool(o(*bar, jnp.array(np.pi / 4), jnp.array([1.4, 1.4]), jnp.array([1.0, 1.0]), z))
    assert not bool(o(*bar, jnp.array(np.pi / 4), jnp.array([1.4, -1.4]), jnp.array([1.0, 1.0]), z))


def test_order_by_risk_then_distance():
    cls = np.array([risk.NONE, risk.IMMINENT, risk.POTENTIAL, risk.IMMINENT, risk.NONE])
    dist = np.array([3.0, 20.0, 5.0, 10.0, 1.0])
    valid = np.array([True, True, True, True, False])
    assert risk.order(cls, dist, valid, "r3").tolist() == [3, 1, 2, 0]
    assert risk.order(cls, dist, valid, "nearest").tolist() == [0, 2, 3, 1]
