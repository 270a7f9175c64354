"""The two R-GCN sums of `HeteroGCN` against each other and against a dense NumPy loop."""

import jax
import jax.numpy as jnp
import jax.test_util
import numpy as np
import pytest

from jaxlab.coral.models import HeteroGCN, group_by_relation, grouped_matmul

R = 6


def _graph(seed, n=40, m=300):
    rng = np.random.default_rng(seed)
    senders = rng.integers(0, n - 1, m).astype(np.int32)
    receivers = rng.integers(0, n - 1, m).astype(np.int32)
    relation = rng.choice([0, 1, 3, 5], m).astype(np.int32)    # relations 2 and 4 have no edge
    weight = rng.uniform(0.5, 2.0, m).astype(np.float32)
    weight[rng.random(m) < 0.2] = 0.0                           # hidden label edges
    senders[-20:], receivers[-20:], relation[-20:], weight[-20:] = n - 1, n - 1, 0, 0.0   # padding
    emb = rng.integers(0, 12, n).astype(np.int32)
    return emb, senders, receivers, relation, weight


def _dense_reference(params, emb, senders, receivers, relation, weight):
    """One R-GCN layer by loops over nodes and relations, in float64."""
    p = jax.tree.map(lambda x: np.asarray(x, np.float64), params)
    x0 = p["embed"]["embedding"][emb]
    n = len(emb)
    deg = 1.0 + np.bincount(receivers, weight, n)
    out = x0 @ p["self_0"]["kernel"] + p["self_0"]["bias"]
    out = out / deg[:, None]
    for i in range(n):
        for r in range(R):
            sel = (receivers == i) & (relation == r)
            total = weight[sel].sum()
            if total > 0:
                mean = (weight[sel, None] * x0[senders[sel]]).sum(0) / total
                out[i] += mean @ p["relation_0"][r]
    return out + x0


@pytest.mark.parametrize("seed", [0, 1])
def test_grouped_and_relation_first_equal_a_dense_loop_with_gradients(seed):
    emb, s, r, rel, w = _graph(seed)
    n = len(emb)
    model = HeteroGCN(num_embeddings=12, num_relations=R, features=8, layers=1)
    params = model.init(jax.random.key(seed), emb, s, r, rel, w)["params"]
    groups = group_by_relation(r, rel, n, R)
    first = model.apply({"params": params}, emb, s, r, rel, w)
    grouped = model.apply({"params": params}, emb, s, r, rel, w, groups=groups)
    ref = _dense_reference(params, emb, s, r, rel, w)
    np.testing.assert_allclose(first, ref, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(grouped, ref, rtol=1e-4, atol=1e-5)

    probe = jnp.asarray(np.random.default_rng(9).standard_normal((n, 8)), jnp.float32)

    def loss(p, g, ww):
        return jnp.sum(jnp.tanh(model.apply({"params": p}, emb, s, r, rel, ww, groups=g)) * probe)

    g_first = jax.grad(loss, argnums=(0, 2))(params, None, w)
    g_grouped = jax.jit(jax.grad(loss, argnums=(0, 2)), static_argnums=())(params, groups, w)
    for a, b in zip(jax.tree.leaves(g_first), jax.tree.leaves(g_grouped), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    # the relation matrices of relations without edges get no gradient, the others do
    g_rel = np.asarray(g_grouped[0]["relation_0"])
    assert np.all(g_rel[[2, 4]] == 0) and np.all(np.abs(g_rel[[0, 1, 3, 5]]).sum((1, 2)) > 0)


def test_grouped_matmul_gradients_match_finite_differences():
    rng = np.random.default_rng(0)
    sizes = (3, 0, 5)
    x = rng.standard_normal((8, 4))
    w = rng.standard_normal((4, 4, 2))    # one more relation than groups: gets a zero gradient
    ref_y = np.concatenate([x[:3] @ w[0], x[3:] @ w[2]])
    np.testing.assert_allclose(grouped_matmul(jnp.asarray(x, jnp.float32), jnp.asarray(w, jnp.float32), sizes),
                               ref_y, rtol=1e-5)
    with jax.enable_x64():
        f = lambda x, w: jnp.sum(jnp.sin(grouped_matmul(x, w, sizes)))
        jax.test_util.check_grads(f, (jnp.asarray(x), jnp.asarray(w)), order=2, modes=["rev"])
        dw = jax.grad(f, argnums=1)(jnp.asarray(x), jnp.asarray(w))
    assert np.all(np.asarray(dw)[[1, 3]] == 0)


def test_group_by_relation_pairs_and_padding():
    receivers = np.array([2, 2, 0, 2, 1, 0], np.int32)
    relation = np.array([1, 1, 1, 0, 1, 0], np.int32)
    g = group_by_relation(receivers, relation, num_nodes=4, num_relations=3, multiple=4)
    assert g.sizes == (4, 4, 0)       # relation 0: pairs (0, 2) and (0, 0); relation 1: (1, 0), (1, 1), (1, 2)
    pair = np.asarray(g.edge_pair)
    recv = np.asarray(g.pair_receiver)
    np.testing.assert_array_equal(recv[pair], receivers)                      # each edge's pair has its receiver
    np.testing.assert_array_equal(pair < 4, relation == 0)                    # and lies in its relation's block
    assert pair[0] == pair[1] and len(set(pair.tolist())) == 5                 # same (receiver, relation) shares
    unused = np.setdiff1d(np.arange(8), pair)
    np.testing.assert_array_equal(recv[unused], 3)                            # padding pairs go to the last node
    with pytest.raises(ValueError, match=r"relation ids must lie in \[0, 3\)"):
        group_by_relation(receivers, relation + 2, 4, 3)
