import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab.lidarfirst import compare, configs, cost, detector, risk


def test_encode_then_decode_recovers_the_boxes():
    stride, grid = 4, (12, 16)  # a 48 x 64 image
    boxes = np.array([[3.0, 5.0, 21.0, 17.0], [30.5, 10.0, 40.0, 44.0], [50.0, 2.0, 58.0, 9.0]])
    classes = np.array([1, 2, 3])
    t = detector.encode(boxes, classes, grid, stride, max_objects=8)
    assert t["mask"].sum() == 3 and t["heatmap"].max() == 1.0
    # each centre cell holds exactly 1 in its class channel (centre (12, 11) / 4 -> cell (3, 2), ...)
    assert t["heatmap"][2, 3, 0] == 1.0 and t["heatmap"][6, 8, 1] == 1.0 and t["heatmap"][1, 13, 2] == 1.0
    heat = np.clip(t["heatmap"], 1e-6, 1 - 1e-6)
    logits = np.log(heat / (1 - heat))[None]
    size = np.zeros((1, *grid, 2), np.float32)
    offset = np.zeros((1, *grid, 2), np.float32)
    for k in range(3):
        iy, ix = divmod(int(t["index"][k]), grid[1])
        size[0, iy, ix], offset[0, iy, ix] = t["size"][k], t["offset"][k]
    b, s, c = detector.decode((jnp.asarray(logits), jnp.asarray(size), jnp.asarray(offset)), stride, top_k=3)
    order = np.argsort(np.asarray(c[0]))
    np.testing.assert_allclose(np.asarray(b[0])[order], boxes, atol=1e-4)
    np.testing.assert_array_equal(np.asarray(c[0])[order], classes)
    np.testing.assert_allclose(np.asarray(s[0]), 1.0, atol=1e-5)


def test_loss_matches_a_numpy_computation():
    rng = np.random.default_rng(0)
    grid = (6, 8)
    t = detector.encode(np.array([[2.0, 2.0, 14.0, 10.0], [16.0, 8.0, 28.0, 22.0]]), np.array([1, 3]), grid, 4, 4)
    logits, size, off = (rng.normal(size=(1, *grid, n)).astype(np.float32) for n in (3, 2, 2))
    tb = {k: v[None] for k, v in t.items()}
    total, parts = detector.loss((jnp.asarray(logits), jnp.asarray(size), jnp.asarray(off)), tb, size_weight=0.1)
    p = 1 / (1 + np.exp(-logits.astype(np.float64)))
    gt = t["heatmap"][None]
    focal = np.where(gt == 1.0, -(1 - p) ** 2 * np.log(p), -((1 - gt) ** 4) * p ** 2 * np.log(1 - p)).sum() / 2
    l_size = l_off = 0.0
    for k in range(2):
        iy, ix = divmod(int(t["index"][k]), grid[1])
        l_size += np.abs(size[0, iy, ix] - t["size"][k]).sum() / 2
        l_off += np.abs(off[0, iy, ix] - t["offset"][k]).sum() / 2
    assert float(parts["heatmap_loss"]) == pytest.approx(focal, rel=1e-4)
    assert float(total) == pytest.approx(focal + 0.1 * l_size + l_off, rel=1e-4)


def test_macs_hand_counted():
    class Net(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = nn.Conv(8, (3, 3), padding="SAME")(x)  # 10*12*8 outputs x 27 = 25920
            x = nn.Conv(4, (3, 3), strides=(2, 2), padding="SAME")(x)  # 5*6*4 x 72 = 8640
            return nn.Dense(7)(x.reshape(x.shape[0], -1))  # 2 * 7 x 120 = 1680

    x = jnp.zeros((2, 10, 12, 3))
    net = Net()
    params = net.init(jax.random.key(0), x)
    assert cost.count_macs(lambda v: net.apply(params, v), x) == 2 * (25920 + 8640) + 1680
    # the default detector: the MAC count grows with the image area as a conv net's should
    cfg = configs.get_config("smoke")
    model = detector.make_detector(cfg.detector)
    shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 32, 48, 3)))  # no compute
    a = cost.count_macs(model.apply, shapes, jax.ShapeDtypeStruct((1, 32, 48, 3), jnp.float32))
    b = cost.count_macs(model.apply, shapes, jax.ShapeDtypeStruct((1, 64, 96, 3), jnp.float32))
    assert b == 4 * a


def _row(gt_boxes, gt_classes, gt_risk, dets):
    return {"gt_boxes": gt_boxes, "gt_classes": gt_classes, "gt_risk": gt_risk,
            "detections": [{"box": b, "class": c, "score": s, "time_s": t} for b, c, s, t in dets]}


def test_risk_recall_and_threshold_choice_hand_worked():
    gt = [[0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10]]
    row = _row(gt, [1, 2, 1], [risk.IMMINENT, risk.POTENTIAL, risk.NONE],
               [([0, 0, 10, 10], 1, 0.9, 0.01),      # finds the imminent vehicle
                ([20, 0, 30, 10], 1, 0.8, 0.02),     # right place, wrong class: not a hit
                ([40, 0, 50, 11], 1, 0.3, 0.03),     # IoU 10/11 with the third: hit below 0.5 only
                ([60, 0, 70, 10], 3, 0.6, 0.04)])    # false positive
    r = compare.risk_recall([row], 0.5)
    assert r["recall_imminent"] == 1.0 and r["recall_potential"] == 0.0 and r["recall_none"] == 0.0
    assert r["recall_imminent_or_potential"] == 0.5 and r["precision"] == pytest.approx(1 / 3)
    assert compare.risk_recall([row], 0.25)["recall_none"] == 1.0
    # F1: at 0.25, 2 hits / (4 dets + 3 gt) = 4/7; at 0.65 (2 dets): 2/5; at 0.85: 2/4 = 0.5
    assert compare.f1_at([row], 0.25) == pytest.approx(4 / 7)
    assert compare.choose_threshold([row]) == 0.05  # ties resolve to the lowest threshold
    assert compare.first_risky_detection_time(row, 0.5) == 0.01


def test_risk_ranked_recall_hand_worked():
    gt = [[0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10]]
    row = _row(gt, [1, 2, 1], [risk.IMMINENT, risk.POTENTIAL, risk.NONE],
               [([0, 0, 10, 20], 3, 0.72, 0.01),   # covers the first (IoG 1, IoU 0.5), wrong class: counts
                ([21, 0, 30, 10], 1, 0.93, 0.02),  # IoG 0.9 and IoU 0.9 with the second
                ([40, 0, 47, 10], 1, 0.99, 0.03)])  # IoG 0.7 with the third: below 0.8
    r = compare.risk_ranked_recall([row])
    conf = r["confidence"]
    assert conf[0] == 0.5 and conf[-1] == 0.95 and len(conf) == 10
    at = {c: i for i, c in enumerate(conf)}
    assert r["imminent"][at[0.7]] == 1.0 and r["imminent"][at[0.75]] == 0.0  # found while 0.72 >= confidence
    assert r["potential"][at[0.9]] == 1.0 and r["potential"][at[0.95]] == 0.0
    assert all(v == 0.0 for v in r["none"])
    # IoU >= 0.8 for all objects: only the second box (IoU 0.9) until 0.93 drops out
    assert r["all"][at[0.5]] == pytest.approx(1 / 3) and r["all"][at[0.95]] == 0.0
    assert r["count_imminent"] == r["count_potential"] == r["count_none"] == 1 and r["count_all"] == 3
    empty = compare.risk_ranked_recall([_row(gt[:1], [1], [risk.NONE], [])])
    assert empty["imminent"] is None and empty["none"] == [0.0] * 10


@pytest.mark.slow  # the fast checks: test_loss_matches_a_numpy_computation, test_run's train-detector smoke
def test_centernet_training_lowers_the_loss_on_two_frames():
    import optax

    cfg = configs.get_config("smoke")
    cfg.scene.image_width, cfg.scene.image_height, cfg.scene.focal = 64, 48, 40.0
    x, t = detector.training_set(cfg, 1, 1)
    model = detector.make_detector(cfg.detector)
    params = model.init(jax.random.key(0), x[:1])["params"]
    tx = optax.adam(3e-3)
    opt = tx.init(params)

    @jax.jit
    def step(params, opt):
        val, g = jax.value_and_grad(lambda p: detector.loss(model.apply({"params": p}, x), t)[0])(params)
        upd, opt = tx.update(g, opt, params)
        return optax.apply_updates(params, upd), opt, val

    losses = []
    for _ in range(20):
        params, opt, val = step(params, opt)
        losses.append(float(val))
    assert losses[-1] < 0.5 * losses[0]
