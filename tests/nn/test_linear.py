import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab.nn import linear


def _data(shape_x, shape_w, seed=0):
    rng = np.random.default_rng(seed)
    return (jnp.asarray(rng.normal(size=shape_x), jnp.float32), jnp.asarray(rng.normal(size=shape_w), jnp.float32))


def _loss(fn):
    return lambda x, w: jnp.sum(jnp.sin(fn(x, w)) * jnp.arange(w.shape[1], dtype=jnp.float32))


def _plain(x, w):
    return jnp.einsum("...i,io->...o", x, w)


def _takes_copy_path(fn, *args):
    return "optimization_barrier" in str(jax.make_jaxpr(fn)(*args))


@pytest.mark.parametrize("shape_x", [(37, 6), (3, 5, 6)])
def test_matmul_values_and_gradients_equal_the_plain_product(shape_x):
    x, w = _data(shape_x, (6, 4))
    assert _takes_copy_path(jax.grad(_loss(linear.matmul), argnums=1), x, w)
    np.testing.assert_allclose(linear.matmul(x, w), _plain(x, w), rtol=1e-6, atol=1e-6)
    ours = jax.grad(_loss(linear.matmul), argnums=(0, 1))(x, w)
    ref = jax.grad(_loss(_plain), argnums=(0, 1))(x, w)
    for u, v in zip(ours, ref, strict=True):
        np.testing.assert_allclose(u, v, rtol=1e-5, atol=1e-5)
    # one argument differentiated at a time: the other's tangent is a symbolic zero
    np.testing.assert_allclose(jax.grad(_loss(linear.matmul), argnums=1)(x, w), ref[1], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(jax.grad(_loss(linear.matmul), argnums=0)(x, w), ref[0], rtol=1e-5, atol=1e-5)


def test_matmul_forward_mode_and_second_derivatives():
    x, w = _data((9, 3), (3, 2), seed=1)
    dx, dw = _data((9, 3), (3, 2), seed=2)
    ours = jax.jvp(_loss(linear.matmul), (x, w), (dx, dw))
    ref = jax.jvp(_loss(_plain), (x, w), (dx, dw))
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5)
    for argnums in (0, 1):
        h_ours = jax.hessian(_loss(linear.matmul), argnums=argnums)(x, w)
        h_ref = jax.hessian(_loss(_plain), argnums=argnums)(x, w)
        np.testing.assert_allclose(h_ours, h_ref, rtol=1e-4, atol=1e-4)
    # reverse over reverse (a gradient penalty on the input gradient)
    pen = lambda fn: lambda w: jnp.sum(jax.grad(_loss(fn), argnums=0)(x, w) ** 2)
    np.testing.assert_allclose(jax.grad(pen(linear.matmul))(w), jax.grad(pen(_plain))(w), rtol=1e-4, atol=1e-4)


def test_matmul_keeps_the_plain_product_above_the_row_limit():
    x, w = _data((linear.TRANSPOSE_COPY_MAX_ROWS + 1, 2), (2, 3))
    assert not _takes_copy_path(jax.grad(_loss(linear.matmul), argnums=1), x, w)
    x, w = _data((linear.TRANSPOSE_COPY_MAX_ROWS, 2), (2, 3))
    assert _takes_copy_path(jax.grad(_loss(linear.matmul), argnums=1), x, w)


def test_kernel_gradient_contracts_a_materialised_transpose_when_compiled():
    """The point of the module: in the compiled gradient no dot contracts both operands
    along their major axis (XLA:CPU's slow generic form). The plain product's gradient
    has such a dot, so the check can fail."""
    x, w = _data((256, 8), (8, 4))

    def major_major_dots(fn):
        hlo = jax.jit(jax.grad(_loss(fn), argnums=1)).lower(x, w).compile().as_text()
        dots = [line for line in hlo.splitlines() if re.search(r"= f32\[[\d,]+\]\{[\d,]+\} dot\(", line)]
        assert dots
        return [d for d in dots if "lhs_contracting_dims={0}" in d and "rhs_contracting_dims={0}" in d]

    assert major_major_dots(_plain)
    assert not major_major_dots(linear.matmul)


def test_kernel_gradient_equals_numpy():
    x, g = _data((2, 7, 5), (2, 7, 3), seed=3)
    np.testing.assert_allclose(linear.kernel_gradient(x, g), np.einsum("bri,bro->io", x, g), rtol=1e-5, atol=1e-5)
    big_x, big_g = _data((linear.TRANSPOSE_COPY_MAX_ROWS + 3, 2), (linear.TRANSPOSE_COPY_MAX_ROWS + 3, 2))
    np.testing.assert_allclose(linear.kernel_gradient(big_x, big_g), np.asarray(big_x).T @ np.asarray(big_g),
                               rtol=1e-4, atol=1e-3)
    with pytest.raises(ValueError, match="leading dimensions"):
        linear.kernel_gradient(x, g[:, :6])
    with pytest.raises(ValueError, match=r"x \[\.\.\., in\] and w \[in, out\]"):
        linear.matmul(x, g[0])


def test_dense_is_flax_dense_with_the_fast_kernel_gradient():
    x, _ = _data((4, 6, 5), (1, 1))

    class Two(nn.Module):
        cls: type

        @nn.compact
        def __call__(self, x):
            return self.cls(3, name="proj")(nn.relu(self.cls(7)(x)))

    ours, ref = Two(linear.Dense), Two(nn.Dense)
    params = ref.init(jax.random.key(0), x)
    assert jax.tree.structure(ours.init(jax.random.key(0), x)) == jax.tree.structure(params)
    np.testing.assert_allclose(ours.init(jax.random.key(0), x)["params"]["Dense_0"]["kernel"],
                               params["params"]["Dense_0"]["kernel"])
    np.testing.assert_allclose(ours.apply(params, x), ref.apply(params, x), rtol=1e-6, atol=1e-6)
    loss = lambda m: lambda p: jnp.sum(jnp.tanh(m.apply(p, x)) ** 2)
    assert _takes_copy_path(jax.grad(loss(ours)), params)
    for u, v in zip(jax.tree.leaves(jax.grad(loss(ours))(params)), jax.tree.leaves(jax.grad(loss(ref))(params)),
                    strict=True):
        np.testing.assert_allclose(u, v, rtol=1e-5, atol=1e-6)
    # a product that is not a Dense layer's goes to lax.dot_general unchanged
    a, b = _data((2, 3, 4), (2, 4, 5))
    dims = (((2,), (1,)), ((0,), (0,)))
    np.testing.assert_allclose(linear.dot_general(a, b, dims), jax.lax.dot_general(a, b, dims))
