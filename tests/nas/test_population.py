import jax
import jax.numpy as jnp
import numpy as np

from jaxlab.nas import population, widths


def test_vmapped_population_matches_sequential():
    C = 16
    w1 = jax.random.normal(jax.random.key(0), (8, C))
    w2 = jax.random.normal(jax.random.key(1), (C, 3))
    x = jax.random.normal(jax.random.key(2), (5, 8))

    def apply(params, x, arch):
        m = widths.width_mask(C, arch["width"], "bilateral", side=arch["side"])
        return jnp.tanh(x @ params[0] * m) @ params[1]

    archs = {"width": jnp.arange(1, 17, dtype=jnp.int32)[:8] * 2, "side": jnp.arange(8) % 2}
    traces = []

    def counted(p, x, a):
        traces.append(1)
        return apply(p, x, a)

    f = population.make_population_eval(counted)
    out = f((w1, w2), x, archs)
    assert out.shape == (8, 5, 3)
    for p in range(8):
        w = int(archs["width"][p])
        idx = widths.index_set(C, w, "bilateral", side=int(archs["side"][p]))
        ref = np.tanh(np.asarray(x) @ np.asarray(w1)[:, idx]) @ np.asarray(w2)[idx]
        np.testing.assert_allclose(out[p], ref, rtol=1e-5, atol=1e-5)
    f((w1, w2), x, jax.tree_util.tree_map(lambda a: a[::-1], archs))
    assert len(traces) == 1
    for chunk in (4, None):
        g = population.make_population_eval(apply, chunk=chunk)
        np.testing.assert_allclose(g((w1, w2), x, archs), out, rtol=1e-5, atol=1e-6)
    acc = population.accuracy_from_logits(out, jnp.zeros(5, jnp.int32))
    assert acc.shape == (8,)


def test_one_at_a_time_keeps_control_flow():
    """chunk=1 (the CPU default) applies each architecture unbatched, so a `cond` on the
    architecture stays a conditional (one branch runs) instead of a select of both."""
    def apply(params, x, arch):
        return jax.lax.cond(arch["deep"] > 0, lambda z: jnp.tanh(z @ params) @ params.T, lambda z: z, x)

    params = jax.random.normal(jax.random.key(0), (4, 4))
    x = jax.random.normal(jax.random.key(1), (3, 4))
    archs = {"deep": jnp.array([0, 1, 1])}
    hlo = lambda f: f.lower(params, x, archs).compile().as_text()
    one = population.make_population_eval(apply, chunk=1)
    assert "conditional" in hlo(one)
    assert "conditional" not in hlo(population.make_population_eval(apply, chunk=None))  # vmapped: select
    ref = np.stack([np.asarray(apply(params, x, {"deep": d})) for d in (0, 1, 1)])
    np.testing.assert_allclose(one(params, x, archs), ref, rtol=1e-5, atol=1e-6)
