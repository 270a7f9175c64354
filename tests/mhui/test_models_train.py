"""Multi-exit networks, joint training on digits (every head's accuracy), RKL loss."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

from jaxlab.core.config import ConfigError
from jaxlab.mhui import attacks, configs, detect, models, rng
from jaxlab.mhui import data as data_lib
from jaxlab.mhui import train as training
from jaxlab.nn.cnn import SmallCNN
from jaxlab.nn.resnet import ResNet


def _fake_init(model, x, seed=0):
    """(params, extra) with NumPy random values in the shapes of `model.init` (no RNG compile)."""
    shapes = jax.eval_shape(lambda: models.init_model(model, jax.random.key(0), x))
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda s: jnp.asarray(rng.normal(0.0, 0.3, s.shape) + (1.0 if len(s.shape) == 1 else 0.0),
                                              s.dtype), shapes)


def test_multi_exit_cnn_heads_are_gap_linear_on_stage_features():
    model = models.MultiExit(SmallCNN(stages=(8, 16, 16), blocks_per_stage=1))
    x = jnp.asarray(np.random.default_rng(0).uniform(size=(3, 8, 8, 1)), jnp.float32)
    params, extra = _fake_init(model, x)
    logits, _ = jax.jit(lambda p, x: models.forward(model, p, extra, x))(params, x)
    assert logits.shape == (3, 3, 10) and extra == {}
    # recompute head 1 from the backbone's stage-1 features
    bb = SmallCNN(stages=(8, 16, 16), blocks_per_stage=1)
    final, feats = jax.jit(lambda p, x: bb.apply({"params": p}, x, return_features=True))(params["backbone"], x)
    d = params["head_1"]["Dense_0"]
    np.testing.assert_allclose(np.asarray(logits[1]), np.asarray(feats[1].mean((1, 2)) @ d["kernel"] + d["bias"]),
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(logits[-1]), np.asarray(final), rtol=1e-6)


def test_multi_exit_resnet_shapes():
    model = models.MultiExit(ResNet(stage_sizes=(2, 2, 2, 2), widths=(64, 128, 256, 512), norm="batch"))
    out = jax.eval_shape(lambda: model.init_with_output(jax.random.key(0), jnp.zeros((2, 32, 32, 3)))[0])
    assert out.shape == (4, 2, 10)
    shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((2, 32, 32, 3))))
    assert set(shapes["params"]) == {"backbone", "head_0", "head_1", "head_2"}
    assert shapes["params"]["head_2"]["Dense_0"]["kernel"].shape == (256, 10)


def test_mc_forward_samples_differ():
    model = models.MultiExit(SmallCNN(stages=(8, 16), blocks_per_stage=1, dropout_rate=0.5))
    x = jnp.asarray(np.random.default_rng(0).uniform(size=(2, 8, 8, 1)), jnp.float32)
    params, extra = _fake_init(model, x)
    mc = jax.jit(lambda p, x, k: models.mc_forward(model, p, extra, x, k, 3))(params, x, rng.key(2))
    assert mc.shape == (3, 2, 2, 10)
    assert not np.allclose(mc[0], mc[1])
    det, _ = jax.jit(lambda p, x: models.forward(model, p, extra, x))(params, x)
    assert not np.allclose(det, mc[0])


def test_dirichlet_kl_matches_monte_carlo():
    a, b = np.array([[2.0, 3.0, 0.7]]), np.array([[1.0, 5.0, 2.0]])
    kl = float(training.dirichlet_kl(jnp.asarray(a), jnp.asarray(b))[0])
    p = np.random.default_rng(0).dirichlet(a[0], size=200_000)
    mc = np.mean(scipy.stats.dirichlet(a[0]).logpdf(p.T) - scipy.stats.dirichlet(b[0]).logpdf(p.T))
    assert kl == pytest.approx(mc, abs=0.02)
    assert float(training.dirichlet_kl(jnp.asarray(a), jnp.asarray(a))[0]) == pytest.approx(0.0, abs=1e-5)


def test_head_weights_validation():
    cfg = configs.get_config("smoke")
    bad = dataclasses.replace(cfg.train, head_weights=(1.0, 2.0))
    with pytest.raises(ConfigError, match="head_weights"):
        training._head_weights(bad, 3)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    cfg = configs.get_config("smoke")
    cfg.loop.num_steps, cfg.loop.eval_every, cfg.data.num_eval = 160, 80, 0  # the whole test set
    cfg.model.stages, cfg.model.norm = (16, 32, 64), "group"
    data = data_lib.load_dataset(cfg.data)
    model, state, history = training.train_network(cfg, "mhui", data, tmp_path_factory.mktemp("mhui"))
    params, extra = jax.tree.map(lambda a: a[0], (state.params, state.extra))
    return cfg, data, model, params, extra, history


def test_joint_training_reaches_95_percent_on_final_head(trained):
    cfg, data, model, params, extra, history = trained
    accs = training.head_accuracies(model, params, extra, data["x_test"], data["y_test"])
    print("test accuracy per head:", [round(float(a), 3) for a in accs])
    assert len(accs) == len(cfg.model.stages)
    assert accs[-1] >= 0.95
    assert accs[-2] >= 0.8  # the middle head learns as well: the heads are trained jointly
    # the fit loop logged every head's loss, and every head's loss went down
    first, last = history[0], history[-1]
    assert all(last[f"ce_head{h}"] < first[f"ce_head{h}"] for h in range(len(accs)) if f"ce_head{h}" in first)
    assert all(f"eval_test_acc_head{h}" in last for h in range(len(accs)))


def test_pgd_on_trained_net_lowers_accuracy_and_detectors_run(trained):
    cfg, data, model, params, extra, _ = trained
    x, y = jnp.asarray(data["x_test"][:128]), jnp.asarray(data["y_test"][:128])

    def loss(p, xx, yy):
        import optax
        return optax.softmax_cross_entropy_with_integer_labels(models.forward(model, p, extra, xx)[0][-1], yy)

    run = jax.jit(lambda p, x, y, k: attacks.pgd(lambda a, b: loss(p, a, b), x, y, k, eps=0.2, step_size=0.05,
                                           num_steps=10))
    adv = run(params, x, y, rng.key(0))
    fwd = jax.jit(lambda p, xx: models.forward(model, p, extra, xx)[0])
    logits_c, logits_a = fwd(params, x), fwd(params, adv)
    acc_c = float(jnp.mean(logits_c[-1].argmax(-1) == y))
    acc_a = float(jnp.mean(logits_a[-1].argmax(-1) == y))
    assert acc_a < acc_c - 0.3
    scores_fn = jax.jit(lambda z: detect.mhui_scores(z, cfg.detect))
    for logits in (logits_c, logits_a):
        scores = scores_fn(logits)
        assert set(scores) == {"precision", "diff_entropy", "mutual_info", "epkl", "entropy", "max_prob"}
        assert all(s.shape == (128,) and bool(jnp.all(jnp.isfinite(s))) for s in scores.values())
