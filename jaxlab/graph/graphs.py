"""GraphsTuple helpers: construction, normalisation, padding budgets and masks.

Conventions used throughout `jaxlab.graph`:

* A graph is a `jraph.GraphsTuple` whose `nodes` is a dict of per-node arrays
  (`"x"`: features `[N, F]`, optionally `"y"` labels, `"mask"` / `"train_mask"` / ...,
  `"loss_weight"`) and whose `edges` is a float array `[E]` of edge weights.
  An edge with weight 0 is absent: that is what padding edges are.
* Edges are directed `senders[e] -> receivers[e]`; an undirected graph stores both
  directions. Messages flow from senders to receivers.
* Padding uses `jraph.pad_with_graphs`, which adds one padding graph holding all
  padding nodes and edges (every padding edge points at the first padding node), so it
  needs `n_node >= real + 1` and `n_graph >= real + 1`. `pad_to_budget` picks the
  budget from a small set of buckets so a stream of variable-sized subgraphs
  compiles a jitted step only a few times.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp


def _jraph():
    import jraph  # imported where used, see DESIGN.md

    return jraph


# ----------------------------------------------------------------------------- build


def from_edge_list(senders, receivers, num_nodes: int, nodes: Mapping | None = None,
                   weights=None, symmetric: bool = False):
    """Builds a single-graph `GraphsTuple` from an edge list.

    Args:
      senders, receivers: int `[E]`.
      num_nodes: N.
      nodes: dict of `[N, ...]` arrays (default `{}`, a zero `"x"` of shape [N, 1] is
        added when empty so padding masks can be inferred).
      weights: float `[E]` or None (ones).
      symmetric: add the reverse of every edge (duplicates are merged, weights summed).
    """
    senders = np.asarray(senders, dtype=np.int64)
    receivers = np.asarray(receivers, dtype=np.int64)
    if senders.shape != receivers.shape or senders.ndim != 1:
        raise ValueError(f"senders {senders.shape} and receivers {receivers.shape} must be equal 1-D")
    if senders.size and (min(senders.min(), receivers.min()) < 0
                         or max(senders.max(), receivers.max()) >= num_nodes):
        raise ValueError(f"edge endpoints must lie in [0, {num_nodes})")
    w = np.ones(senders.shape, np.float32) if weights is None else np.asarray(weights, np.float32)
    adj = sp.coo_matrix((w, (receivers, senders)), shape=(num_nodes, num_nodes)).tocsr()
    if symmetric:
        adj = (adj + adj.T).tocsr()
    if symmetric or weights is None:
        return from_scipy(adj, nodes)
    # keep the edge order and duplicates the caller gave.
    return _make(senders, receivers, w, num_nodes, nodes)


def _make(senders, receivers, w, num_nodes, nodes):
    jraph = _jraph()
    nodes = dict(nodes or {})
    if not nodes:
        nodes["x"] = np.zeros((num_nodes, 1), np.float32)
    for k, v in nodes.items():
        if np.shape(v)[0] != num_nodes:
            raise ValueError(f"nodes['{k}'] has {np.shape(v)[0]} rows, expected {num_nodes}")
    return jraph.GraphsTuple(
        nodes=nodes,
        edges=np.asarray(w, np.float32),
        senders=np.asarray(senders, np.int32),
        receivers=np.asarray(receivers, np.int32),
        n_node=np.array([num_nodes], np.int32),
        n_edge=np.array([len(senders)], np.int32),
        globals=None,
    )


def from_scipy(adj, nodes: Mapping | None = None):
    """GraphsTuple from a sparse adjacency with `adj[receiver, sender] = weight`.

    For a symmetric adjacency the orientation does not matter. Explicit zeros are dropped.
    """
    a = sp.csr_matrix(adj)
    a.eliminate_zeros()
    a.sort_indices()
    coo = a.tocoo()
    return _make(coo.col, coo.row, coo.data, a.shape[0], nodes)


def to_scipy(graph, num_nodes: int | None = None) -> sp.csr_matrix:
    """Inverse of `from_scipy`: `A[receiver, sender] = weight` (duplicates summed)."""
    n = int(np.sum(graph.n_node)) if num_nodes is None else num_nodes
    w = edge_weights(graph)
    w = np.ones(len(graph.senders), np.float32) if w is None else np.asarray(w)
    return sp.csr_matrix((w, (np.asarray(graph.receivers), np.asarray(graph.senders))), shape=(n, n))


def add_self_loops(adj, weight: float = 1.0) -> sp.csr_matrix:
    """`A + weight * I` for nodes without a self loop (existing loops are kept)."""
    a = sp.csr_matrix(adj, dtype=np.float32)
    missing = np.asarray(a.diagonal() == 0, np.float32) * weight
    return (a + sp.diags(missing)).tocsr()


def remove_self_loops(adj) -> sp.csr_matrix:
    a = sp.csr_matrix(adj).tolil()
    a.setdiag(0)
    a = a.tocsr()
    a.eliminate_zeros()
    return a


def normalize_adjacency(adj, kind: str = "sym", deg=None) -> sp.csr_matrix:
    """Normalised adjacency, `A[receiver, sender]`.

    kind:
      "sym":  D^-1/2 (A + I) D^-1/2 with D = diag(rowsum(A + I))  (GCN, Kipf & Welling).
      "row":  D^-1 A (mean aggregation, GraphSAGE/GraphSAINT), rows without edges stay 0.
      "none": A unchanged.
    deg: optional `[N]` degrees to use instead of the row sums (GraphSAINT normalises a
      subgraph with the full graph's degrees); for "sym" these exclude the self loop.
    """
    a = sp.csr_matrix(adj, dtype=np.float32)
    if kind == "none":
        return a
    if kind == "sym":
        a = add_self_loops(a)
        d = np.asarray(a.sum(1)).ravel() if deg is None else np.asarray(deg, np.float64) + 1.0
        inv = np.where(d > 0, 1.0 / np.sqrt(np.maximum(d, 1e-12)), 0.0)
        return (sp.diags(inv) @ a @ sp.diags(inv)).tocsr().astype(np.float32)
    if kind == "row":
        d = np.asarray(a.sum(1)).ravel() if deg is None else np.asarray(deg, np.float64)
        inv = np.where(d > 0, 1.0 / np.maximum(d, 1e-12), 0.0)
        return (sp.diags(inv) @ a).tocsr().astype(np.float32)
    raise ValueError(f"normalisation kind must be 'sym', 'row' or 'none', got {kind!r}")


AGGREGATION_NORM = {"gcn": "sym", "sage": "row", "gat": "none"}


def normalized_graph(adj, nodes: Mapping | None = None, model: str = "gcn"):
    """GraphsTuple whose edge weights are the final aggregation coefficients for `model`.

    gcn: D^-1/2 (A+I) D^-1/2 with explicit self-loop edges; sage: D^-1 A; gat: A.
    Models built with `prenormalized=True` use these weights as they are.
    """
    kind = AGGREGATION_NORM[model]
    return from_scipy(normalize_adjacency(adj, kind), nodes)


# ----------------------------------------------------------------------------- padding


def bucket(n: int, multiple: int = 64, growth: float | None = 1.25) -> int:
    """Smallest bucket >= n + 1 from the geometric ladder `multiple * ceil(growth^k)`.

    Sizes are rounded up to a multiple of `multiple` and then to the next rung of a
    ladder with ratio `growth`, so sizes between 1 and M need O(log M / log growth)
    distinct budgets (each a compile of a jitted step) at most `growth`x waste.
    `growth=None` skips the ladder (a graph padded once, as in full-batch training,
    pays no more than `multiple - 1` rows of waste). The `+ 1` leaves room for the
    padding node/graph that `jraph.pad_with_graphs` needs.
    """
    need = int(n) + 1
    units = max(1, math.ceil(need / multiple))
    if growth is None:
        return units * multiple
    if growth <= 1.0:
        raise ValueError(f"growth must be > 1 (or None for no ladder), got {growth}")
    rung = 1
    while rung < units:
        rung = max(rung + 1, math.ceil(rung * growth))
    return rung * multiple


@dataclasses.dataclass(frozen=True)
class Budget:
    """A padding budget (nodes, edges, graphs)."""

    n_node: int
    n_edge: int
    n_graph: int = 2

    @classmethod
    def for_graph(cls, graph, multiple: int = 64, growth: float | None = 1.25) -> Budget:
        n = int(np.sum(graph.n_node))
        e = int(np.sum(graph.n_edge))
        g = int(np.shape(graph.n_node)[0])
        return cls(bucket(n, multiple, growth), bucket(e, multiple, growth), g + 1)

    def fits(self, graph) -> bool:
        return (int(np.sum(graph.n_node)) + 1 <= self.n_node
                and int(np.sum(graph.n_edge)) <= self.n_edge
                and int(np.shape(graph.n_node)[0]) + 1 <= self.n_graph)


def pad(graph, budget: Budget):
    """`jraph.pad_with_graphs` to `budget`, with a clear error when it does not fit."""
    if not budget.fits(graph):
        raise ValueError(
            f"graph with {int(np.sum(graph.n_node))} nodes, {int(np.sum(graph.n_edge))} edges, "
            f"{np.shape(graph.n_node)[0]} graphs does not fit budget {budget} "
            "(jraph.pad_with_graphs needs n_node >= real + 1 and n_graph >= real + 1)")
    return _jraph().pad_with_graphs(graph, budget.n_node, budget.n_edge, budget.n_graph)


def pad_to_budget(graph, multiple: int = 64, growth: float | None = 1.25):
    """Pads `graph` to its bucketed `Budget.for_graph`; returns (padded graph, budget).
    `growth=None`: the smallest multiple of `multiple` that fits (a graph padded once)."""
    b = Budget.for_graph(graph, multiple, growth)
    return pad(graph, b), b


def pad_fast(senders, receivers, weights, nodes: Mapping, budget: Budget, reverse=None):
    """Host-side padding of a single graph without building an intermediate GraphsTuple.

    Same result as `pad(from arrays, budget)` with `n_graph = 2` (tested against jraph),
    but a single allocation per array: samplers call this on every subgraph. With
    `reverse` (the `reverse_index` of the real edges) the edges become
    `{"weight": w, "reverse": rev}` as after `with_reverse_index`; padding edges, self
    loops on the padding node, are their own reverse.
    """
    jraph = _jraph()
    n = next(iter(nodes.values())).shape[0]
    e = len(senders)
    if n + 1 > budget.n_node or e > budget.n_edge:
        raise ValueError(f"subgraph ({n} nodes, {e} edges) does not fit budget {budget}")
    out_nodes = {}
    for k, v in nodes.items():
        buf = np.zeros((budget.n_node,) + v.shape[1:], v.dtype)
        buf[:n] = v
        out_nodes[k] = buf
    s = np.full(budget.n_edge, n, np.int32)
    r = np.full(budget.n_edge, n, np.int32)
    w = np.zeros(budget.n_edge, np.float32)
    s[:e] = senders
    r[:e] = receivers
    w[:e] = weights
    g = budget.n_graph
    n_node = np.zeros(g, np.int32)
    n_edge = np.zeros(g, np.int32)
    n_node[0], n_node[1] = n, budget.n_node - n
    n_edge[0], n_edge[1] = e, budget.n_edge - e
    edges = w
    if reverse is not None:
        rev = np.arange(budget.n_edge, dtype=np.int32)
        rev[:e] = reverse
        edges = {"weight": w, "reverse": rev}
    return jraph.GraphsTuple(nodes=out_nodes, edges=edges, senders=s, receivers=r,
                             n_node=n_node, n_edge=n_edge, globals=None)


# ----------------------------------------------------------------------------- masks


def node_mask(graph) -> jnp.ndarray:
    """Boolean `[N_pad]`, True for real nodes of a graph padded by `pad` (jit-safe)."""
    return _jraph().get_node_padding_mask(graph)


def edge_mask(graph) -> jnp.ndarray:
    """Boolean `[E_pad]`, True for real edges of a padded graph (jit-safe)."""
    return _jraph().get_edge_padding_mask(graph)


def graph_mask(graph) -> jnp.ndarray:
    """Boolean `[G_pad]`, True for real graphs of a padded graph (jit-safe)."""
    return _jraph().get_graph_padding_mask(graph)


def edge_weights(graph):
    """The edge weights `[E]` of a graph: `graph.edges`, or `graph.edges["weight"]`
    when the edges are a dict (as after `with_reverse_index`); None means ones."""
    e = graph.edges
    return e.get("weight") if isinstance(e, Mapping) else e


def _stable_order(values):
    """Stable argsort of non-negative integers below 2**32, in two least-significant-first
    passes over 16-bit digits (NumPy's stable sort of 16-bit integers is a radix sort)."""
    v = np.asarray(values)
    if v.dtype.kind not in "iu":
        v = v.astype(np.int64)
    order = np.argsort((v & 0xFFFF).astype(np.uint16), kind="stable")
    high = v >> 16
    if high.size and int(high.max()) > 0:
        order = order[np.argsort(high[order].astype(np.uint16), kind="stable")]
    return order


def reverse_index(senders, receivers, check: bool = True):
    """`rev [E]` (int32) with edge `rev[e]` the reverse of edge e, or None when some edge
    has none (`check=False`: the caller knows the edge set is symmetric, and the map is
    returned unchecked).

    For edges in (receiver, sender) order, a stable sort by sender orders them by
    (sender, receiver); when the edge set is symmetric that is the same list with every
    edge reversed, position by position, so the sorting permutation is the map (linear
    time; checked before it is returned). Self loops, repeated ones included, come out
    as their own reverse.
    """
    rev = _stable_order(senders)
    if not check:
        return rev.astype(np.int32)
    s = np.asarray(senders, np.int64)
    r = np.asarray(receivers, np.int64)
    if not (np.array_equal(s[rev], r) and np.array_equal(r[rev], s)
            and np.array_equal(rev[rev], np.arange(len(s)))):
        return None
    return rev.astype(np.int32)


def with_reverse_index(graph):
    """Adds `edges["reverse"]`: for every edge u -> v the index of its reverse v -> u.

    The layers' backward pass uses it to run `A^T g` as a CSR product without searching
    for the reverse edges on the device every step. Apply it last (after padding): the
    edges must be in (receiver, sender) order, as `from_scipy`, `pad`, `pad_fast` and
    the samplers leave them, and the edge set symmetric; self loops (padding edges
    included) are their own reverse. `edges` becomes `{"weight": w, "reverse": rev}`.
    """
    s = np.asarray(graph.senders, np.int64)
    r = np.asarray(graph.receivers, np.int64)
    n = int(np.sum(graph.n_node))
    key = r * n + s
    if len(key) > 1 and np.any(key[1:] < key[:-1]):
        raise ValueError("with_reverse_index: edges must be sorted by (receiver, sender); "
                         "build the graph with from_scipy or sort its edges first")
    rev = reverse_index(s, r)
    if rev is None:  # name an edge whose reverse is missing, or repeated unequally
        want = s * n + r
        lo, hi = np.searchsorted(key, want, "left"), np.searchsorted(key, want, "right")
        count = np.searchsorted(key, key, "right") - np.searchsorted(key, key, "left")
        bad = int(np.flatnonzero(hi - lo != count)[0])
        what = "no reverse edge" if hi[bad] == lo[bad] else "a reverse repeated a different number of times"
        raise ValueError(f"with_reverse_index: edge {bad} ({s[bad]} -> {r[bad]}) has {what}; "
                         "the edge set must be symmetric")
    return graph._replace(edges={"weight": edge_weights(graph), "reverse": rev})


def zero_out_padding(graph):
    """Zeros node and edge arrays of padding (jraph's version calls the removed
    `jax.tree_map`, so it is rewritten here); `edges["reverse"]` is kept whole."""
    nm, em = node_mask(graph), edge_mask(graph)

    def z(mask):
        def f(x):
            m = mask.reshape(mask.shape + (1,) * (x.ndim - 1))
            return jnp.where(m, x, jnp.zeros_like(x))
        return f

    edges = graph.edges
    if isinstance(edges, Mapping) and "reverse" in edges:  # an index map, not data
        edges = {**jax.tree_util.tree_map(z(em), {k: v for k, v in edges.items() if k != "reverse"}),
                 "reverse": edges["reverse"]}
    else:
        edges = jax.tree_util.tree_map(z(em), edges)
    return graph._replace(nodes=jax.tree_util.tree_map(z(nm), graph.nodes), edges=edges)


def to_device(graph):
    """Puts every array leaf on the default device (None leaves stay None)."""
    return jax.tree_util.tree_map(jnp.asarray, graph)


def node_graph_index(graph) -> jnp.ndarray:
    """`[N]` int: the graph each node belongs to (jit-safe; N read from the node arrays)."""
    n = jax.tree_util.tree_leaves(graph.nodes)[0].shape[0]
    g = graph.n_node.shape[0]
    return jnp.repeat(jnp.arange(g), graph.n_node, total_repeat_length=n)


def graph_pool(graph, h, reduce: str = "mean"):
    """Per-graph readout of node values `h [N, ...]` -> `[G, ...]` ("sum", "mean" or
    "max"). Empty (padding) graphs give 0 for every reduction, with finite gradients
    (`segment_max_or_constant`, never a bare `segment_max`)."""
    idx = node_graph_index(graph)
    g = graph.n_node.shape[0]
    if reduce == "sum":
        return jax.ops.segment_sum(h, idx, num_segments=g)
    if reduce == "mean":
        s = jax.ops.segment_sum(h, idx, num_segments=g)
        cnt = jnp.maximum(graph.n_node, 1).astype(h.dtype)
        return s / cnt.reshape((g,) + (1,) * (h.ndim - 1))
    if reduce == "max":
        return _jraph().segment_max_or_constant(h, idx, num_segments=g)
    raise ValueError(f"reduce must be 'sum', 'mean' or 'max', got {reduce!r}")
