"""The nearest-neighbour baseline: the history it reads, and its distances against a loop."""

import numpy as np
import pytest

from jaxlab.vectornet import baselines, polylines


def _scene(xy, sid="s"):
    steps = np.arange(len(xy))
    return polylines.Scene(sid, [], [polylines.Track("t", "AGENT", steps, np.asarray(xy, float))], "t")


def _vectorize(scene, max_vectors=6):
    return polylines.vectorize(scene, num_obs=20, num_future=30, max_vectors=max_vectors, max_polylines=6,
                               max_agents=1, map_radius=10.0, lane_spacing=2.0)


def test_target_history_reads_every_target_row_in_the_target_frame():
    t = np.arange(50.0)
    xy = np.stack([2.0 + 0.5 * t + 0.01 * t ** 2, 1.0 - 0.3 * t], 1)
    out = _vectorize(_scene(xy), max_vectors=6)          # 19 observed vectors -> 4 target rows
    assert (out["vectors"][:, 0, polylines.FEATURES.index("is_target")] > 0).sum() == 4
    hist, valid = baselines.target_history(out["vectors"][None], out["vec_mask"][None], 20)
    assert valid.all()
    origin, heading = polylines.target_frame(polylines.Track("t", "AGENT", np.arange(50), xy), 19)
    want = polylines.to_frame(xy[19 - np.arange(20)], origin, heading)   # k steps before the last
    np.testing.assert_allclose(hist[0], want, atol=1e-4)


def _brute_force(train, test, num_obs, k, distances=False):
    xa, ma = baselines.target_history(train["vectors"], train["vec_mask"], num_obs)
    xb, mb = baselines.target_history(test["vectors"], test["vec_mask"], num_obs)
    out = []
    for q in range(len(xb)):
        d = []
        for n in range(len(xa)):
            both = ma[n] & mb[q]
            d.append(np.mean(np.sum((xa[n, both] - xb[q, both]) ** 2, -1)))
        order = np.argsort(d, kind="stable")[:k]
        out.append(np.asarray(d)[order] if distances else order)
    return np.array(out)


@pytest.mark.parametrize("k", [1, 3])
def test_nearest_neighbour_equals_a_loop_over_training_scenes(k):
    rng = np.random.default_rng(k)
    scenes = []
    for i in range(30):
        t = np.arange(50.0)
        v, turn = rng.uniform(0.3, 1.5), rng.uniform(-0.02, 0.02)
        ang = np.cumsum(np.full(50, turn))
        xy = np.cumsum(np.stack([v * np.cos(ang), v * np.sin(ang)], 1), 0) + rng.normal(0, 0.05, (50, 2))
        if i % 4 == 0:
            xy, t = xy[5:], t[5:]          # a shorter history: fewer observed slots
        scenes.append(_vectorize(polylines.Scene(str(i), [], [polylines.Track("t", "AGENT", t.astype(int), xy)],
                                                 "t")))
    stack = {key: np.stack([s[key] for s in scenes]) for key in ("vectors", "vec_mask", "future")}
    train = {key: v[:20] for key, v in stack.items()}
    test = {key: v[20:] for key, v in stack.items()}
    idx = _brute_force(train, test, 20, k)
    pred = baselines.nearest_neighbour(train, test, 20, k=k, chunk=4)
    want = train["future"][idx]
    np.testing.assert_allclose(pred, want[:, 0] if k == 1 else want, atol=1e-6)
    # a test scene that is a training scene gets that scene's own future
    np.testing.assert_allclose(baselines.nearest_neighbour(train, train, 20), train["future"], atol=1e-6)
    with pytest.raises(ValueError, match=r"k must lie in \[1, 20\]"):
        baselines.nearest_neighbour(train, test, 20, k=21)
    # probabilities: softmax(-d / mean d) of the brute-force distances of the guesses, in their order
    _, probs = baselines.nearest_neighbour(train, test, 20, k=k, chunk=4, return_probs=True)
    d = _brute_force(train, test, 20, k, distances=True)
    want_p = np.exp(-d / d.mean(1, keepdims=True))
    np.testing.assert_allclose(probs, want_p / want_p.sum(1, keepdims=True), rtol=1e-6)
    if k > 1:
        assert np.all(np.diff(probs, axis=1) <= 1e-12)  # nearest first, likeliest first


def test_guess_probs_edge_cases():
    p = baselines.guess_probs(np.array([[0.0, 0.0, 0.0], [1.0, np.inf, 3.0], [np.inf, np.inf, np.inf]]))
    np.testing.assert_allclose(p[0], [1 / 3] * 3)  # all at distance 0: equal
    e = np.exp([-0.5, -1.5])  # finite distances 1 and 3, mean 2; the unreachable guess gets 0
    np.testing.assert_allclose(p[1], [e[0] / e.sum(), 0.0, e[1] / e.sum()])
    np.testing.assert_allclose(p[2], [1 / 3] * 3)


def test_lstm_reads_the_same_history_on_device():
    import jax.numpy as jnp

    from jaxlab.vectornet.baselines import _history_jnp

    t = np.arange(50.0)
    scenes = [_vectorize(_scene(np.stack([0.4 * t * (i + 1), 0.02 * t ** 2 - i], 1))) for i in range(3)]
    scenes.append(_vectorize(polylines.Scene("short", [], [polylines.Track("t", "AGENT", np.arange(8, 50),
                                                                           np.stack([t[8:], -t[8:]], 1))], "t")))
    vec = np.stack([s["vectors"] for s in scenes])
    mask = np.stack([s["vec_mask"] for s in scenes])
    xy, valid = baselines.target_history(vec, mask, 20)
    jxy, jvalid = _history_jnp(jnp.asarray(vec), jnp.asarray(mask), 20)
    np.testing.assert_array_equal(np.asarray(jvalid), valid)
    assert not valid[-1].all()                      # the short track leaves early slots empty
    np.testing.assert_allclose(np.asarray(jxy), xy, atol=1e-5)


def test_lstm_baseline_trains_through_the_train_action(tmp_path):
    from jaxlab.vectornet import configs, run

    cfg = configs.get_config("smoke")
    cfg.model.name = "lstm"
    cfg.loop.num_steps, cfg.loop.eval_every, cfg.loop.checkpoint_every = 100, 100, 100
    cfg.num_train, cfg.num_test = 128, 64
    res = run.train(cfg, tmp_path)
    still = res["test_constant_velocity"]          # its scenes: same test split
    # LSTM cells: 4 gates x (input kernel, recurrent kernel, bias); encoder inputs (x, y, observed)
    h = 64
    assert res["num_params"] == 4 * (3 * h + h * h + h) + 4 * (1 * h + h * h + h) + (h * 2 + 2)
    # a trained LSTM is far better than predicting that the target stops where it is
    stop = np.mean(np.linalg.norm(run.data_lib.split_arrays(cfg, "test")["future"], axis=-1))
    print(res["test"]["ade"], stop, still["ade"])
    assert res["test"]["ade"] < 0.5 * stop, (res["test"]["ade"], stop, still["ade"])
