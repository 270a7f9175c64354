"""Random streams of MH-UI: every key is the config's seed folded with named constants.

    key = rng.key(config.seed, rng.ENSEMBLE, rng.INIT)

MH-UI draws its random bits with JAX's "rbg" implementation (XLA's RngBitGenerator)
rather than the default threefry: XLA:CPU compiles every threefry draw slowly (about
1 s of CPU per random op on 2 cores here; a SmallCNN `init` took 7 s, the train step
with dropout twice as long as without), and MH-UI draws in many programs (initialisation,
dropout, random starts, noise, MC dropout). rbg streams are deterministic for a given
backend and XLA version, which is what resuming a run needs; they may differ across
backends. The training loop's own step keys (threefry, `jaxlab.core.train.fit`) are
turned into rbg keys with `from_step_key`, a pure function of the step key.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["IMPL", "key", "from_step_key", "INIT", "NETWORKS", "ATTACK", "ADAPTIVE_ATTACK", "MC_DROPOUT", "VAL_SPLIT",
           "PROTOCOL_ATTACK"]

IMPL = "rbg"

# Stream constants (each folded into the seed; all distinct).
INIT = 0  # a network's initialisation (after its network stream)
# init, batches and step keys of each network
NETWORKS = {"mhui": 1, "ensemble": 2, "prior_net": 3, "prior_net_fkl": 4}
ATTACK = 11  # random starts of the non-adaptive attack sets
ADAPTIVE_ATTACK = 12  # random starts of the adaptive attack sets
MC_DROPOUT = 21  # MC-dropout masks at evaluation (the same masks for clean and adversarial inputs)
VAL_SPLIT = 31  # the split of the test set into validation and test halves (`protocol`)
PROTOCOL_ATTACK = 32  # random starts and EOT dropout masks of the `protocol` attacks


def key(seed: int, *streams: int) -> jax.Array:
    """`fold_in(... fold_in(key(seed, impl="rbg"), streams[0]) ..., streams[-1])`."""
    k = jax.random.key(seed, impl=IMPL)
    for s in streams:
        k = jax.random.fold_in(k, s)
    return k


def from_step_key(step_key: jax.Array, stream: int) -> jax.Array:
    """An rbg key from a threefry step key of `fit` and a stream (no random draw: the key's
    two words and the stream fill the rbg key's four words)."""
    data = jax.random.key_data(step_key).astype(jnp.uint32)
    s = jnp.asarray(stream, jnp.uint32)
    return jax.random.wrap_key_data(jnp.stack([data[0], data[1], s, data[0] ^ data[1] ^ s]), impl=IMPL)
