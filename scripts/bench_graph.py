"""Benchmark: jaxlab.graph layers and samplers against PyTorch Geometric and scipy.sparse.

    python scripts/bench_graph.py --nodes 10000 --repeats 10

1. Full-batch training step (forward + backward + Adam) of 2-layer GCN / SAGE / GAT on
   the same contextual-SBM graph: jaxlab (jit, host-normalised coefficients) vs PyG's
   GCNConv (normalize=False with the same coefficients), SAGEConv (mean) and GATConv.
   jaxlab's compile time is reported apart (first call).
2. Mini-batch training throughput on the same pre-sampled GraphSAINT random-walk
   subgraphs (jaxlab: padded to one presampled budget; PyG: unpadded tensors). jaxlab's
   steps are dispatched back to back with one wait per pass of 20, as a training loop
   runs them; full-batch steps wait on every step.
3. Sampler throughput (subgraphs/s): jaxlab's vectorised samplers vs a straightforward
   scipy.sparse implementation of the same sampler (`adj[nodes][:, nodes]` induced
   subgraphs, per-node Python loops for walks / neighbours). PyG's loaders need
   pyg-lib or torch-sparse; the script says whether they are importable and skips them
   otherwise.

Both frameworks run in one process. `--threads 1` pins the process to one core (both
peers single-threaded), `--threads all` leaves every core to both, and the default
`--threads both` runs the script once each way and merges the tables into a 1-thread and
an all-threads column per peer (see `jaxlab.core.benchmark`; a loaded machine slows
torch's OpenMP pool far more than single-threaded code).

The peers take turns: full-batch steps in `--repeats` rounds of 3 steps each, mini-batch
passes one pass each, sampler calls one call each, so that a burst of load from
elsewhere on a shared machine hits both. Prints the load average before and after,
markdown tables of medians and ratios (peer time / jaxlab time: > 1 means jaxlab is
faster) and the devices used.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from jaxlab.core import benchmark

SETTING = benchmark.configure_threads()  # before jax and torch start their thread pools
# Before jax starts its threads: keep freed host temporaries for reuse (both peers run
# in this process, so both get it); `--default-allocator` measures without it.
from jaxlab.core.runtime import tune_host_allocator  # noqa: E402

ALLOCATOR = "glibc defaults" if "--default-allocator" in sys.argv else (
    "tuned (jaxlab.core.runtime.tune_host_allocator)" if tune_host_allocator() else "glibc defaults")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from jaxlab.core import train as train_lib  # noqa: E402
from jaxlab.graph import data as graph_data  # noqa: E402
from jaxlab.graph import graphs, layers, samplers  # noqa: E402
from jaxlab.graph import train as graph_train  # noqa: E402
from jaxlab.meguide.sampler import MeGuideSampler  # noqa: E402

FULL_BLOCK = 3  # full-batch steps per peer and round


# ----------------------------------------------------------------------------- jaxlab


def jax_trainer(model_kind, graph, num_classes, hidden, heads):
    net = layers.GNN(model=model_kind, hidden=(hidden,), num_classes=num_classes, heads=heads,
                     prenormalized=model_kind != "gat")
    params = net.init(jax.random.key(0), graph)["params"]
    # the engine's step, as `jaxlab meguide train` runs it (state donated, one compile per budget)
    step = train_lib.make_train_step(graph_train.make_loss_fn(net))
    state = {"s": train_lib.TrainState.create(params=params, tx=optax.adam(1e-2))}
    key = jax.random.key(0)  # no dropout here: the key is passed, not used

    def run(g, block=True):
        state["s"], metrics = step(state["s"], g, key)
        loss = metrics["loss"]
        if block:
            jax.block_until_ready(loss)
        return loss

    return run


# ----------------------------------------------------------------------------- PyG


def torch_trainer(model_kind, in_dim, num_classes, hidden, heads):
    import torch
    from torch_geometric.nn import GATConv, GCNConv, SAGEConv

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            if model_kind == "gcn":
                self.c1 = GCNConv(in_dim, hidden, normalize=False, add_self_loops=False)
                self.c2 = GCNConv(hidden, num_classes, normalize=False, add_self_loops=False)
            elif model_kind == "sage":
                self.c1 = SAGEConv(in_dim, hidden, aggr="mean")
                self.c2 = SAGEConv(hidden, num_classes, aggr="mean")
            else:
                self.c1 = GATConv(in_dim, hidden // heads, heads=heads)
                self.c2 = GATConv(hidden, num_classes, heads=1, concat=False)

        def forward(self, x, ei, ew):
            if model_kind == "gcn":
                return self.c2(torch.relu(self.c1(x, ei, ew)), ei, ew)
            return self.c2(torch.relu(self.c1(x, ei)), ei)

    net = Net()
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)

    def run(b):
        x, ei, ew, y, m = b
        opt.zero_grad()
        out = net(x, ei, ew)
        loss = torch.nn.functional.cross_entropy(out[m], y[m])
        loss.backward()
        opt.step()

    return run


def to_torch(g):
    """Unpadded torch tensors of a padded GraphsTuple (real nodes / edges only)."""
    import torch

    n, e = int(g.n_node[0]), int(g.n_edge[0])
    x = torch.from_numpy(np.array(g.nodes["x"][:n]))
    ei = torch.from_numpy(np.stack([np.asarray(g.senders[:e]), np.asarray(g.receivers[:e])]).astype(np.int64))
    ew = torch.from_numpy(np.array(graphs.edge_weights(g)[:e], np.float32))
    y = torch.from_numpy(np.asarray(g.nodes["y"][:n]).astype(np.int64))
    m = torch.from_numpy(np.asarray(g.nodes["mask"][:n]).astype(bool))
    return x, ei, ew, y, m


def strip_self_loops(b):
    x, ei, ew, y, m = b
    keep = ei[0] != ei[1]
    return x, ei[:, keep], ew[keep], y, m


# ----------------------------------------------------------------------------- scipy baselines


def scipy_induced(adj, nodes):
    sub = adj[nodes][:, nodes].tocoo()
    return sub.col, sub.row


def scipy_node(adj, train, deg_p, budget, rng):
    nodes = np.unique(rng.choice(train, budget, p=deg_p))
    return scipy_induced(adj, nodes)


def scipy_rw(adj, train, roots, length, rng):
    visited = []
    for r in rng.choice(train, roots):
        v = r
        visited.append(v)
        for _ in range(length):
            nb = adj.indices[adj.indptr[v]:adj.indptr[v + 1]]
            if len(nb):
                v = nb[rng.integers(len(nb))]
            visited.append(v)
    return scipy_induced(adj, np.unique(visited))


def scipy_edge(eu, ev, p, m, adj, rng):
    idx = rng.choice(len(eu), m, p=p)
    return scipy_induced(adj, np.unique(np.concatenate([eu[idx], ev[idx]])))


def scipy_cluster(adj, clusters, q, rng):
    chosen = rng.choice(len(clusters), q, replace=False)
    return scipy_induced(adj, np.unique(np.concatenate([clusters[c] for c in chosen])))


def scipy_neighbor(adj, train, batch, fanouts, rng):
    frontier = rng.choice(train, batch, replace=False)
    edges = []
    for f in fanouts:
        nxt = []
        for v in frontier:
            nb = adj.indices[adj.indptr[v]:adj.indptr[v + 1]]
            pick = rng.choice(nb, min(f, len(nb)), replace=False) if len(nb) else nb
            edges.extend((u, v) for u in pick)
            nxt.extend(pick)
        frontier = np.unique(nxt)
    return edges


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--nodes", type=int, default=10_000)
    p.add_argument("--degree", type=float, default=10.0)
    p.add_argument("--features", type=int, default=64)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--repeats", type=int, default=10,
                   help="rounds of the peers' turns (full batch: 3 steps per turn; mini-batch: "
                        "one pass of 20 subgraphs per turn) and sampler calls timed")
    p.add_argument("--skip-torch", action="store_true")
    p.add_argument("--default-allocator", action="store_true",
                   help="leave glibc's malloc settings alone (see jaxlab.core.runtime)")
    benchmark.add_threads_argument(p)
    args = p.parse_args()

    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else "?"
    print(benchmark.device_line())
    print(f"threads: {SETTING} (process on cores {cores}), host allocator: {ALLOCATOR}")
    have_torch = False
    if not args.skip_torch:
        try:
            import torch
            import torch_geometric

            have_torch = True
            torch.set_num_threads(benchmark.peer_threads(SETTING))
            print(f"torch {torch.__version__} (threads {torch.get_num_threads()}), "
                  f"torch_geometric {torch_geometric.__version__}, device cpu")
        except ImportError as e:
            print(f"PyTorch Geometric not importable ({e}); peer columns skipped")
    for mod in ("pyg_lib", "torch_sparse"):
        try:
            __import__(mod)
            print(f"{mod}: importable (PyG loaders could run; not benchmarked here)")
        except ImportError:
            print(f"{mod}: not installed -> PyG's NeighborLoader / ClusterLoader / SAINT loaders skipped")

    d = graph_data.contextual_sbm(args.nodes, num_classes=5, avg_degree=args.degree,
                         num_features=args.features, noise=6.0, seed=0)
    nodes = {"x": d.x, "y": d.y}
    tm = d.masks()["train_mask"]
    print(f"\ngraph: contextual SBM, {d.num_nodes} nodes, {d.adj.nnz // 2} undirected edges, "
          f"{args.features} features, 5 classes; 2 layers, hidden {args.hidden}, GAT heads {args.heads}\n")

    # 1. full batch: the two peers alternate, so load from other processes hits both
    res = benchmark.Results()
    t1 = res.table(f"Full-batch training step (forward + backward + Adam), median of {args.repeats} rounds x "
                   f"{FULL_BLOCK} steps per peer, peers alternating by round", ["jaxlab", "PyG"], unit="ms",
                   extras=["jaxlab compile (s)"])
    for kind in ("gcn", "sage", "gat"):
        # jaxlab's host preprocessing: the reverse-edge index (one searchsorted, kept
        # for every step); PyG gets the same graph without it.
        g = graphs.with_reverse_index(d.full_graph(kind, prenormalize=kind != "gat"))
        g = jax.tree_util.tree_map(jnp.asarray, g)
        g = g._replace(nodes={**g.nodes, "mask": g.nodes["train_mask"]})
        jrun = jax_trainer(kind, g, 5, args.hidden, args.heads)
        t0 = time.perf_counter()
        jrun(g)
        compile_s = time.perf_counter() - t0
        fns = {"jaxlab": lambda: [jrun(g) for _ in range(FULL_BLOCK)]}
        if have_torch:
            hg = jax.device_get(g)
            b = to_torch(hg)
            if kind == "gat":
                b = strip_self_loops(b)
            trun = torch_trainer(kind, args.features, 5, args.hidden, args.heads)
            fns["PyG"] = lambda: [trun(b) for _ in range(FULL_BLOCK)]
        times = benchmark.alternate(fns, args.repeats)
        t1.add(kind, {k: [t / FULL_BLOCK for t in v] for k, v in times.items()},
               **{"jaxlab compile (s)": f"{compile_s:.2f}"})

    # 2. mini-batch throughput
    nsub = 20
    t2 = res.table(f"Mini-batch training step (GraphSAINT-RW subgraphs, 600 roots x 2 steps; median of "
                   f"{max(3, args.repeats)} passes of {nsub} subgraphs per peer, peers alternating by pass)",
                   ["jaxlab", "PyG"], unit="ms", extras=["jaxlab compiles"])
    for kind in ("gcn", "sage", "gat"):
        s = samplers.SaintRWSampler(d.adj, nodes, tm, num_roots=600, walk_length=2, model=kind,
                             norm_aggr=kind != "gat", norm_loss=kind != "gat", seed=0)
        if kind != "gat":
            s.estimate_normalization(20)
        batches = [s.batch(i) for i in range(nsub)]
        dev = [jax.tree_util.tree_map(jnp.asarray, b) for b in batches]
        budgets = {(b.nodes["x"].shape[0], b.senders.shape[0]) for b in batches}
        jrun = jax_trainer(kind, dev[0], 5, args.hidden, args.heads)
        for b in dev:  # compile every budget first
            jrun(b)
        # a training loop's dispatch: steps go back to back, one wait per pass (PyG's CPU
        # steps are synchronous anyway)
        fns = {"jaxlab": lambda: jax.block_until_ready([jrun(b, block=False) for b in dev])}
        if have_torch:
            tb = [to_torch(b) for b in batches]
            if kind == "gat":
                tb = [strip_self_loops(b) for b in tb]
            trun = torch_trainer(kind, args.features, 5, args.hidden, args.heads)
            fns["PyG"] = lambda: [trun(b) for b in tb]
        times = benchmark.alternate(fns, max(3, args.repeats), warmup=0)
        t2.add(kind, {k: [t / nsub for t in v] for k, v in times.items()}, **{"jaxlab compiles": str(len(budgets))})

    # 3. samplers
    t3 = res.table("Sampler, time per subgraph (jaxlab also builds coefficients with self loops, CSR edge "
                   "order, padding, the reverse-edge index and the padded node features; the baseline only the "
                   "induced subgraph; the peers alternate call by call)",
                   ["jaxlab", "scipy.sparse baseline"], unit="ms")
    adj = d.adj
    train = d.train
    rng = np.random.default_rng(0)
    deg = np.diff(adj.indptr)[train].astype(float)
    deg_p = deg / deg.sum()
    node = samplers.SaintNodeSampler(adj, nodes, tm, budget=2000)
    edge = samplers.SaintEdgeSampler(adj, nodes, tm, num_edges=1000)
    rw = samplers.SaintRWSampler(adj, nodes, tm, num_roots=600, walk_length=2)
    cl = samplers.ClusterSampler(adj, nodes, tm, num_parts=50, clusters_per_batch=5)
    nb = samplers.NeighborSampler(adj, nodes, tm, batch_size=512, fanouts=(10, 5))
    mg = MeGuideSampler(adj, nodes, tm, node_budget=2000)
    cases = [
        ("saint-node", node, lambda: scipy_node(adj, train, deg_p, 2000, rng)),
        ("saint-edge", edge, lambda: scipy_edge(edge.eu, edge.ev, edge.p, 1000, adj, rng)),
        ("saint-rw", rw, lambda: scipy_rw(adj, train, 600, 2, rng)),
        ("cluster", cl, lambda: scipy_cluster(adj, cl.clusters, 5, rng)),
        ("neighbor", nb, lambda: scipy_neighbor(adj, train, 512, (10, 5), rng)),
        ("meguide", mg, None),
    ]
    for name, smp, base in cases:
        counter = iter(range(10 ** 9))
        fns = {"jaxlab": lambda smp=smp, counter=counter: smp.batch(next(counter))}
        if base:
            fns["scipy.sparse baseline"] = base
        t3.add(name, benchmark.alternate(fns, args.repeats))
    res.note("subgraphs/s = 1 / time per subgraph; mini-batch steps/s = 1 / time per step")
    return res


if __name__ == "__main__":
    benchmark.run(main)
