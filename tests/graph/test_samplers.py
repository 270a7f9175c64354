"""Samplers: induced subgraphs, GraphSAINT normalisation vs exact inclusion
probabilities, Cluster-GCN coverage, neighbour fan-outs, determinism, global node ids,
inductive training on a GraphSAINT folder's adj_train."""

import json

import numpy as np
import pytest
import scipy.sparse as sp

from jaxlab.graph import data as D
from jaxlab.graph import graphs as G
from jaxlab.graph import samplers as S


def small_graph(n=14, seed=0):
    rng = np.random.default_rng(seed)
    a = np.triu((rng.random((n, n)) < 0.25).astype(np.float32), 1)
    for i in range(n - 1):  # connected path so no node is isolated
        a[i, i + 1] = 1
    a = a + a.T
    nodes = {"x": rng.normal(size=(n, 3)).astype(np.float32), "y": np.arange(n) % 2}
    return sp.csr_matrix(a), nodes


def pair_prob(not_u, not_v, not_uv):
    return 1 - not_u - not_v + not_uv


def exact_node_sampler(a, budget):
    deg = np.asarray(a.sum(1)).ravel()
    q = deg / deg.sum()
    p = 1 - (1 - q) ** budget
    qq = q[:, None] + q[None, :]
    pe = pair_prob(((1 - q) ** budget)[:, None], ((1 - q) ** budget)[None, :],
                   np.clip(1 - qq, 0, 1) ** budget)
    return p, pe


def exact_rw_sampler(a, roots, length):
    n = a.shape[0]
    A = a.toarray()
    P = A / A.sum(1, keepdims=True)

    def avoid(S):
        keep = np.ones(n, bool)
        keep[list(S)] = False
        Q = P * keep[None, :]
        v = keep.astype(float)
        for _ in range(length):
            v = Q @ v
        return float(np.mean(np.where(keep, v, 0.0)))

    single = np.array([avoid([v]) for v in range(n)])
    p = 1 - single ** roots
    pe = np.zeros((n, n))
    for u in range(n):
        for v in range(n):
            if A[u, v]:
                pe[u, v] = pair_prob(single[u] ** roots, single[v] ** roots, avoid([u, v]) ** roots)
    return p, pe


def exact_edge_sampler(a, m):
    n = a.shape[0]
    deg = np.asarray(a.sum(1)).ravel()
    coo = sp.triu(a, 1).tocoo()
    w = 1 / deg[coo.row] + 1 / deg[coo.col]
    w = w / w.sum()
    inc = np.zeros((n, len(w)))
    inc[coo.row, np.arange(len(w))] = 1
    inc[coo.col, np.arange(len(w))] = 1
    miss1 = (1 - inc @ w) ** m
    p = 1 - miss1
    both = np.clip(1 - ((inc[:, None, :] + inc[None, :, :]) > 0) @ w, 0, 1) ** m
    pe = pair_prob(miss1[:, None], miss1[None, :], both)
    return p, pe


@pytest.mark.parametrize("kind", ["node", "rw", "edge"])
def test_saint_estimates_converge_to_exact_inclusion_probabilities(kind):
    a, nodes = small_graph()
    tm = np.ones(a.shape[0], bool)
    if kind == "node":
        s = S.SaintNodeSampler(a, nodes, tm, budget=5, seed=1)
        p, pe = exact_node_sampler(a, 5)
    elif kind == "rw":
        s = S.SaintRWSampler(a, nodes, tm, num_roots=2, walk_length=2, seed=1)
        p, pe = exact_rw_sampler(a, 2, 2)
    else:
        s = S.SaintEdgeSampler(a, nodes, tm, num_edges=3, seed=1)
        p, pe = exact_edge_sampler(a, 3)
    n_sub = 6000
    p_hat, pe_hat = s.estimate_normalization(n_sub)
    np.testing.assert_allclose(p_hat, p, atol=0.03)
    coo = s.adj.tocoo()  # CSR entry order: row = receiver, col = sender
    np.testing.assert_allclose(pe_hat, pe[coo.row, coo.col], atol=0.03)
    # the estimates are not trivially constant: they vary as the exact ones do
    assert np.corrcoef(p_hat, p)[0, 1] > 0.9


def test_saint_batch_is_induced_normalised_and_deterministic():
    a, nodes = small_graph(n=30, seed=2)
    tm = np.ones(30, bool)
    s = S.SaintRWSampler(a, nodes, tm, num_roots=3, walk_length=2, seed=0,
                         norm_aggr=True, norm_loss=True, model="sage")
    with pytest.raises(RuntimeError, match="estimate_normalization"):
        S.SaintRWSampler(a, nodes, tm, norm_aggr=True).batch(0)
    s.estimate_normalization(200)
    g = s.batch(5)
    g2 = s.batch(5)
    np.testing.assert_array_equal(g.senders, g2.senders)
    n = int(g.n_node[0])
    e = int(g.n_edge[0])
    # recover original ids through the features
    ids = np.array([np.flatnonzero((nodes["x"] == row).all(1))[0] for row in g.nodes["x"][:n]])
    sub = a[ids][:, ids].toarray()
    got = np.zeros((n, n))
    got[g.receivers[:e], g.senders[:e]] = 1
    np.testing.assert_array_equal(got, sub)  # induced subgraph, no self loops for sage
    # alpha_{u,v} = C_v / C_{u,v} times the full-graph row normalisation 1 / deg_v
    deg = np.asarray(a.sum(1)).ravel()
    for k in range(e):
        v, u = ids[g.receivers[k]], ids[g.senders[k]]
        eid = a.indptr[v] + np.searchsorted(a.indices[a.indptr[v]:a.indptr[v + 1]], u)
        np.testing.assert_allclose(G.edge_weights(g)[k], s.node_count[v] / s.edge_count[eid] / deg[v],
                                   rtol=1e-5)
    lw = g.nodes["loss_weight"][:n]
    np.testing.assert_allclose(lw, 200 / (s.node_count[ids] * 30), rtol=1e-5)
    assert np.all(g.nodes["loss_weight"][n:] == 0) and g.nodes["x"].shape[0] >= n + 1


def test_cluster_sampler_covers_all_training_nodes_each_epoch():
    d = D.contextual_sbm(600, num_classes=3, avg_degree=6, seed=0)
    nodes = {"x": d.x, "y": d.y}
    tm = d.masks()["train_mask"]
    s = S.ClusterSampler(d.adj, nodes, tm, num_parts=12, clusters_per_batch=3, model="gcn")
    assert s.steps_per_epoch() == 4
    seen = []
    for step in range(4):
        nodes_, sidx, r, eid, mask = s.sample_step(step)
        assert mask.all()
        seen.append(nodes_)
        g = s.batch(step)
        n = int(g.n_node[0])
        # gcn graphs carry one self loop per node
        assert np.sum(g.senders[: int(g.n_edge[0])] == g.receivers[: int(g.n_edge[0])]) == n
    allseen = np.concatenate(seen)
    assert len(allseen) == len(np.unique(allseen)) == tm.sum()
    # METIS keeps most edges inside clusters (far more than a random split would)
    sizes = [len(c) for c in s.clusters]
    assert min(sizes) > 0 and max(sizes) < 2.5 * np.mean(sizes)


def test_neighbor_sampler_fanouts():
    d = D.contextual_sbm(800, num_classes=2, avg_degree=20, seed=1)
    nodes = {"x": d.x, "y": d.y}
    tm = d.masks()["train_mask"]
    s = S.NeighborSampler(d.adj, nodes, tm, batch_size=32, fanouts=(5, 3), model="sage")
    ids, snd, rcv, _, mask = s.sample_step(0)
    assert mask.sum() == 32
    seeds = np.flatnonzero(mask)
    indeg = np.bincount(rcv, minlength=len(ids))
    assert np.all(indeg[seeds] <= 5 + 3)  # a seed can also be a hop-1 node
    assert np.all(indeg <= 8)
    # every sampled edge exists in the graph
    assert np.all(np.asarray(d.adj[ids[rcv], ids[snd]]).ravel() == 1)
    # seeds with >= 5 neighbours got exactly 5 distinct hop-1 neighbours at least
    full_deg = np.diff(d.adj.indptr)[ids[seeds]]
    assert np.all(indeg[seeds] >= np.minimum(full_deg, 5))
    g = s.batch(0)
    assert g.nodes["mask"].sum() == 32


def test_full_batch_matches_normalized_graph():
    d = D.karate_club()
    fb = S.FullBatch(d.adj, {"x": d.x, "y": d.y}, d.masks()["train_mask"], model="gcn")
    g = fb.batch(3)
    n = int(g.n_node[0])
    a = G.to_scipy(g, g.nodes["x"].shape[0]).toarray()[:n, :n]
    np.testing.assert_allclose(a, G.normalize_adjacency(d.adj, "sym").toarray(), rtol=1e-6)
    rev = np.asarray(g.edges["reverse"])  # symmetric: the reverse-edge index is attached
    np.testing.assert_array_equal(np.asarray(g.senders)[rev], np.asarray(g.receivers))
    directed = sp.csr_matrix(np.triu(d.adj.toarray()))
    assert not isinstance(S.FullBatch(directed, {"x": d.x, "y": d.y}, d.masks()["train_mask"]).batch(0).edges, dict)


def test_full_batch_pads_to_the_next_multiple_only():
    # padded once, so no bucket ladder: 1000 + 1 nodes -> 1024 (the ladder's rung is 1216)
    d = D.contextual_sbm(1000, seed=0)
    g = S.FullBatch(d.adj, {"x": d.x, "y": d.y}, d.masks()["train_mask"], model="gcn").batch(0)
    e = d.adj.nnz + 1000  # with self loops
    assert g.nodes["x"].shape[0] == 1024 and g.senders.shape[0] == 64 * -(-(e + 1) // 64)
    assert G.bucket(1000) == 1216
    assert d.full_graph("sage", prenormalize=False).nodes["x"].shape[0] == 1024


@pytest.mark.parametrize("cls,kw", [(S.SaintRWSampler, dict(num_roots=150, walk_length=2)),
                                    (S.SaintNodeSampler, dict(budget=500)),
                                    (S.NeighborSampler, dict(batch_size=64, fanouts=(5, 3)))])
def test_presampled_budget_is_tight_edges_are_in_csr_order_and_large_batches_use_the_ladder(cls, kw):
    d = D.contextual_sbm(2000, num_classes=3, avg_degree=6, num_features=4, seed=0)
    nodes, tm = {"x": d.x, "y": d.y}, d.masks()["train_mask"]
    s = cls(d.adj, nodes, tm, model="gcn", seed=3, budget_multiple=16, **kw)
    batches = [s.batch(i) for i in range(30)]
    budgets = {(b.nodes["x"].shape[0], b.senders.shape[0]) for b in batches}
    assert len(budgets) <= 2
    real = np.array([int(b.n_node[0]) for b in batches])
    padded = np.array([b.nodes["x"].shape[0] for b in batches])
    assert np.all(padded >= real + 1)
    assert np.mean(padded / real) < 1.15  # the ladder alone allows up to 1.25x
    for b in batches:  # CSR order: by receiver, then sender (padding edges last)
        key = np.asarray(b.receivers).astype(np.int64) * (1 << 32) + np.asarray(b.senders)
        assert np.all(np.diff(key) >= 0)
    # same batches as with the ladder only, up to padding
    ladder = cls(d.adj, nodes, tm, model="gcn", seed=3, budget_multiple=16, budget_presample=0, **kw)
    for i in (0, 7, 29):
        a, b = batches[i], ladder.batch(i)
        n, e = int(a.n_node[0]), int(a.n_edge[0])
        assert (n, e) == (int(b.n_node[0]), int(b.n_edge[0]))
        np.testing.assert_array_equal(np.asarray(a.senders[:e]), np.asarray(b.senders[:e]))
        np.testing.assert_array_equal(np.asarray(a.nodes["x"][:n]), np.asarray(b.nodes["x"][:n]))
    # the reverse-edge index of symmetric subgraphs (padding edges are their own);
    # neighbour sampling keeps edges one way and attaches none
    for b in batches[:5]:
        if cls is S.NeighborSampler:
            assert not isinstance(b.edges, dict)
            continue
        rev = b.edges["reverse"]
        np.testing.assert_array_equal(np.asarray(b.senders)[rev], np.asarray(b.receivers))
        np.testing.assert_array_equal(np.asarray(b.receivers)[rev], np.asarray(b.senders))
        np.testing.assert_array_equal(rev[rev], np.arange(len(rev)))
        np.testing.assert_array_equal(rev, G.with_reverse_index(b).edges["reverse"])
    plain = cls(d.adj, nodes, tm, model="gcn", seed=3, budget_multiple=16, reverse_index=False, **kw)
    np.testing.assert_array_equal(plain.batch(7).edges, G.edge_weights(batches[7]))
    # a subgraph larger than the presampled budget gets a ladder budget
    big = s.padding_budget(10 * padded.max(), 10)
    assert big.n_node >= 10 * padded.max() + 1 and big != s.padding_budget(1, 1)


@pytest.mark.parametrize("cls,kw", [(S.SaintRWSampler, dict(num_roots=4, walk_length=2)),
                                    (S.SaintNodeSampler, dict(budget=20)),
                                    (S.SaintEdgeSampler, dict(num_edges=10)),
                                    (S.ClusterSampler, dict(num_parts=4, clusters_per_batch=2)),
                                    (S.NeighborSampler, dict(batch_size=8, fanouts=(3, 2)))])
def test_batches_carry_the_global_ids_of_their_nodes(cls, kw):
    a, nodes = small_graph(n=40, seed=3)
    nodes["x"] = np.concatenate([nodes["x"], np.arange(40, dtype=np.float32)[:, None]], 1)  # id as a feature
    s = cls(a, nodes, np.arange(40) % 4 != 0, model="gcn", seed=1, **kw)
    for step in (0, 3):
        g = s.batch(step)
        n = int(g.n_node[0])
        ids = g.nodes["ids"]
        assert ids.dtype == np.int32 and ids.shape == g.nodes["x"].shape[:1]
        assert np.all(ids[n:] == -1) and len(ids) > n
        np.testing.assert_array_equal(ids[:n], np.asarray(s.sample_step(step)[0]))
        np.testing.assert_array_equal(ids[:n], g.nodes["x"][:n, -1].astype(np.int32))
        np.testing.assert_array_equal(g.nodes["y"][:n], nodes["y"][ids[:n]])


def _write_saint_folder(folder, a_full, a_train, x, y, role):
    """A GraphSAINT folder written by hand, file by file, in the published format."""
    folder.mkdir()
    sp.save_npz(folder / "adj_full.npz", sp.csr_matrix(a_full, dtype=np.float32))
    sp.save_npz(folder / "adj_train.npz", sp.csr_matrix(a_train, dtype=np.float32))
    (folder / "role.json").write_text(json.dumps({k: [int(i) for i in v] for k, v in role.items()}))
    np.save(folder / "feats.npy", x)
    (folder / "class_map.json").write_text(json.dumps({str(i): int(c) for i, c in enumerate(y)}))


def test_graphsaint_adj_train_is_the_inductive_training_graph(tmp_path):
    a, nodes = small_graph(n=40, seed=4)
    n = a.shape[0]
    train = np.arange(0, n, 2)[:14]
    role = {"tr": train, "va": np.arange(1, 20, 2), "te": np.arange(21, n, 2)}
    induced = a.toarray() * np.isin(np.arange(n), train)[:, None] * np.isin(np.arange(n), train)[None, :]
    a_train = induced.copy()
    u, v = np.argwhere(np.triu(induced, 1))[0]
    a_train[u, v] = a_train[v, u] = 0  # a training edge the file leaves out: adj_train, not adj_full, rules
    a_train[train[0], train[0]] = 1  # a stored self loop: dropped as in adj_full
    _write_saint_folder(tmp_path / "g", a, a_train, nodes["x"], nodes["y"], role)
    d = D.read_graphsaint(tmp_path / "g", scale="none")
    np.fill_diagonal(a_train, 0)
    np.testing.assert_array_equal(d.adj_train.toarray(), a_train)
    np.testing.assert_array_equal(d.train_adjacency().toarray(), a_train)
    assert (d.adj != a).nnz == 0  # the full graph is unchanged, for evaluation
    # sources without adj_train fall back to the graph induced on the training nodes
    plain = D.GraphData(d.adj, d.x, d.y, d.train, d.val, d.test)
    np.testing.assert_array_equal(plain.train_adjacency().toarray(), induced)
    # writing and reading again keeps adj_train
    D.write_graphsaint(d, tmp_path / "again")
    np.testing.assert_array_equal(D.read_graphsaint(tmp_path / "again").adj_train.toarray(), a_train)
    # a sampler on the training graph sees training nodes and adj_train's edges only
    tm = d.masks()["train_mask"]
    s = S.SaintRWSampler(d.train_adjacency(), {"x": d.x, "y": d.y}, tm, num_roots=4, walk_length=3,
                         model="sage", seed=0)
    for step in range(5):
        g = s.batch(step)
        k, e = int(g.n_node[0]), int(g.n_edge[0])
        ids = g.nodes["ids"][:k]
        assert tm[ids].all()
        snd, rcv = ids[g.senders[:e]], ids[g.receivers[:e]]
        assert np.all(a_train[rcv, snd] == 1)
    # a one-way edge in adj_train is refused, naming the file
    a_bad = a_train.copy()
    a_bad[train[1], train[2]] = 1 - a_bad[train[2], train[1]]
    _write_saint_folder(tmp_path / "bad", a, a_bad, nodes["x"], nodes["y"], role)
    with pytest.raises(D.GraphFormatError, match="adj_train.npz: adjacency must be symmetric"):
        D.read_graphsaint(tmp_path / "bad")


def _reference_batch(s, nodes):
    """The padded batch's real part rebuilt with scipy.sparse from the documented formulas:
    (receivers, senders, weights) of the induced subgraph (GCN: with self loops) in CSR
    order, and the loss weights."""
    a = sp.csr_matrix(s.adj)
    pattern = sp.csr_matrix((np.ones(a.nnz), a.indices, a.indptr), shape=a.shape)
    sub = pattern[nodes][:, nodes].tocsr()
    k = len(nodes)
    eye = sp.identity(k, format="csr")
    full_deg = np.diff(a.indptr).astype(np.float64)[nodes]
    if s.norm_aggr:
        # alpha_{u,v} = C_v / C_{u,v} times the full-graph coefficient of u -> v (v = row);
        # GCN self loops 1 / (deg_v + 1); a weight may be 0 (C_v = 0) and is kept
        struct = (sub + eye if s.model == "gcn" else sub).tocsr()
        struct.sort_indices()
        coo = struct.tocoo()
        rows, cols = coo.row, coo.col
        counts = sp.csr_matrix((np.maximum(s.edge_count, 1).astype(np.float64), a.indices, a.indptr),
                               shape=a.shape)[nodes][:, nodes]
        c_edge = np.asarray(counts[rows, cols]).ravel()
        c_node = s.node_count[nodes].astype(np.float64)[rows]
        if s.model == "gcn":
            base = 1.0 / np.sqrt((full_deg[rows] + 1.0) * (full_deg[cols] + 1.0))
        elif s.model == "sage":
            base = 1.0 / np.maximum(full_deg[rows], 1.0)
        else:
            base = np.ones(len(rows))
        w = np.where(rows == cols, 1.0 / (full_deg[rows] + 1.0),
                     np.clip(base * c_node / np.maximum(c_edge, 1.0), 0.0, 1e4))
    else:  # the subgraph's own degrees
        d = np.asarray(sub.sum(1)).ravel()
        if s.model == "gcn":
            inv = 1.0 / np.sqrt(d + 1.0)
            coef = sp.diags(inv) @ (sub + eye) @ sp.diags(inv)
        elif s.model == "sage":
            coef = sp.diags(1.0 / np.maximum(d, 1.0)) @ sub
        else:
            coef = sub
        coo = sp.csr_matrix(coef)
        coo.sort_indices()
        coo = coo.tocoo()
        rows, cols, w = coo.row, coo.col, coo.data
    lw = None
    if s.norm_loss:
        lw = s.num_presampled / (np.maximum(s.node_count[nodes], 1) * len(s.train_nodes))
        lw = np.where(s.train_mask[nodes], lw, 0.0)
    return rows, cols, w, lw


@pytest.mark.parametrize("model,norm", [("gcn", False), ("sage", False), ("gat", False), ("gcn", True),
                                        ("sage", True)])
def test_batches_equal_a_scipy_reference_edge_by_edge(model, norm):
    d = D.contextual_sbm(300, num_classes=3, avg_degree=6, num_features=4, seed=5)
    a = d.adj.tolil()
    for v in (0, 7, 8):  # isolated nodes, one of them first
        a[v, :] = 0
        a[:, v] = 0
    a = sp.csr_matrix(a)
    a.eliminate_zeros()
    nodes = {"x": d.x, "y": d.y}
    tm = np.arange(300) % 5 != 1
    kw = dict(model=model, norm_aggr=norm, norm_loss=norm, seed=4)
    samplers = [S.SaintNodeSampler(a, nodes, tm, budget=60, **kw),
                S.SaintEdgeSampler(a, nodes, tm, num_edges=40, **kw),
                S.SaintRWSampler(a, nodes, tm, num_roots=25, walk_length=2, **kw),
                S.ClusterSampler(a, nodes, tm, num_parts=6, clusters_per_batch=2, partition_all=True, **kw)]
    for s in samplers:
        if norm:
            s.estimate_normalization(20)
        for step in (0, 1, 4):
            g = s.batch(step)
            n, e = int(g.n_node[0]), int(g.n_edge[0])
            ids = g.nodes["ids"][:n].astype(np.int64)
            np.testing.assert_array_equal(ids, np.unique(ids))
            rcv, snd, w, lw = _reference_batch(s, ids)
            np.testing.assert_array_equal(g.receivers[:e], rcv)  # (receiver, sender) order
            np.testing.assert_array_equal(g.senders[:e], snd)
            np.testing.assert_allclose(G.edge_weights(g)[:e], w, rtol=1e-6)
            assert np.all(G.edge_weights(g)[e:] == 0) and np.all(g.senders[e:] == n) and np.all(g.receivers[e:] == n)
            rev = g.edges["reverse"]
            np.testing.assert_array_equal(g.senders[rev], g.receivers)
            np.testing.assert_array_equal(g.receivers[rev], g.senders)
            np.testing.assert_array_equal(rev[rev], np.arange(len(rev)))
            np.testing.assert_array_equal(g.nodes["x"][:n], d.x[ids])
            np.testing.assert_array_equal(g.nodes["y"][:n], d.y[ids])
            np.testing.assert_array_equal(g.nodes["mask"][:n], tm[ids])
            assert not g.nodes["x"][n:].any() and not g.nodes["mask"][n:].any()
            if norm:
                np.testing.assert_allclose(g.nodes["loss_weight"][:n], lw, rtol=1e-6)
                assert not g.nodes["loss_weight"][n:].any()
            assert list(g.n_node) == [n, g.nodes["x"].shape[0] - n]
            assert list(g.n_edge) == [e, len(g.senders) - e]


def test_unique_nodes_equals_numpy_unique_on_both_paths():
    a, nodes = small_graph(n=600, seed=1)
    s = S.SaintNodeSampler(a, nodes, np.ones(600, bool), budget=5)
    rng = np.random.default_rng(0)
    for m in (1, 2, 30, 400):  # 2 * 256 < 600: sorted; 30: marks
        parts = [rng.integers(0, 600, m), rng.integers(0, 600, m // 2 + 1)]
        got = s.unique_nodes(*parts)
        np.testing.assert_array_equal(got, np.unique(np.concatenate(parts)))
        assert got.dtype == np.int64 and not s._mark.any()
