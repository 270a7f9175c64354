"""`jaxlab.nn.conv`: patches times the kernel equal XLA's convolution, values and gradients."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from jaxlab.nn import conv

DN = ("NHWC", "HWIO", "NHWC")

CASES = [  # (h, w, c_in, c_out, k, stride, padding, groups)
    (8, 8, 1, 4, 3, 1, "SAME", 1),
    (7, 5, 3, 4, 3, 2, "SAME", 1),       # odd maps, stride 2: the SAME padding splits unevenly
    (6, 6, 2, 3, 3, 1, "VALID", 1),
    (5, 5, 2, 3, 5, 1, ((2, 1), (0, 2)), 1),  # explicit asymmetric padding
    (9, 9, 4, 4, 3, 2, "SAME", 4),       # depthwise, stride 2
    (6, 6, 3, 6, 5, 1, "SAME", 3),       # depthwise with channel multiplier 2
    (4, 4, 3, 2, 1, 1, "VALID", 1),      # 1x1
    (2, 2, 4, 5, 3, 1, "SAME", 1),       # a map smaller than the kernel
]


@pytest.fixture
def force_patches(monkeypatch):
    monkeypatch.setenv("JAXLAB_CONV", "patches")


@pytest.mark.parametrize("h,w,c,f,k,s,pad,g", CASES)
def test_patches_match_xla_values_and_gradients(force_patches, h, w, c, f, k, s, pad, g):
    rng = np.random.default_rng(h * 100 + c * 10 + k)
    x = jnp.asarray(rng.normal(size=(3, h, w, c)), jnp.float32)
    kernel = jnp.asarray(rng.normal(size=(k, k, c // g, f)), jnp.float32)
    probe = jnp.asarray(rng.normal(size=lax.conv_general_dilated(
        x, kernel, (s, s), pad, dimension_numbers=DN, feature_group_count=g).shape), jnp.float32)

    def loss(fn):
        return lambda x, kk: jnp.sum(probe * fn(x, kk, (s, s), pad, dimension_numbers=DN, feature_group_count=g))

    ref, ref_grads = jax.value_and_grad(loss(lax.conv_general_dilated), argnums=(0, 1))(x, kernel)
    got, got_grads = jax.value_and_grad(loss(conv.conv_general_dilated), argnums=(0, 1))(x, kernel)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-4)
    for a, b in zip(got_grads, ref_grads):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-4)
    # the patches path was taken: no convolution in the program
    assert "convolution" not in jax.jit(loss(conv.conv_general_dilated)).lower(x, kernel).as_text("hlo")


def test_patches_are_the_input_windows():
    x = jnp.arange(2 * 4 * 4 * 1, dtype=jnp.float32).reshape(2, 4, 4, 1)
    p = conv.patches(x, (3, 3), (1, 1), "VALID")
    assert p.shape == (2, 2, 2, 3, 3, 1)
    np.testing.assert_array_equal(p[1, 1, 0, :, :, 0], x[1, 1:4, 0:3, 0])


def test_auto_rule_keeps_xla_for_ordinary_convolutions(monkeypatch):
    monkeypatch.setenv("JAXLAB_CONV", "auto")

    def hlo(h, c, f, k, g=1):
        x, kernel = jnp.ones((2, h, h, c)), jnp.ones((k, k, c // g, f))
        fn = lambda a, b: conv.conv_general_dilated(a, b, (1, 1), "SAME", dimension_numbers=DN, feature_group_count=g)
        return jax.jit(fn).lower(x, kernel).as_text("hlo")

    on_cpu = jax.default_backend() == "cpu"
    assert ("convolution" not in hlo(8, 32, 32, 3, g=32)) == on_cpu   # depthwise
    assert ("convolution" not in hlo(2, 16, 16, 3)) == on_cpu         # 2x2 output map
    assert ("convolution" not in hlo(8, 1, 16, 3)) == on_cpu          # one input channel
    assert "convolution" in hlo(8, 16, 16, 3)                         # ordinary: XLA
    monkeypatch.setenv("JAXLAB_CONV", "xla")
    assert "convolution" in hlo(8, 32, 32, 3, g=32)
    monkeypatch.setenv("JAXLAB_CONV", "fast")
    with pytest.raises(ValueError, match="JAXLAB_CONV"):
        hlo(8, 1, 16, 3)


def test_conv_module_has_flax_parameters_and_output(force_patches):
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 6, 6, 3)), jnp.float32)
    ours = conv.Conv(8, (3, 3), strides=2, padding="SAME")
    theirs = nn.Conv(8, (3, 3), strides=2, padding="SAME")
    params = theirs.init(jax.random.key(0), x)
    assert jax.tree.structure(ours.init(jax.random.key(0), x)) == jax.tree.structure(params)
    np.testing.assert_allclose(ours.apply(params, x), theirs.apply(params, x), rtol=1e-5, atol=1e-5)


def test_cost_analysis_counts_the_convolution_not_its_patches(force_patches):
    from jaxlab.core.flops import xla_flops

    x, kernel = jnp.ones((1, 8, 8, 4)), jnp.ones((3, 3, 4, 8))
    fn = lambda a, b: conv.conv_general_dilated(a, b, (1, 1), "SAME", dimension_numbers=DN)
    # SAME 3x3 on 8 pixels: 8 * 3 - 2 in-bounds taps per axis (the border loses one
    # each side); patches would multiply the zero taps too (8 * 3 per axis)
    assert xla_flops(fn, x, kernel) == pytest.approx(2 * 22 * 22 * 4 * 8, rel=0.02)
    with conv.use("xla"):
        assert conv.conv_mode() == "xla"
    assert conv.conv_mode() == "patches"


def test_depthwise_second_order_and_vmapped_gradients_match_xla(force_patches):
    """The depthwise path's fusion boundary (a conditional) must be invisible to
    forward-over-reverse differentiation (Hessians) and to vmap of the gradient."""
    x = jax.random.normal(jax.random.key(0), (2, 6, 6, 4))
    k = jax.random.normal(jax.random.key(1), (3, 3, 1, 4))

    def loss(impl):
        return lambda x, k: jnp.sum(jnp.tanh(impl(x, k, (2, 2), "SAME", dimension_numbers=DN,
                                                   feature_group_count=4)) ** 2)

    ours, ref = loss(conv.conv_general_dilated), loss(lax.conv_general_dilated)
    np.testing.assert_allclose(jax.hessian(ours, argnums=1)(x, k), jax.hessian(ref, argnums=1)(x, k),
                               rtol=1e-4, atol=1e-4)
    per_example = lambda f: jax.vmap(jax.grad(f, argnums=(0, 1)), in_axes=(0, None))(x[:, None], k)
    for a, b in zip(per_example(ours), per_example(ref)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_xla_path_gradients_match_lax_through_the_fusion_boundary(monkeypatch):
    """Ordinary convolutions keep XLA's kernels; on the CPU their backward pass runs behind
    a fusion boundary (`_xla_bounded`). Its gradients, also reverse-over-reverse and under
    vmap, and with a modulated input (the producer the boundary keeps out of the
    transposes), must be those of `lax.conv_general_dilated`."""
    monkeypatch.setenv("JAXLAB_CONV", "auto")
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.normal(size=(2, 6, 6, 5)), jnp.float32)
    s = jnp.asarray(rng.normal(size=(2, 5)), jnp.float32)
    k = jnp.asarray(rng.normal(size=(3, 3, 5, 4)), jnp.float32)

    def loss(impl, stride=(1, 1), groups=1):
        def f(x, s, k):
            y = impl(x * s[:, None, None, :], k, stride, "SAME", dimension_numbers=DN, feature_group_count=groups)
            return jnp.sum(jnp.tanh(y) ** 2)
        return f

    for stride in ((1, 1), (2, 2)):
        ours, ref = loss(conv.conv_general_dilated, stride), loss(lax.conv_general_dilated, stride)
        for a, b in zip(jax.grad(ours, argnums=(0, 1, 2))(x, s, k), jax.grad(ref, argnums=(0, 1, 2))(x, s, k)):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    # grouped (the fused modulated convolution of StyleGAN2 is one)
    kg = jnp.asarray(rng.normal(size=(3, 3, 1, 10)), jnp.float32)
    ours, ref = loss(conv.conv_general_dilated, groups=5), loss(lax.conv_general_dilated, groups=5)
    for a, b in zip(jax.grad(ours, argnums=(0, 2))(x, s, kg), jax.grad(ref, argnums=(0, 2))(x, s, kg)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    # reverse over reverse (R1 and path-length penalties) and per-example gradients
    ours, ref = loss(conv.conv_general_dilated), loss(lax.conv_general_dilated)
    r1 = lambda f: jax.grad(lambda k: jnp.sum(jax.grad(f)(x, s, k) ** 2))(k)
    np.testing.assert_allclose(r1(ours), r1(ref), rtol=1e-4, atol=1e-4)
    per_example = lambda f: jax.vmap(jax.grad(f, argnums=2), in_axes=(0, 0, None))(x[:, None], s[:, None], k)
    np.testing.assert_allclose(per_example(ours), per_example(ref), rtol=1e-4, atol=1e-5)
    # the gradient of a vmapped loss (ensemble members as in MH-UI), per-member kernels
    members = jnp.stack([k, -k, 2 * k])
    vm = lambda f: jax.grad(lambda ks: jnp.sum(jax.vmap(f, in_axes=(None, None, 0))(x, s, ks)))(members)
    np.testing.assert_allclose(vm(ours), vm(ref), rtol=1e-4, atol=1e-4)
    hlo = jax.jit(jax.grad(ours, argnums=2)).lower(x, s, k).compile().as_text()
    assert ("conditional" in hlo) == (jax.default_backend() == "cpu")


def test_xla_path_keeps_forward_mode(monkeypatch):
    monkeypatch.setenv("JAXLAB_CONV", "auto")
    x = jax.random.normal(jax.random.key(0), (2, 5, 5, 3))
    k = jax.random.normal(jax.random.key(1), (3, 3, 3, 4))
    f = lambda impl: (lambda x, k: jnp.tanh(impl(x, k, (1, 1), "SAME", dimension_numbers=DN)))
    ours, ref = f(conv.conv_general_dilated), f(lax.conv_general_dilated)
    for a, b in zip(jax.jvp(ours, (x, k), (x, k)), jax.jvp(ref, (x, k), (x, k))):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(jax.jacfwd(ours, argnums=1)(x, k), jax.jacfwd(ref, argnums=1)(x, k),
                               rtol=1e-4, atol=1e-5)
