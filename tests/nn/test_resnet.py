"""ResNet-18-style 32x32 network: shapes, stage features, parameter count, BatchNorm state."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab.nn.resnet import ResNet, ResNet18


def _expected_params(widths, stage_sizes, k, in_ch=3, norm_params=2):
    """Parameter count by hand: 3x3 convs without bias, norm scale+bias, 1x1 projections, dense."""
    n = 9 * in_ch * widths[0] + norm_params * widths[0]
    c = widths[0]
    for i, (blocks, w) in enumerate(zip(stage_sizes, widths)):
        for j in range(blocks):
            n += 9 * c * w + norm_params * w + 9 * w * w + norm_params * w
            if c != w or (i > 0 and j == 0):
                n += c * w + norm_params * w
            c = w
    return n + c * k + k


def _fake_init(model, x, seed=0):
    """Variables of `model` with NumPy random values (shapes from `eval_shape`): avoids
    compiling ~20 random initialisers, which is slow on a loaded CPU."""
    shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), x))
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda s: jnp.asarray(rng.normal(0.0, 0.2, s.shape) + (1.0 if len(s.shape) == 1 else 0.0),
                                              s.dtype), shapes)


def _count(tree):
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def test_resnet18_parameter_count():
    v = jax.eval_shape(lambda: ResNet18(10).init(jax.random.key(0), jnp.zeros((1, 32, 32, 3))))
    assert _count(v["params"]) == _expected_params((64, 128, 256, 512), (2, 2, 2, 2), 10) == 11_173_962
    assert _count(v["batch_stats"]) == 2 * (64 + 4 * 64 + 4 * 128 + 4 * 256 + 4 * 512 + 128 + 256 + 512)


@pytest.mark.parametrize("norm", ["batch", "group"])
def test_small_resnet_shapes_and_features(norm):
    model = ResNet(num_classes=10, stage_sizes=(1, 1, 1, 1), widths=(8, 16, 16, 32), norm=norm)
    x = jax.random.uniform(jax.random.key(0), (2, 32, 32, 3))
    variables = _fake_init(model, x)
    logits, feats = jax.jit(lambda v, x: model.apply(v, x, return_features=True))(variables, x)
    assert logits.shape == (2, 10) and logits.dtype == jnp.float32
    assert [f.shape for f in feats] == [(2, 32, 32, 8), (2, 16, 16, 16), (2, 8, 8, 16), (2, 4, 4, 32)]
    # the classifier is GAP + dense on the last stage
    d = variables["params"]["Dense_0"]
    np.testing.assert_allclose(np.asarray(logits), np.asarray(feats[-1].mean((1, 2)) @ d["kernel"] + d["bias"]),
                               rtol=1e-4, atol=1e-5)
    assert _count(variables["params"]) == _expected_params((8, 16, 16, 32), (1, 1, 1, 1), 10)
    if norm == "batch":
        out, upd = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"]))(variables, x)
        changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), upd["batch_stats"], variables["batch_stats"])
        assert all(jax.tree.leaves(changed))
    else:
        assert "batch_stats" not in variables


def test_resnet_rejects_mismatched_stages():
    x = jnp.zeros((1, 32, 32, 3))
    with pytest.raises(ValueError, match="same length"):
        jax.eval_shape(lambda: ResNet(stage_sizes=(1, 1), widths=(8,)).init(jax.random.key(0), x))
    with pytest.raises(ValueError, match="norm"):
        jax.eval_shape(lambda: ResNet(stage_sizes=(1,), widths=(8,), norm="instance").init(jax.random.key(0), x))
