"""Feature / label smoothness against hand-worked values and a dense NumPy reference;
connection failure distance against exact values on star graphs. The node-level
smoothness and the connection failure distance are the spec's *reconstruction*."""

import numpy as np
import pytest
import scipy.sparse as sp

from jaxlab.graph import data as graph_data
from jaxlab.meguide import metrics


def path4():
    a = np.zeros((4, 4))
    for u, v in [(0, 1), (1, 2), (2, 3)]:
        a[u, v] = a[v, u] = 1
    return sp.csr_matrix(a)


def test_smoothness_hand_worked_4_node_path():
    a = path4()
    x = np.array([[0.0], [1.0], [0.5], [1.0]])
    # edges (0,1),(1,2),(2,3): squared differences 1, .25, .25 -> 2 * 1.5 / (3 * 1)
    assert metrics.feature_smoothness(a, x) == pytest.approx(1.0)
    assert metrics.label_smoothness(a, np.array([0, 0, 1, 1])) == pytest.approx(2 / 3)
    np.testing.assert_allclose(metrics.node_smoothness(a, x), [1.0, 0.5625, 0.25, 0.25])


def test_feature_smoothness_matches_dense_cs_gnn_formula():
    d = graph_data.contextual_sbm(300, num_classes=3, avg_degree=6, num_features=5, seed=2)
    x = d.x.astype(np.float64)
    xs = (x - x.min(0)) / (x.max(0) - x.min(0))
    A = d.adj.toarray()
    diff = 0.0
    edges = 0
    for u in range(300):
        for v in range(u + 1, 300):
            if A[u, v]:
                diff += np.sum((xs[u] - xs[v]) ** 2)
                edges += 1
    ref = 2 * diff / (edges * 5)
    assert metrics.feature_smoothness(d.adj, d.x) == pytest.approx(ref, rel=1e-6)
    # scaling matters (pitfall in the spec): standardised features give another value
    assert metrics.feature_smoothness(d.adj, d.x, "standard") != pytest.approx(ref, rel=1e-2)
    lab = 2 * np.mean([d.y[u] != d.y[v] for u in range(300) for v in range(u + 1, 300) if A[u, v]])
    assert metrics.label_smoothness(d.adj, d.y) == pytest.approx(lab)
    # node-level form: dense mean over neighbours
    deg = A.sum(1)
    mean = A @ xs / np.maximum(deg, 1)[:, None]
    np.testing.assert_allclose(metrics.node_smoothness(d.adj, d.x),
                               np.where(deg > 0, ((xs - mean) ** 2).mean(1), 0), rtol=1e-6)


def star(n_leaves):
    n = n_leaves + 1
    a = np.zeros((n, n))
    a[0, 1:] = a[1:, 0] = 1
    return sp.csr_matrix(a)


def test_connection_failure_distance_on_a_star():
    k = 5
    a = star(k)
    cfd = metrics.connection_failure_distance(a, num_walks=4000, max_len=6, seed=0)
    # centre: leaf (new), back to the centre (seen) -> 1
    assert cfd[0] == pytest.approx(1.0)
    # leaf: centre (new), another leaf with prob (k-1)/k (new), then centre (seen)
    np.testing.assert_allclose(cfd[1:], 1 + (k - 1) / k, atol=0.05)
    # non-training leaves stop the walk at once: the centre gains nothing
    tm = np.zeros(k + 1, bool)
    tm[0] = True
    cfd_tm = metrics.connection_failure_distance(a, tm, num_walks=200, max_len=6, seed=0)
    assert cfd_tm[0] == 0 and np.all(cfd_tm[1:] == 1)
    # patience 2 lets a walk continue past one failure
    cfd_p2 = metrics.connection_failure_distance(a, num_walks=2000, max_len=8, patience=2, seed=0)
    assert np.all(cfd_p2 > cfd - 1e-9) and cfd_p2[0] > 1.5
