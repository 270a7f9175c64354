"""`jaxlab.core.profiling.op_times` names the compiled program's operations and finds the costly one."""

import jax
import jax.numpy as jnp

from jaxlab.core import profiling


def test_op_times_names_hlo_operations_and_ranks_the_dot_first():
    a = jnp.ones((384, 384))

    @jax.jit
    def f(a):
        return jnp.tanh(a @ a @ a).sum() + a[0, 0]

    times = profiling.op_times(f, a, calls=4)
    hlo = f.lower(a).compile().as_text()
    assert times.per_op, "no operation recorded"
    for name in times.per_op:
        assert f"%{name} " in hlo or f"%{name}=" in hlo.replace(" = ", "="), name
    top = max(times.per_op, key=times.per_op.get)
    assert "dot" in top or "ynn" in top, top  # the product, alone or as a YNNPACK fusion
    # two 384^3 products dominate the tiny elementwise tail
    assert times.per_op[top] > 0.5 * sum(times.per_op.values())
    assert times.wall > 0


def test_op_times_feeds_a_donated_state_back():
    step = jax.jit(lambda s, x: (s + x, s.sum()), donate_argnums=(0,))
    times = profiling.op_times(step, jnp.zeros(1000), jnp.ones(1000), calls=3, feed_back=True)
    assert times.per_op
