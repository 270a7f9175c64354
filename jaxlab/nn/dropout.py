"""Dropout whose random mask XLA:CPU draws in one fused pass.

JAX's default random-number generator is Threefry-2x32 (20 rounds of add, rotate and xor
on a counter). On the CPU backend JAX lowers it as a rolled loop of five iterations, so
that programs compile quickly; XLA then runs every round as a pass of its own over the
whole array, writing and reading it back. Unrolled, the 20 rounds and the comparison with
the keep probability are one elementwise fusion: the bits of `[32, 4, 64, 64]` attention
weights (524,288 draws) took 4.36 ms with `jax.random.bits` and 0.64 ms unrolled (one core,
medians of 30). XLA then fuses that pass into every consumer of the mask (the forward and
the backward pass of each dropout layer), drawing it twice; on the CPU `Dropout` therefore
draws it once into memory (`jaxlab.core.fusion.materialize`) and both passes read it.

What dropout at rate 0.1 costs CoditT5's training step at its experiments' batch (tiny T5,
32 x 64 target and 32 x 48 source tokens, 24 dropout layers, about 5.0 M draws), against the
same step without dropout in one process (medians of 25; one core / two cores): Flax's
`Dropout` 48.3 / 40.3 ms, the unrolled draws 14.8 / 8.6 ms, drawn once 10.6 / 5.2 ms; its
compilation, on one core, 8.5 s with Flax's layer, 4.7 s with this one, 2.8 s without dropout. The
PyTorch peers of `scripts/bench_coditt5.py` (`--dropout 0.1` against `0`) take 40-49 ms
longer per step with the same dropout layers (experiments/coditt5/README.md).

`threefry_bits` and `bernoulli` compute exactly what `jax.random.bits` and
`jax.random.bernoulli` compute (the same counters, rounds and float conversion: bit for bit,
tested), and `Dropout` is `flax.linen.Dropout` drawing its mask with them: the same masks
for the same keys, so training runs, checkpoints and resumed runs are unchanged. Keys of
other implementations (`rbg`, `unsafe_rbg`), batched keys, the non-partitionable Threefry
counters (`jax_threefry_partitionable=False`) and arrays of 2**32 elements or more take
JAX's own functions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from jaxlab.core.fusion import materialize

__all__ = ["Dropout", "bernoulli", "threefry_bits"]

# Threefry-2x32's rotation constants (two alternating groups of four rounds) and key-schedule
# parity (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC 2011).
_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_PARITY = 0x1BD11BDA


def _rotate_left(x, r: int):
    return lax.shift_left(x, jnp.uint32(r)) | lax.shift_right_logical(x, jnp.uint32(32 - r))


def _threefry2x32(k0, k1, x0, x1):
    """Threefry-2x32 with 20 rounds of the counter words `(x0, x1)` under the key `(k0, k1)`,
    written out round by round (no loop), so that XLA fuses it into one elementwise pass."""
    schedule = (k0, k1, k0 ^ k1 ^ jnp.uint32(_PARITY))
    x0, x1 = x0 + k0, x1 + k1
    for block in range(5):
        for r in _ROTATIONS[block % 2]:
            x0 = x0 + x1
            x1 = _rotate_left(x1, r) ^ x0
        x0 = x0 + schedule[(block + 1) % 3]
        x1 = x1 + schedule[(block + 2) % 3] + jnp.uint32(block + 1)
    return x0, x1


def _threefry_words(key) -> tuple | None:
    """The two uint32 key words of a single Threefry key (typed or raw), or None where JAX's
    own functions must be used (another implementation, a batch of keys, the original
    non-partitionable counter layout)."""
    if not jax.config.jax_threefry_partitionable:
        return None
    if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
        if key.shape != () or str(jax.random.key_impl(key)) != "threefry2x32":
            return None
        data = jax.random.key_data(key)
    else:
        if key.shape != (2,) or key.dtype != jnp.uint32 or jax.config.jax_default_prng_impl != "threefry2x32":
            return None
        data = key
    return data[0], data[1]


def threefry_bits(key, shape: Sequence[int]) -> jax.Array:
    """`jax.random.bits(key, shape, jnp.uint32)`, with the Threefry rounds unrolled (see the
    module docstring); falls back to `jax.random.bits` where the two could differ."""
    shape = tuple(int(d) for d in shape)
    size = math.prod(shape)
    words = _threefry_words(key)
    if words is None or size >= 2**32:
        return jax.random.bits(key, shape, jnp.uint32)
    # partitionable Threefry hashes the 64-bit row-major index (high word 0 below 2**32)
    # and returns the xor of the two output words
    counter = lax.iota(jnp.uint32, size).reshape(shape)
    hi, lo = _threefry2x32(words[0], words[1], jnp.zeros(shape, jnp.uint32), counter)
    return hi ^ lo


def bernoulli(key, p: float, shape: Sequence[int]) -> jax.Array:
    """`jax.random.bernoulli(key, p, shape)` for a float `p` (float32 draws): True with
    probability `p`, the same values as JAX's function for the same key."""
    bits = threefry_bits(key, shape)
    # JAX's uniform in [0, 1): 23 random mantissa bits under the exponent of 1.0, minus 1
    one = jnp.uint32(0x3F800000)
    u = lax.bitcast_convert_type(lax.shift_right_logical(bits, jnp.uint32(9)) | one, jnp.float32) - 1.0
    return u < jnp.float32(p)


class Dropout(nn.Dropout):
    """`flax.linen.Dropout` (same attributes, rate semantics and RNG collection) whose mask
    comes from `bernoulli`: the same masks as Flax's for the same keys, computed in one fused
    pass on the CPU (see the module docstring)."""

    @nn.compact
    def __call__(self, inputs, deterministic: bool | None = None, rng=None):
        deterministic = nn.merge_param("deterministic", self.deterministic, deterministic)
        if self.rate == 0.0 or deterministic:
            return inputs
        if self.rate == 1.0:  # as Flax: no division by a zero keep probability
            return jnp.zeros_like(inputs)
        keep_prob = 1.0 - self.rate
        if rng is None:
            rng = self.make_rng(self.rng_collection)
        mask_shape = list(inputs.shape)
        for dim in self.broadcast_dims:
            mask_shape[dim] = 1
        mask = bernoulli(rng, keep_prob, mask_shape)
        if jax.default_backend() == "cpu":
            # one pass draws the mask; the forward and backward passes read it (XLA would
            # otherwise draw it again inside each of its consumers)
            (mask,) = materialize(mask)
        mask = jnp.broadcast_to(mask, inputs.shape)
        return lax.select(mask, inputs / keep_prob, jnp.zeros_like(inputs))
