"""GCN / SAGE / GAT against dense NumPy references, and padding invariance."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse as sp

from jaxlab.graph import graphs as G
from jaxlab.graph import layers as L


def random_graph(n=12, p=0.3, f=5, seed=0):
    rng = np.random.default_rng(seed)
    a = (rng.random((n, n)) < p).astype(np.float32)
    a = np.triu(a, 1)
    a = a + a.T
    a[3, :] = a[:, 3] = 0  # an isolated node
    x = rng.normal(size=(n, f)).astype(np.float32)
    return a, x


def dense_gcn(a, x, w, b):
    at = a + np.eye(len(a))
    d = at.sum(1)
    return (np.diag(d ** -0.5) @ at @ np.diag(d ** -0.5)) @ x @ w + b


def test_gcn_matches_dense_reference():
    a, x = random_graph()
    g = G.from_scipy(sp.csr_matrix(a), {"x": x})
    layer = L.GCNConv(4)
    params = layer.init(jax.random.key(0), g, jnp.asarray(x))
    rng = np.random.default_rng(1)
    params = jax.tree_util.tree_map(lambda p: jnp.asarray(rng.normal(size=p.shape), p.dtype), params)
    out = np.asarray(layer.apply(params, g, jnp.asarray(x)))
    w = np.asarray(params["params"]["linear"]["kernel"])
    b = np.asarray(params["params"]["bias"])
    np.testing.assert_allclose(out, dense_gcn(a, x, w, b), rtol=1e-4, atol=1e-4)
    # host-normalised graph with explicit self loops gives the same result
    gn = G.normalized_graph(sp.csr_matrix(a), {"x": x}, "gcn")
    out2 = np.asarray(L.GCNConv(4, normalize=False).apply(params, gn, jnp.asarray(x)))
    np.testing.assert_allclose(out2, out, rtol=1e-4, atol=1e-4)


def test_sage_matches_dense_reference():
    a, x = random_graph(seed=2)
    g = G.from_scipy(sp.csr_matrix(a), {"x": x})
    layer = L.SAGEConv(3)
    params = layer.init(jax.random.key(0), g, jnp.asarray(x))
    out = np.asarray(layer.apply(params, g, jnp.asarray(x)))
    p = params["params"]
    d = a.sum(1, keepdims=True)
    mean = np.where(d > 0, a @ x / np.maximum(d, 1), 0)
    ref = x @ np.asarray(p["self"]["kernel"]) + np.asarray(p["self"]["bias"]) + mean @ np.asarray(p["neigh"]["kernel"])
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)
    gn = G.normalized_graph(sp.csr_matrix(a), {"x": x}, "sage")
    out2 = np.asarray(L.SAGEConv(3, normalize=False).apply(params, gn, jnp.asarray(x)))
    np.testing.assert_allclose(out2, out, rtol=1e-4, atol=1e-4)


def dense_gat(a, x, p, heads, f, concat, add_self_loops=True, slope=0.2, xp=np):
    """GAT by its definition, PyG's semantics, on a dense edge count `a[v, u]` (how many
    edges u -> v; GAT ignores edge weights): each edge enters the softmax of its receiver
    once; with add_self_loops the diagonal is replaced by exactly one self loop per node;
    a node attending over nothing aggregates 0."""
    n = len(a)
    count = (np.asarray(a) > 0) * np.round(np.asarray(a))
    if add_self_loops:
        count = np.where(np.eye(n, dtype=bool), 1.0, count)
    live = count > 0
    z = (x @ p["linear"]["kernel"]).reshape(n, heads, f)
    src = (z * p["att_src"]).sum(-1)
    dst = (z * p["att_dst"]).sum(-1)
    outs = []
    for k in range(heads):
        e = dst[:, k][:, None] + src[:, k][None, :]
        e = xp.where(e > 0, e, slope * e)
        e = xp.where(live, e, -1e30)
        att = xp.exp(e - e.max(1, keepdims=True)) * count
        att = att / xp.maximum(att.sum(1, keepdims=True), 1e-30)
        outs.append(att @ z[:, k])
    out = xp.concatenate(outs, 1) if concat else sum(outs) / heads
    return out + p["bias"]


def graph_with_self_loops(seed, n=12, f=5, loops=True, duplicate=False):
    """A random symmetric graph `(count, x, graph)`; with `loops`, self loops on half the
    nodes (edge weights 1 or 2.5: GAT only masks with weights), with `duplicate` node 0's
    self loop twice. `count[v, u]`: the number of edges u -> v."""
    a, x = random_graph(n=n, f=f, seed=seed)
    w = a.copy()
    if loops:
        idx = np.arange(0, n, 2)
        a[idx, idx] = 1.0
        w[idx, idx] = np.where(idx % 4 == 0, 1.0, 2.5)
    if not duplicate:
        return a, x, G.from_scipy(sp.csr_matrix(w), {"x": x})
    r, s = np.nonzero(w)  # row-major: sorted by receiver, then sender
    weights = w[r, s]
    r, s, weights = np.insert(r, 0, 0), np.insert(s, 0, 0), np.insert(weights, 0, 1.0)
    a[0, 0] = 2.0
    return a, x, G.from_edge_list(s, r, n, {"x": x}, weights=weights)


def random_params(layer, g, x, seed):
    params = layer.init(jax.random.key(seed), g, jnp.asarray(x))
    rng = np.random.default_rng(seed)  # a nonzero bias and attention spread enough to matter
    return jax.tree_util.tree_map(lambda q: jnp.asarray(rng.normal(size=q.shape), q.dtype), params)


@pytest.mark.parametrize("add_self_loops", [True, False])
@pytest.mark.parametrize("loops", ["none", "some", "duplicated"])
@pytest.mark.parametrize("concat", [True, False])
def test_gat_matches_dense_reference(concat, loops, add_self_loops):
    a, x, g = graph_with_self_loops(3, loops=loops != "none", duplicate=loops == "duplicated")
    heads, f = 2, 3
    layer = L.GATConv(f, heads=heads, concat=concat, add_self_loops=add_self_loops)
    params = random_params(layer, g, x, 1)
    p = jax.tree_util.tree_map(np.asarray, params["params"])
    out = np.asarray(layer.apply(params, g, jnp.asarray(x)))
    ref = dense_gat(a, x, p, heads, f, concat, add_self_loops)
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("f", [1, 2 * L.CSR_MIN_FEATURES])  # scatter path / CSR path on CPU
def test_gat_with_self_loops_on_padded_graphs_matches_the_reference_with_gradients(f):
    """Self-loop edges in a padded, receiver-sorted graph with a reverse index (the CSR
    forward and transposed-gradient paths): outputs and gradients equal the dense reference."""
    a, x, g = graph_with_self_loops(7, n=20, f=6)
    padded = G.with_reverse_index(G.pad_to_budget(g)[0])
    assert np.all(np.diff(np.asarray(padded.receivers)) >= 0)
    heads = 2
    layer = L.GATConv(f, heads=heads)
    params = random_params(layer, g, x, 2)
    xp_ = jnp.asarray(np.asarray(padded.nodes["x"]))
    out = np.asarray(jax.jit(layer.apply)(params, padded, xp_))[:20]
    p = jax.tree_util.tree_map(np.asarray, params["params"])
    np.testing.assert_allclose(out, dense_gat(a, x, p, heads, f, True), rtol=1e-4, atol=1e-4)
    cot = jnp.asarray(np.random.default_rng(0).normal(size=(20, heads * f)), jnp.float32)
    loss = lambda q, h: jnp.sum(jnp.sin(layer.apply({"params": q}, padded, h)[:20]) * cot)
    loss_ref = lambda q, h: jnp.sum(jnp.sin(dense_gat(a, h[:20], q, heads, f, True, xp=jnp)) * cot)
    g1 = jax.jit(jax.grad(loss, argnums=(0, 1)))(params["params"], xp_)
    g2 = jax.grad(loss_ref, argnums=(0, 1))(params["params"], xp_)
    for u, v in zip(jax.tree_util.tree_leaves(g1), jax.tree_util.tree_leaves(g2)):
        np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("loops", [False, True])
@pytest.mark.parametrize("concat", [True, False])
def test_gat_matches_pytorch_geometric_with_copied_weights(concat, loops):
    torch = pytest.importorskip("torch")
    pyg_nn = pytest.importorskip("torch_geometric.nn")
    a, x, g = graph_with_self_loops(5, loops=loops)
    heads, f = 3, 4
    layer = L.GATConv(f, heads=heads, concat=concat)
    params = random_params(layer, g, x, 3)
    p = jax.tree_util.tree_map(np.asarray, params["params"])
    ref = pyg_nn.GATConv(x.shape[1], f, heads=heads, concat=concat, negative_slope=0.2,
                         add_self_loops=True, bias=True)
    with torch.no_grad():
        ref.lin.weight.copy_(torch.from_numpy(p["linear"]["kernel"].T.copy()))
        ref.att_src.copy_(torch.from_numpy(np.array(p["att_src"])))
        ref.att_dst.copy_(torch.from_numpy(np.array(p["att_dst"])))
        ref.bias.copy_(torch.from_numpy(np.array(p["bias"])))
        edge_index = torch.from_numpy(np.stack([np.asarray(g.senders), np.asarray(g.receivers)]).astype(np.int64))
        expected = ref(torch.from_numpy(x), edge_index).numpy()
    out = np.asarray(layer.apply(params, g, jnp.asarray(x)))
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("model", ["gcn", "sage", "gat"])
def test_padding_changes_neither_outputs_nor_grads(model):
    a, x = random_graph(n=10, seed=4)
    y = np.arange(10) % 3
    g = G.from_scipy(sp.csr_matrix(a), {"x": x, "y": y, "mask": np.ones(10, bool)})
    padded = G.pad(g, G.Budget(32, 128, 3))
    net = L.GNN(model=model, hidden=(8,), num_classes=3)
    params = net.init(jax.random.key(0), g)["params"]

    def loss(p, graph):
        from jaxlab.graph.train import masked_loss
        return masked_loss(net.apply({"params": p}, graph), graph)

    # outputs of real nodes identical
    apply = jax.jit(lambda p, graph: net.apply({"params": p}, graph))
    o1 = apply(params, g)
    o2 = apply(params, padded)
    np.testing.assert_allclose(np.asarray(o2[:10]), np.asarray(o1), rtol=1e-5, atol=1e-5)
    assert np.all(np.isfinite(np.asarray(o2)))
    # a loss over the padded graph (masked) has the same value and gradient
    vg = jax.jit(jax.value_and_grad(loss))
    l1, g1 = vg(params, G.pad(g, G.Budget(11, 64, 2)))
    l2, g2 = vg(params, padded)
    np.testing.assert_allclose(float(l1), float(l2), rtol=1e-5)
    for u, v in zip(jax.tree_util.tree_leaves(g1), jax.tree_util.tree_leaves(g2)):
        assert np.all(np.isfinite(np.asarray(v)))
        np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=1e-4, atol=1e-5)


def test_gat_grads_finite_with_empty_segments():
    # a graph whose padding nodes have no edges at all and big logits
    a, x = random_graph(n=6, seed=5)
    g = G.from_scipy(sp.csr_matrix(a), {"x": 100 * x})
    padded = G.pad(g, G.Budget(16, 64, 4))
    layer = L.GATConv(4, heads=2, add_self_loops=False)
    params = layer.init(jax.random.key(0), padded, padded.nodes["x"])
    grad = jax.jit(jax.grad(lambda p: jnp.sum(layer.apply(p, padded, padded.nodes["x"]) ** 2)))(params)
    assert all(np.all(np.isfinite(np.asarray(v))) for v in jax.tree_util.tree_leaves(grad))


@pytest.mark.parametrize("layer_cls", [L.GCNConv, L.SAGEConv])
@pytest.mark.parametrize("features", [2, 9])
def test_aggregate_first_or_last_gives_the_same_outputs_and_gradients(layer_cls, features):
    a, x = random_graph(seed=5)  # 5 input features: width 2 aggregates last, 9 first
    g = G.from_scipy(sp.csr_matrix(a), {"x": x})
    xj = jnp.asarray(x)
    params = layer_cls(features).init(jax.random.key(1), g, xj)

    def run(first):
        layer = layer_cls(features, aggregate_first=first)
        f = lambda p, h: jnp.sum(jnp.sin(layer.apply(p, g, h)))
        return layer.apply(params, g, xj), jax.grad(f, argnums=(0, 1))(params, xj)

    (o1, g1), (o2, g2), (o3, g3) = run(True), run(False), run(None)
    for o, gr in ((o2, g2), (o3, g3)):
        np.testing.assert_allclose(np.asarray(o), np.asarray(o1), rtol=1e-5, atol=1e-5)
        for u, v in zip(jax.tree_util.tree_leaves(gr), jax.tree_util.tree_leaves(g1)):
            np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=1e-4, atol=1e-5)


def test_attention_aggregate_vjp_matches_autodiff_of_the_plain_formula():
    rng = np.random.default_rng(3)
    n, e, h, f = 9, 30, 3, 4
    s = jnp.asarray(rng.integers(0, n, e))
    r = jnp.asarray(rng.integers(0, n, e))
    w = jnp.asarray(rng.random((e, h)), jnp.float32)
    z = jnp.asarray(rng.normal(size=(n, h, f)), jnp.float32)
    cot = jnp.asarray(rng.normal(size=(n, h, f)), jnp.float32)

    def plain(w, z):
        return jax.ops.segment_sum(w[..., None] * z[s], r, num_segments=n)

    out, vjp = jax.vjp(lambda w, z: L.attention_aggregate(w, z, s, r), w, z)
    ref, vjp_ref = jax.vjp(plain, w, z)
    np.testing.assert_allclose(np.asarray(out), np.asarray(ref), rtol=1e-6, atol=1e-6)
    for u, v in zip(vjp(cot), vjp_ref(cot)):
        np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=1e-5, atol=1e-6)
    # and against finite differences, in float64
    with jax.enable_x64(True):
        w64, z64 = w.astype(jnp.float64), z.astype(jnp.float64)
        from jax.test_util import check_grads

        check_grads(lambda w, z: L.attention_aggregate(w, z, s, r), (w64, z64),
                                  order=1, modes=("rev",))


@pytest.mark.parametrize("f", [L.CSR_MIN_FEATURES, 5, 2 * L.CSR_FEATURE_MULTIPLE])
@pytest.mark.parametrize("sort_edges", [True, False])
def test_csr_and_scatter_products_agree_with_their_gradients(sort_edges, f):
    # f = 2 and 5 take the CSR kernel on zero-padded features, 16 without padding
    rng = np.random.default_rng(4)
    n, e, h = 40, 300, 2
    s = rng.integers(0, n, e).astype(np.int32)
    r = rng.integers(0, n - 3, e).astype(np.int32)  # the last nodes receive nothing
    if sort_edges:
        order = np.argsort(r, kind="stable")
        s, r = s[order], r[order]
    s, r = jnp.asarray(s), jnp.asarray(r)
    w = jnp.asarray(rng.random((e, h)), jnp.float32)
    z = jnp.asarray(rng.normal(size=(n, h, f)), jnp.float32)
    ref = L._scatter_product(w, z, s, r)
    if sort_edges:
        np.testing.assert_allclose(np.asarray(L._csr_product(w, z, s, r)), np.asarray(ref),
                                   rtol=1e-5, atol=1e-5)
    # the dispatching op: CSR when sorted, scatter otherwise, same values either way
    f_op = jax.jit(lambda w, z: jnp.sum(jnp.tanh(L.attention_aggregate(w, z, s, r))))
    f_ref = lambda w, z: jnp.sum(jnp.tanh(L._scatter_product(w, z, s, r)))
    np.testing.assert_allclose(float(f_op(w, z)), float(f_ref(w, z)), rtol=1e-5)
    for u, v in zip(jax.grad(f_op, argnums=(0, 1))(w, z), jax.grad(f_ref, argnums=(0, 1))(w, z)):
        np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=1e-4, atol=1e-5)


def test_wide_gnn_on_a_sorted_padded_graph_matches_the_dense_reference():
    a, x = random_graph(n=30, p=0.2, f=20, seed=6)
    g = G.pad_to_budget(G.normalized_graph(sp.csr_matrix(a), {"x": x}, "gcn"))[0]
    assert np.all(np.diff(np.asarray(g.receivers)) >= 0)
    layer = L.GCNConv(24, normalize=False)  # 20 -> 24: aggregates first, 20 wide
    xp = jnp.asarray(np.asarray(g.nodes["x"]))
    params = layer.init(jax.random.key(0), g, xp)
    out = np.asarray(layer.apply(params, g, xp))[:30]
    w = np.asarray(params["params"]["linear"]["kernel"])
    np.testing.assert_allclose(out, dense_gcn(a, x, w, 0.0), rtol=1e-4, atol=1e-4)


def test_reverse_edges_and_the_transposed_csr_gradient_on_a_symmetric_padded_graph():
    a, _ = random_graph(n=50, p=0.15, f=1, seed=8)
    g = G.pad_to_budget(G.from_scipy(sp.csr_matrix(a)))[0]
    s, r = np.asarray(g.senders), np.asarray(g.receivers)
    n, e = g.nodes["x"].shape[0], len(s)
    indptr = L._row_starts(jnp.asarray(r), n)
    rev, ok = L.reverse_edges(jnp.asarray(s), jnp.asarray(r), indptr)
    assert bool(ok)
    rev = np.asarray(rev)
    real = int(g.n_edge[0])
    np.testing.assert_array_equal(s[rev[:real]], r[:real])
    np.testing.assert_array_equal(r[rev[:real]], s[:real])
    # a one-way edge has no reverse
    _, ok1 = L.reverse_edges(jnp.asarray(s[1:]), jnp.asarray(r[1:]), L._row_starts(jnp.asarray(r[1:]), n))
    assert not bool(ok1)

    rng = np.random.default_rng(9)
    w = jnp.asarray(rng.random((e, 2)), jnp.float32)
    z = jnp.asarray(rng.normal(size=(n, 2, L.CSR_MIN_FEATURES)), jnp.float32)
    sj, rj = jnp.asarray(s), jnp.asarray(r)
    f_op = jax.jit(lambda w, z: jnp.sum(jnp.sin(L.attention_aggregate(w, z, sj, rj))))
    f_ref = lambda w, z: jnp.sum(jnp.sin(L._scatter_product(w, z, sj, rj)))
    for u, v in zip(jax.grad(f_op, argnums=(0, 1))(w, z), jax.grad(f_ref, argnums=(0, 1))(w, z)):
        np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=1e-4, atol=1e-5)


def test_with_reverse_index_keeps_outputs_and_gradients_and_rejects_one_way_edges():
    a, x = random_graph(n=40, p=0.2, f=L.CSR_MIN_FEATURES, seed=10)
    g = G.pad_to_budget(G.from_scipy(sp.csr_matrix(a), {"x": x}))[0]
    gr = G.with_reverse_index(g)
    s, r, rev = np.asarray(g.senders), np.asarray(g.receivers), np.asarray(gr.edges["reverse"])
    np.testing.assert_array_equal(s[rev], r)
    np.testing.assert_array_equal(np.asarray(G.edge_weights(gr)), np.asarray(g.edges))
    net = L.GNN(model="gat", hidden=(2 * L.CSR_MIN_FEATURES,), num_classes=3, heads=2)
    params = net.init(jax.random.key(0), g)["params"]
    loss = lambda p, graph: jnp.sum(jnp.sin(net.apply({"params": p}, graph)))
    vg = jax.jit(jax.value_and_grad(loss))
    (v1, g1), (v2, g2) = (vg(params, h) for h in (g, gr))
    np.testing.assert_allclose(float(v1), float(v2), rtol=1e-5)
    for u, v in zip(jax.tree_util.tree_leaves(g1), jax.tree_util.tree_leaves(g2)):
        np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=1e-4, atol=1e-5)
    one_way = sp.csr_matrix(np.triu(a))
    with pytest.raises(ValueError, match="has no reverse edge"):
        G.with_reverse_index(G.from_scipy(one_way))
    shuffled = g._replace(senders=np.asarray(g.senders)[::-1], receivers=np.asarray(g.receivers)[::-1])
    with pytest.raises(ValueError, match="sorted by"):
        G.with_reverse_index(shuffled)
