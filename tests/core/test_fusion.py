"""`core.fusion.materialize`: the identity for values and every derivative, and a boundary
that survives XLA's optimisations."""

import jax
import jax.numpy as jnp
import numpy as np

from jaxlab.core.fusion import materialize


def _f(x):
    (y,) = materialize(jnp.exp(x) * x)
    return jnp.sum(y[:-1] * y[1:]) + jnp.sum(jnp.sin(y))


def _plain(x):
    y = jnp.exp(x) * x
    return jnp.sum(y[:-1] * y[1:]) + jnp.sum(jnp.sin(y))


def test_values_and_derivatives_are_those_of_the_identity():
    x = jnp.linspace(-1.0, 1.0, 7)
    np.testing.assert_allclose(_f(x), _plain(x), rtol=1e-6)
    np.testing.assert_allclose(jax.grad(_f)(x), jax.grad(_plain)(x), rtol=1e-5)
    np.testing.assert_allclose(jax.hessian(_f)(x), jax.hessian(_plain)(x), rtol=1e-4, atol=1e-6)
    xs = jnp.stack([x, 2 * x, -x])
    np.testing.assert_allclose(jax.vmap(jax.grad(_f))(xs), jax.vmap(jax.grad(_plain))(xs), rtol=1e-5)
    np.testing.assert_allclose(jax.jit(jax.vmap(_f))(xs), jax.vmap(_plain)(xs), rtol=1e-5)


def test_the_boundary_is_in_the_optimized_program_also_under_vmap():
    # An optimization barrier would be gone here (XLA:CPU drops it before fusion); the
    # conditional is what keeps `exp(x) * x` from being fused into both consumers.
    for fn, arg in ((_f, jnp.ones(64)), (jax.vmap(_f), jnp.ones((3, 64)))):
        hlo = jax.jit(fn).lower(arg).compile().as_text()
        assert "conditional" in hlo, "materialize left no fusion boundary"
        assert "conditional" not in jax.jit(_plain).lower(jnp.ones(64)).compile().as_text()



def _flip(x):
    return ~x if x.dtype == jnp.bool_ else x ^ jnp.ones((), x.dtype)


def test_integer_and_boolean_arrays_keep_their_values_dtype_and_boundary():
    # an integer's `isfinite` is a constant that XLA folds, and the conditional with it
    for x in (jnp.arange(-3, 61, dtype=jnp.int32), jnp.arange(64, dtype=jnp.uint8), jnp.arange(64) % 3 == 0):
        fn = lambda x: materialize(_flip(x))[0]
        out = jax.jit(fn)(x)
        assert out.dtype == x.dtype
        np.testing.assert_array_equal(np.asarray(out), np.asarray(_flip(x)))
        assert "conditional" in jax.jit(fn).lower(x).compile().as_text(), x.dtype


def test_empty_arrays():
    empty, full = jnp.zeros((0, 3)), jnp.arange(4.0)
    out = jax.jit(lambda a, b: materialize(a + 1, b * 2))(empty, full)
    assert out[0].shape == (0, 3)
    np.testing.assert_array_equal(np.asarray(out[1]), np.arange(4.0) * 2)
    assert jax.jit(lambda a: materialize(a)[0])(empty).shape == (0, 3)
