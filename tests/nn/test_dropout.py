"""jaxlab.nn.dropout: the unrolled Threefry against JAX's generator and Flax's Dropout."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab.nn import dropout

SHAPES = [(), (1,), (7,), (3, 5), (2, 3, 5, 7), (32, 4, 16, 16)]
KEYS = {
    "typed": lambda: jax.random.key(3),
    "raw": lambda: jax.random.PRNGKey(11),
    "folded": lambda: jax.random.fold_in(jax.random.key(5), 9),
    "split": lambda: jax.random.split(jax.random.key(1234))[1],
}


@pytest.mark.parametrize("kind", sorted(KEYS))
@pytest.mark.parametrize("shape", SHAPES)
def test_bits_equal_jax_random_bits(kind, shape):
    key = KEYS[kind]()
    ours = jax.jit(dropout.threefry_bits, static_argnums=1)(key, shape)
    theirs = jax.random.bits(key, shape, jnp.uint32)
    assert ours.dtype == jnp.uint32 and ours.shape == shape
    np.testing.assert_array_equal(np.asarray(ours), np.asarray(theirs))


def test_block_function_known_answers():
    # Threefry-2x32-20 known-answer vectors of the Random123 distribution (kat_vectors), also
    # checked by JAX's own tests: (key, counter) -> output
    cases = [((0x00000000, 0x00000000), (0x00000000, 0x00000000), (0x6B200159, 0x99BA4EFE)),
             ((0xFFFFFFFF, 0xFFFFFFFF), (0xFFFFFFFF, 0xFFFFFFFF), (0x1CB996FC, 0xBB002BE7)),
             ((0x13198A2E, 0x03707344), (0x243F6A88, 0x85A308D3), (0xC4923A9C, 0x483DF7A0))]
    for key, ctr, want in cases:
        u = lambda a: jnp.asarray(np.uint32(a))
        got = dropout._threefry2x32(u(key[0]), u(key[1]), u(ctr[0]), u(ctr[1]))
        assert tuple(int(g) for g in got) == want


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9, 1 / 3])
def test_bernoulli_equals_jax(p):
    for kind in KEYS:
        key = KEYS[kind]()
        for shape in [(1000,), (8, 33, 17)]:
            np.testing.assert_array_equal(np.asarray(dropout.bernoulli(key, p, shape)),
                                          np.asarray(jax.random.bernoulli(key, p, shape)))


def test_other_generators_fall_back():
    # rbg keys carry four words and non-partitionable Threefry counts differently: both must take
    # JAX's own path (a wrong dispatch would give different bits, or fail on the key's shape)
    for key in (jax.random.key(7, impl="rbg"), jax.random.key(7, impl="unsafe_rbg")):
        np.testing.assert_array_equal(np.asarray(dropout.threefry_bits(key, (5, 9))),
                                      np.asarray(jax.random.bits(key, (5, 9), jnp.uint32)))
    batched = jax.random.split(jax.random.key(0), 3)
    with pytest.raises((TypeError, ValueError)):
        jax.random.bits(batched, (4,))  # JAX itself refuses a batch of keys; so must we
    with pytest.raises((TypeError, ValueError)):
        dropout.threefry_bits(batched, (4,))
    with jax.threefry_partitionable(False):
        key = jax.random.key(21)
        np.testing.assert_array_equal(np.asarray(dropout.threefry_bits(key, (6, 11))),
                                      np.asarray(jax.random.bits(key, (6, 11), jnp.uint32)))


@pytest.mark.parametrize("broadcast_dims", [(), (1,), (0, 2)])
@pytest.mark.parametrize("rate", [0.1, 0.5])
def test_dropout_equals_flax(broadcast_dims, rate):
    x = jax.random.normal(jax.random.key(0), (4, 200, 8))
    rngs = {"dropout": jax.random.key(2)}

    def run(module):
        f = lambda x: module.apply({}, x, deterministic=False, rngs=rngs)
        return jax.jit(f)(x), jax.grad(lambda x: jnp.sum(jnp.sin(f(x))))(x)

    ours, d_ours = run(dropout.Dropout(rate, broadcast_dims=broadcast_dims))
    theirs, d_theirs = run(nn.Dropout(rate, broadcast_dims=broadcast_dims))
    np.testing.assert_array_equal(np.asarray(ours), np.asarray(theirs))
    np.testing.assert_array_equal(np.asarray(d_ours), np.asarray(d_theirs))
    dropped = np.asarray(ours) == 0
    assert 0 < dropped.mean() < 1


def test_dropout_edge_rates_and_determinism():
    x = jnp.arange(1.0, 13.0).reshape(3, 4)
    rngs = {"dropout": jax.random.key(0)}
    np.testing.assert_array_equal(np.asarray(dropout.Dropout(0.0).apply({}, x, deterministic=False, rngs=rngs)), x)
    np.testing.assert_array_equal(np.asarray(dropout.Dropout(0.5).apply({}, x, deterministic=True)), x)
    np.testing.assert_array_equal(np.asarray(dropout.Dropout(1.0).apply({}, x, deterministic=False, rngs=rngs)),
                                  np.zeros((3, 4)))


def test_empty_inputs():
    x = jnp.zeros((0, 5))
    out = dropout.Dropout(0.3).apply({}, x, deterministic=False, rngs={"dropout": jax.random.key(1)})
    assert out.shape == (0, 5)
    assert dropout.threefry_bits(jax.random.key(1), (0, 5)).shape == (0, 5)
