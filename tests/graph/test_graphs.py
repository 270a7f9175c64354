"""GraphsTuple helpers: construction, normalisation, padding, masks, compile counts."""

import jax
import jax.numpy as jnp
import jraph
import numpy as np
import pytest

from jaxlab.graph import graphs as G


def test_from_edge_list_and_scipy_round_trip():
    s, r = [0, 1, 2, 2], [1, 2, 0, 3]
    g = G.from_edge_list(s, r, 4, symmetric=True)
    a = G.to_scipy(g).toarray()
    ref = np.zeros((4, 4))
    for u, v in zip(s, r):
        ref[u, v] = ref[v, u] = 1
    np.testing.assert_array_equal(a, ref)
    w = [0.5, 2.0, 1.0, 3.0]
    g2 = G.from_edge_list(s, r, 4, weights=w)
    np.testing.assert_array_equal(np.asarray(g2.senders), s)
    np.testing.assert_allclose(G.to_scipy(g2).toarray()[r, s], w)
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        G.from_edge_list([0], [4], 4)


def test_normalize_adjacency_matches_dense():
    rng = np.random.default_rng(0)
    a = np.triu((rng.random((7, 7)) < 0.4).astype(float), 1)
    a = a + a.T
    at = a + np.eye(7)
    d = at.sum(1)
    np.testing.assert_allclose(G.normalize_adjacency(a, "sym").toarray(),
                               at / np.sqrt(d[:, None] * d[None, :]), rtol=1e-6)
    dr = a.sum(1, keepdims=True)
    np.testing.assert_allclose(G.normalize_adjacency(a, "row").toarray(),
                               np.where(dr > 0, a / np.maximum(dr, 1), 0), rtol=1e-6)
    np.testing.assert_array_equal(G.add_self_loops(a).toarray(), at)
    np.testing.assert_array_equal(G.remove_self_loops(at).toarray(), a)


def test_bucket_ladder_bounds_distinct_budgets():
    sizes = np.arange(1, 20000)
    buckets = {G.bucket(int(n)) for n in sizes}
    assert all(G.bucket(int(n)) >= n + 1 for n in sizes[::97])
    assert all(G.bucket(int(n)) % 64 == 0 for n in sizes[::97])
    assert len(buckets) <= 25
    # waste bounded by the growth factor (beyond the first rungs)
    assert max(G.bucket(int(n)) / (n + 1) for n in sizes[1000:]) <= 1.25 + 64 / 1000


def test_bucket_without_ladder_is_the_next_multiple():
    sizes = np.arange(0, 3000, 7)
    tight = np.array([G.bucket(int(n), 64, growth=None) for n in sizes])
    np.testing.assert_array_equal(tight, 64 * np.ceil((sizes + 1) / 64))
    with pytest.raises(ValueError, match="growth"):
        G.bucket(10, 64, growth=1.0)


def test_pad_fast_equals_jraph_pad_with_graphs_and_masks():
    g = G.from_edge_list([0, 1, 2], [1, 2, 0], 3, symmetric=True)
    g = g._replace(nodes={"x": np.arange(6, dtype=np.float32).reshape(3, 2), "y": np.array([1, 2, 3])})
    b = G.Budget(8, 10, 2)
    p1 = G.pad(g, b)
    p2 = G.pad_fast(g.senders, g.receivers, g.edges, g.nodes, b)
    for u, v in zip(jax.tree_util.tree_leaves(p1), jax.tree_util.tree_leaves(p2)):
        np.testing.assert_array_equal(np.asarray(u), np.asarray(v))
    np.testing.assert_array_equal(np.asarray(G.node_mask(p1)), [1, 1, 1, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(np.asarray(G.edge_mask(p1)), [1] * 6 + [0] * 4)
    np.testing.assert_array_equal(np.asarray(G.graph_mask(p1)), [1, 0])
    z = G.zero_out_padding(jax.tree_util.tree_map(jnp.asarray, p1._replace(
        nodes={"x": np.ones((8, 2), np.float32)})))
    np.testing.assert_array_equal(np.asarray(z.nodes["x"]).sum(1), [2, 2, 2, 0, 0, 0, 0, 0])


def _reference_reverse(s, r):
    """rev by a dictionary from (sender, receiver) to the edge indices, in order."""
    where = {}
    for e, key in enumerate(zip(s.tolist(), r.tolist())):
        where.setdefault(key, []).append(e)
    seen = {}
    rev = []
    for u, v in zip(s.tolist(), r.tolist()):
        k = seen.get((u, v), 0)
        seen[(u, v)] = k + 1
        rev.append(where[(v, u)][k])
    return np.asarray(rev)


@pytest.mark.parametrize("num_nodes", [50, 70_000])  # one and two 16-bit radix passes
def test_reverse_index_matches_a_dictionary_reference(num_nodes):
    rng = np.random.default_rng(3)
    u = rng.integers(0, num_nodes, 400)
    v = rng.integers(0, num_nodes, 400)
    loops = rng.integers(0, num_nodes, 5)
    # symmetric, with self loops, repeated edges and repeated self loops
    s = np.concatenate([u, v, u[:20], v[:20], loops, loops[:2]])
    r = np.concatenate([v, u, v[:20], u[:20], loops, loops[:2]])
    order = np.lexsort((s, r))  # (receiver, sender) order
    s, r = s[order], r[order]
    rev = G.reverse_index(s, r)
    assert rev is not None and rev.dtype == np.int32
    np.testing.assert_array_equal(rev, _reference_reverse(s, r))
    np.testing.assert_array_equal(rev[rev], np.arange(len(s)))
    drop = int(np.flatnonzero(s != r)[0])
    keep = np.arange(len(s)) != drop
    assert G.reverse_index(s[keep], r[keep]) is None


def test_with_reverse_index_names_the_edge_without_a_reverse():
    g = G.pad_to_budget(G.from_edge_list([0, 1, 2], [1, 2, 3], 4, symmetric=True))[0]
    s, r = np.asarray(g.senders), np.asarray(g.receivers)
    real = int(g.n_edge[0])
    keep = np.ones(len(s), bool)
    keep[2] = False  # 2 -> 1 gone: 1 -> 2 has no reverse
    h = g._replace(senders=s[keep], receivers=r[keep], edges=np.asarray(g.edges)[keep],
                   n_edge=np.asarray([real - 1, len(s) - real]))
    bad = int(np.flatnonzero((s[keep] == 1) & (r[keep] == 2))[0])
    with pytest.raises(ValueError, match=f"edge {bad} \\(1 -> 2\\) has no reverse edge"):
        G.with_reverse_index(h)
    twice = np.insert(np.arange(len(s)), 2, 2)  # 2 -> 1 twice, 1 -> 2 once
    h = g._replace(senders=s[twice], receivers=r[twice], edges=np.asarray(g.edges)[twice],
                   n_edge=np.asarray([real + 1, len(s) - real]))
    with pytest.raises(ValueError, match="repeated a different number of times"):
        G.with_reverse_index(h)


def test_pad_fast_attaches_the_reverse_index_with_padding_edges_as_their_own():
    g = G.from_edge_list([0, 1, 2], [1, 2, 0], 3, symmetric=True)
    s, r = np.asarray(g.senders), np.asarray(g.receivers)
    p = G.pad_fast(s, r, g.edges, {"x": np.zeros((3, 1), np.float32)}, G.Budget(8, 10, 2),
                   reverse=G.reverse_index(s, r))
    rev = p.edges["reverse"]
    np.testing.assert_array_equal(rev[:6], _reference_reverse(s, r))
    np.testing.assert_array_equal(rev[6:], np.arange(6, 10))
    np.testing.assert_array_equal(np.asarray(p.senders)[rev], np.asarray(p.receivers))
    np.testing.assert_array_equal(G.edge_weights(p), G.pad(g, G.Budget(8, 10, 2)).edges)
    np.testing.assert_array_equal(G.with_reverse_index(p).edges["reverse"], rev)
    z = G.zero_out_padding(jax.tree_util.tree_map(jnp.asarray, p))
    np.testing.assert_array_equal(np.asarray(z.edges["reverse"]), rev)
    np.testing.assert_array_equal(np.asarray(z.edges["weight"]), G.edge_weights(p))


def test_pad_needs_room_for_padding_node_and_graph():
    g = G.from_edge_list([0], [1], 2, symmetric=True)
    with pytest.raises(ValueError, match="n_node >= real \\+ 1"):
        G.pad(g, G.Budget(2, 8, 2))
    with pytest.raises(ValueError, match="n_graph >= real \\+ 1"):
        G.pad(g, G.Budget(8, 8, 1))
    with pytest.raises(RuntimeError):  # jraph's own check: needs one padding node
        jraph.pad_with_graphs(g, 2, 8, 2)


def test_one_compile_per_budget():
    traces = []

    @jax.jit
    def f(graph):
        traces.append(1)
        return jnp.sum(jnp.where(G.node_mask(graph), graph.nodes["x"][:, 0], 0.0))

    rng = np.random.default_rng(0)
    budgets = set()
    for n in rng.integers(5, 200, 30):
        s = rng.integers(0, n, 2 * n)
        r = rng.integers(0, n, 2 * n)
        g = G.from_edge_list(s, r, int(n), nodes={"x": np.ones((n, 1), np.float32)}, weights=np.ones(2 * n))
        p, b = G.pad_to_budget(g)
        budgets.add(b)
        assert float(f(p)) == n
    assert len(traces) == len(budgets) < 30


def test_graph_pool_against_numpy_with_padding():
    rng = np.random.default_rng(0)
    sizes = [3, 1, 4]
    graphs = [G.from_edge_list([0], [0], k, nodes={"x": rng.normal(size=(k, 2)).astype(np.float32)},
                               weights=[1.0]) for k in sizes]
    batched = G.pad(jraph.batch_np(graphs), G.Budget(12, 8, 5))
    h = jnp.asarray(batched.nodes["x"])
    xs = [g.nodes["x"] for g in graphs]
    for reduce, fn in (("sum", np.sum), ("mean", np.mean), ("max", np.max)):
        out = np.asarray(jax.jit(lambda g, h: G.graph_pool(g, h, reduce))(batched, h))
        np.testing.assert_allclose(out[:3], np.stack([fn(x, 0) for x in xs]), rtol=1e-6)
        np.testing.assert_array_equal(out[4], 0)  # an empty padding graph
    grad = jax.grad(lambda h: jnp.sum(G.graph_pool(batched, h, "max")))(h)
    assert np.all(np.isfinite(np.asarray(grad)))
