import numpy as np
import pytest

from jaxlab.vectornet.baselines import constant_velocity
from jaxlab.vectornet.metrics import displacement_metrics, numpy_metrics


def test_metrics_hand_worked():
    truth = np.zeros((1, 30, 2))
    pred = np.zeros((1, 30, 2))
    pred[0, :, 0] = 3.0
    pred[0, :, 1] = 4.0 * np.arange(1, 31) / 30  # error grows to 5 m at the end
    m = numpy_metrics(pred, truth)
    d = np.sqrt(9 + (4.0 * np.arange(1, 31) / 30) ** 2)
    np.testing.assert_allclose(m["ade"], [d.mean()])
    np.testing.assert_allclose(m["fde"], [5.0])
    np.testing.assert_allclose([m["de1"][0], m["de2"][0], m["de3"][0]], d[[9, 19, 29]])
    assert m["miss"][0] == 1.0
    assert numpy_metrics(pred, truth, miss_threshold=5.5)["miss"][0] == 0.0


def test_min_over_k_takes_ade_of_the_min_fde_guess():
    truth = np.zeros((1, 4, 2))
    a = np.zeros((4, 2))
    a[:3, 0] = 10.0  # large ADE, zero FDE
    b = np.full((4, 2), 0.5)  # small ADE, FDE > 0
    m = numpy_metrics(np.stack([a, b])[None], truth)
    np.testing.assert_allclose(m["fde"], [0.0])
    np.testing.assert_allclose(m["ade"], [7.5])


def test_valid_mask_uses_last_valid_step_and_jax_equals_numpy():
    rng = np.random.default_rng(0)
    pred, truth = rng.normal(size=(5, 30, 2)), rng.normal(size=(5, 30, 2))
    valid = np.ones((5, 30), bool)
    valid[2, 12:] = False
    m = numpy_metrics(pred, truth, valid)
    d = np.linalg.norm(pred - truth, axis=-1)
    np.testing.assert_allclose(m["fde"][2], d[2, 11])
    np.testing.assert_allclose(m["ade"][2], d[2, :12].mean())
    np.testing.assert_allclose(m["de2"][2], 0.0)
    j = displacement_metrics(pred.astype(np.float32), truth.astype(np.float32), valid)
    for k in m:
        np.testing.assert_allclose(np.asarray(j[k]), m[k], rtol=1e-5, atol=1e-5)


def test_constant_velocity_is_exact_on_constant_velocity_tracks():
    from jaxlab.vectornet import polylines

    steps = np.arange(50)
    xy = np.stack([3.0 + 0.7 * steps, -2.0 + 0.4 * steps], 1)
    sc = polylines.Scene("s", [], [polylines.Track("t", "AGENT", steps, xy)], "t")
    out = polylines.vectorize(sc, num_obs=20, num_future=30, max_vectors=8, max_polylines=4, max_agents=1,
                              map_radius=10.0, lane_spacing=2.0)
    pred = constant_velocity(out["vectors"][None], out["vec_mask"][None], 20, 30)
    np.testing.assert_allclose(pred[0], out["future"], atol=1e-4)


def test_probabilistic_metrics_hand_worked():
    # two scenes, two guesses; scene 0's better guess has weight 3 of 4 (p = 0.75 after
    # normalising), scene 1's better guess has p = 0.01, below Argoverse 1's floor of 0.05
    truth = np.zeros((2, 4, 2))
    near, far = np.full((4, 2), 0.6), np.full((4, 2), 3.0)  # FDE 0.6 * sqrt(2) and 3 * sqrt(2)
    pred = np.stack([np.stack([far, near]), np.stack([near, far])])
    m = numpy_metrics(pred, truth, probs=np.array([[1.0, 3.0], [0.01, 0.99]]))
    fde = 0.6 * np.sqrt(2)
    np.testing.assert_allclose(m["fde"], [fde, fde])
    np.testing.assert_allclose(m["p_fde"], [fde - np.log(0.75), fde - np.log(0.05)])
    np.testing.assert_allclose(m["brier_fde"], [fde + 0.25 ** 2, fde + 0.99 ** 2])
    np.testing.assert_allclose(m["brier_ade"] - m["ade"], [0.0625, 0.9801])
    np.testing.assert_allclose(m["p_miss"], [0.25, 0.99])  # neither scene missed: 1 - p
    m3 = numpy_metrics(pred * 4, truth, probs=np.array([[1.0, 3.0], [0.01, 0.99]]))
    np.testing.assert_allclose(m3["p_miss"], [1.0, 1.0])  # both missed (FDE 3.4 m > 2 m)
    j = displacement_metrics(pred.astype(np.float32), truth.astype(np.float32), probs=np.array([[1.0, 3.0],
                                                                                               [0.01, 0.99]]))
    for k in m:
        np.testing.assert_allclose(np.asarray(j[k]), m[k], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"probs must be \[N, K\]"):
        numpy_metrics(pred, truth, probs=np.ones((2, 3)))
