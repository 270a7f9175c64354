"""Multi-agent prediction (`scene.max_targets > 1`): layout, decoder frames, masking, one compile."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab.core import metrics as metrics_lib
from jaxlab.core.config import ConfigError
from jaxlab.vectornet import data, polylines, run, training
from jaxlab.vectornet.polylines import Scene, Track

_GRADS = {}


def _batch(c, n=8):
    arrays = data.split_arrays(c, "train")
    return {k: jnp.asarray(arrays[k][:n]) for k in training.batch_keys(c)}


def _grads(c, params, batch, key=None):
    """Loss, metrics and gradients, value_and_grad jitted once per `scene.max_targets`."""
    k = c.scene.max_targets
    if k not in _GRADS:
        inner = training.make_loss_fn(c)
        _GRADS[k] = ([], None)
        traces = _GRADS[k][0]
        fn = jax.jit(jax.value_and_grad(lambda *a: (traces.append(1), inner(*a))[1], has_aux=True))
        _GRADS[k] = (traces, fn)
    (loss, (met, _)), g = _GRADS[k][1](params, {}, batch, jax.random.key(3) if key is None else key)
    return loss, met, g


def _assert_trees_equal(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_layout_picks_agents_with_full_history_and_future_nearest_first():
    steps = np.arange(50)
    line = lambda x0, y0, vx, vy: np.stack([x0 + vx * 0.1 * steps, y0 + vy * 0.1 * steps], 1)
    tracks = [Track("focal", "AGENT", steps, line(0, 0, 10, 0)),
              Track("far", "OTHERS", steps, line(30, 30, 0, 5)),           # full, farther
              Track("near", "OTHERS", steps, line(5, 3, 0, -5)),           # full, nearest
              Track("late", "OTHERS", steps[1:], line(1, -4, 5, 0)[1:]),   # misses history step 0
              Track("short", "OTHERS", steps[:45], line(2, 5, 5, 0)[:45])]  # misses future steps
    scene = Scene("s", [], tracks, "focal")
    out = polylines.vectorize(scene, num_obs=20, num_future=30, max_vectors=10, max_polylines=12, max_agents=4,
                              map_radius=50.0, lane_spacing=2.0, max_targets=4)
    # rows: focal (2 pieces), then agents nearest first, 2 pieces each; targets read each last piece
    assert out["target_valid"].tolist() == [True, True, True, False]
    focal_last = line(0, 0, 10, 0)[19]
    dist = {t.track_id: np.linalg.norm(t.xy[t.steps == 19][0] - focal_last) for t in tracks[1:]}
    order = sorted(dist, key=dist.get)
    assert out["targets"][1] == 2 + 2 * order.index("near") + 1
    assert out["targets"][2] == 2 + 2 * order.index("far") + 1
    # the focal target's heading is +x, so its frame is the world shifted by its last position
    np.testing.assert_allclose(out["target_origin"][1], [-14.0, -6.5], atol=1e-5)
    np.testing.assert_allclose(out["target_heading"][1:3], [-np.pi / 2, np.pi / 2], atol=1e-6)
    np.testing.assert_allclose(out["target_future"][2], line(30, 30, 0, 5)[20:] - focal_last, atol=1e-4)
    np.testing.assert_array_equal(out["target_future"][0], out["future"])
    row = out["targets"][1]
    np.testing.assert_allclose(out["vectors"][row, out["vec_mask"][row]][-1, 2:4], out["target_origin"][1], atol=1e-5)
    # the default budget keeps the focal target only
    one = polylines.vectorize(scene, num_obs=20, num_future=30, max_vectors=10, max_polylines=12, max_agents=4,
                              map_radius=50.0, lane_spacing=2.0)
    assert one["targets"].tolist() == [0] and one["target_valid"].tolist() == [True]


def test_decoder_frames_hand_worked_and_inverse():
    origin = jnp.array([[[1.0, 0.0]]])           # [B=1, K=1, 2]
    heading = jnp.array([[np.pi / 2]])
    xy = jnp.array([[[[1.0, 1.0], [0.0, 0.0]]]])  # [1, 1, T=2, 2]
    own = training.to_decoder_frame(xy, origin, heading, "own")
    np.testing.assert_allclose(own[0, 0], [[1.0, 0.0], [0.0, 1.0]], atol=1e-6)
    np.testing.assert_allclose(training.to_decoder_frame(xy, origin, heading, "focal")[0, 0], [[0, 1], [-1, 0]])
    for frame in ("own", "focal"):
        back = training.from_decoder_frame(training.to_decoder_frame(xy, origin, heading, frame), origin, heading,
                                           frame)
        np.testing.assert_allclose(back, xy, atol=1e-6)


def test_one_target_through_the_new_path_equals_the_single_target_path(small_config):
    c1, ck = small_config(1), small_config(4)
    params = training.init_state(c1).params
    b1, bk = _batch(c1), _batch(ck)
    model = training.make_model(c1, aux=False)
    p = {k: v for k, v in params.items() if k != "node_decoder"}
    both = jax.jit(lambda p, b: (model.apply({"params": p}, b["vectors"], b["vec_mask"], b["kind"]),
                                 model.apply({"params": p}, b["vectors"], b["vec_mask"], b["kind"],
                                             targets=jnp.zeros((8, 1), jnp.int32))))
    old, new = both(p, b1)
    np.testing.assert_array_equal(new[:, 0], old)
    # the K = 4 loss with only the focal slot valid is the K = 1 loss, with its gradients
    only_focal = dict(bk, target_valid=bk["target_valid"].at[:, 1:].set(False))
    l1, m1, g1 = _grads(c1, params, b1)
    lk, mk, gk = _grads(ck, params, only_focal)
    np.testing.assert_allclose(lk, l1, rtol=1e-6)
    np.testing.assert_allclose(mk["ade"], m1["ade"], rtol=1e-6)
    for x, y in zip(jax.tree.leaves(gk), jax.tree.leaves(g1), strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-7)
    assert float(bk["target_valid"][:, 1:].sum()) > 0  # the scenes do hold other predicted agents


def test_permuting_non_focal_agents_permutes_their_predictions(small_config):
    c = small_config(4)
    params = training.init_state(c).params
    b = _batch(c)
    rng = np.random.default_rng(0)
    rows = np.concatenate([[0], 1 + rng.permutation(c.scene.max_polylines - 1)])  # new row i holds old rows[i]
    where = np.argsort(rows)                                                     # old row r is now at where[r]
    slots = np.concatenate([[0], 1 + rng.permutation(3)])
    pb = {k: b[k][:, rows] for k in ("vectors", "vec_mask", "kind")}
    pb.update({k: b[k][:, slots] for k in training.TARGET_KEYS})
    pb["targets"] = jnp.asarray(where)[pb["targets"]]
    pb.update(future=b["future"], future_mask=b["future_mask"])
    pred = training.make_predict_fn(c)
    ref, got = np.asarray(pred(params, b)), np.asarray(pred(params, pb))
    valid = np.asarray(pb["target_valid"])
    assert valid[:, 1:].sum() >= 4
    np.testing.assert_allclose(got[valid], ref[:, slots][valid], rtol=1e-5, atol=1e-4)


def test_padded_targets_change_neither_loss_nor_gradients(small_config):
    c = small_config(4)
    params = training.init_state(c).params
    b = _batch(c)
    pad = ~np.asarray(b["target_valid"])
    assert pad.any()
    rng = np.random.default_rng(1)
    garbage = dict(b)
    for k, scale in [("target_future", 1e3), ("target_origin", 1e2), ("target_heading", 3.0)]:
        noise = jnp.asarray(rng.normal(size=b[k].shape) * scale, b[k].dtype)
        garbage[k] = jnp.where(pad.reshape(pad.shape + (1,) * (b[k].ndim - 2)), noise, b[k])
    garbage["targets"] = jnp.where(pad, jnp.asarray(rng.integers(0, c.scene.max_polylines, pad.shape)), b["targets"])
    garbage["target_future_mask"] = jnp.where(pad[..., None], jnp.asarray(rng.random(pad.shape + (30,)) < 0.5),
                                              b["target_future_mask"])
    la, ma, ga = _grads(c, params, b)
    lb, mb, gb = _grads(c, params, garbage)
    assert float(la) == float(lb) and float(ma["all_ade"]) == float(mb["all_ade"])
    _assert_trees_equal(ga, gb)


def test_multi_target_loss_compiles_once_per_budget(small_config):
    c = small_config(4)
    params = training.init_state(c).params
    arrays = data.split_arrays(c, "train")
    batch_fn = run.make_batch_fn(c, arrays)
    counts = [int(batch_fn(s)["target_valid"].sum()) for s in range(3)]
    assert len(set(counts)) > 1  # batches with different numbers of predicted agents
    for s in range(3):
        assert np.isfinite(float(_grads(c, params, batch_fn(s))[1]["all_ade"]))
    assert len(_GRADS[4][0]) == 1


def test_max_targets_needs_vectornet_with_agents(small_config):
    c = small_config(2, context="map")
    with pytest.raises(ConfigError, match="max_targets"):
        c.validate()


def test_smoke_train_with_all_targets(multi_target_run):
    c, wd, result = multi_target_run
    val, test = data.split_arrays(c, "val"), data.split_arrays(c, "test")
    everyone = result["test"]["all_targets"]
    assert everyone["num_targets"] == int(test["target_valid"].sum()) > result["test"]["num_scenes"]
    assert np.isfinite([everyone["ade"], everyone["fde"], result["test"]["ade"]]).all()
    # the logged validation metrics (JAX, per batch) equal the NumPy scores of the final state
    rows = metrics_lib.merge_by_step(metrics_lib.read_metrics(wd / "metrics.jsonl"))
    last = [r for r in rows if "eval_ade" in r][-1]
    assert last["step"] == 6 and "all_ade" in rows[-1]
    np.testing.assert_allclose(last["eval_all_ade"], result["val"]["all_targets"]["ade"], rtol=1e-5)
    np.testing.assert_allclose(last["eval_ade"], result["val"]["ade"], rtol=1e-5)
    assert last["eval_num_targets"] * len(val["kind"]) == pytest.approx(val["target_valid"].sum())
    # the focal slot of the all-agent predictions is the focal prediction
    params = run.load(wd).state.params
    np.testing.assert_array_equal(training.predict_targets(c, params, test)[:, 0], training.predict(c, params, test))
