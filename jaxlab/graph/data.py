"""Graph data: contextual stochastic block models, GraphSAINT folders, Planetoid files,
networkx's karate club; all as a `GraphData` (host NumPy / SciPy).

Nothing downloads: the block model is generated, karate ships with networkx, and the
two readers read the public formats users already have. Readers validate what they read
and raise `GraphFormatError` naming the file and field that is wrong.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import pathlib
import pickle
import sys
from typing import Optional

import numpy as np
import scipy.sparse as sp

from jaxlab.graph import graphs as G


class GraphFormatError(ValueError):
    """A graph file does not have the expected format; the message names file and field."""


@dataclasses.dataclass
class GraphData:
    """A node-classification dataset.

    adj: symmetric `[N, N]` CSR adjacency without self loops.
    x: `[N, F]` float32 features.  y: `[N]` int labels or `[N, C]` multi-hot.
    train / val / test: int index arrays.
    """

    adj: sp.csr_matrix
    x: np.ndarray
    y: np.ndarray
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    name: str = "graph"

    @property
    def num_nodes(self) -> int:
        return self.adj.shape[0]

    @property
    def multilabel(self) -> bool:
        return self.y.ndim == 2

    @property
    def num_classes(self) -> int:
        return self.y.shape[1] if self.multilabel else int(self.y.max()) + 1

    def masks(self) -> dict:
        out = {}
        for k in ("train", "val", "test"):
            m = np.zeros(self.num_nodes, bool)
            m[getattr(self, k)] = True
            out[k + "_mask"] = m
        return out

    def node_arrays(self) -> dict:
        d = dict(x=self.x.astype(np.float32), y=self.y, **self.masks())
        d["mask"] = d["train_mask"]
        return d

    def full_graph(self, model: str = "gcn", prenormalize: bool = True, budget_multiple: int = 64):
        """The whole graph as a padded GraphsTuple (edge weights normalised on the host
        for `model` when `prenormalize`, else raw 0/1 adjacency), padded to the next
        multiple of `budget_multiple` (no bucket ladder: it is padded once)."""
        nodes = self.node_arrays()
        g = G.normalized_graph(self.adj, nodes, model) if prenormalize else G.from_scipy(self.adj, nodes)
        return G.pad_to_budget(g, multiple=budget_multiple, growth=None)[0]


def scale_features(x, train_idx, how: str = "standard"):
    """Feature scaling fitted on the training nodes: "standard" (zero mean, unit variance:
    GraphSAINT's convention), "minmax" (CS-GNN's convention) or "none"."""
    x = np.asarray(x, np.float32)
    if how == "none":
        return x
    ref = x[train_idx] if len(train_idx) else x
    if how == "standard":
        mu, sd = ref.mean(0), ref.std(0)
        return ((x - mu) / np.where(sd > 0, sd, 1.0)).astype(np.float32)
    if how == "minmax":
        lo, hi = ref.min(0), ref.max(0)
        return ((x - lo) / np.where(hi > lo, hi - lo, 1.0)).astype(np.float32)
    raise ValueError(f"feature scaling must be 'standard', 'minmax' or 'none', got {how!r}")


# ----------------------------------------------------------------------------- CSBM


def contextual_sbm(num_nodes: int = 10_000, num_classes: int = 5, avg_degree: float = 10.0,
                   homophily: float = 0.8, num_features: int = 32, feature_signal: float = 1.0,
                   noise: float = 1.0, split=(0.6, 0.2, 0.2), seed: int = 0) -> GraphData:
    """Contextual stochastic block model (vectorised, ~1 s for 200k nodes).

    Labels are balanced over `num_classes`. Each of `num_nodes * avg_degree / 2`
    undirected edges picks a uniform endpoint u and, with probability `homophily`, a
    uniform partner v of the same class, else one of a uniformly chosen other class;
    self loops and duplicates are dropped, so the edge homophily (fraction of
    intra-class edges) is `homophily` up to sampling noise. Features
    x_v = feature_signal * mu_{y_v} + noise * eps / sqrt(F), eps ~ N(0, I_F), with
    unit-norm random class means mu_c. Random split by `split` (train, val, test).
    """
    if not 0.0 <= homophily <= 1.0:
        raise ValueError(f"homophily must lie in [0, 1], got {homophily}")
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.arange(num_nodes) % num_classes)
    order = np.argsort(y, kind="stable")  # nodes grouped by class
    sizes = np.bincount(y, minlength=num_classes)
    start = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    m = int(num_nodes * avg_degree / 2)
    u = rng.integers(0, num_nodes, m)
    same = rng.random(m) < homophily
    cls = np.where(same, y[u], (y[u] + rng.integers(1, max(num_classes, 2), m)) % num_classes)
    v = order[start[cls] + (rng.random(m) * sizes[cls]).astype(np.int64)]
    keep = u != v
    u, v = u[keep], v[keep]
    adj = sp.coo_matrix((np.ones(len(u), np.float32), (u, v)), shape=(num_nodes, num_nodes)).tocsr()
    adj = ((adj + adj.T) > 0).astype(np.float32).tocsr()
    means = rng.normal(size=(num_classes, num_features)).astype(np.float32)
    means /= np.linalg.norm(means, axis=1, keepdims=True)
    means *= feature_signal
    x = means[y] + noise * rng.normal(size=(num_nodes, num_features)).astype(np.float32) / np.sqrt(num_features)
    perm = rng.permutation(num_nodes)
    n_tr = int(split[0] * num_nodes)
    n_va = int(split[1] * num_nodes)
    return GraphData(adj=adj, x=x.astype(np.float32), y=y.astype(np.int64),
                     train=np.sort(perm[:n_tr]), val=np.sort(perm[n_tr:n_tr + n_va]),
                     test=np.sort(perm[n_tr + n_va:]), name=f"csbm-h{homophily}")


def edge_homophily(adj, y) -> float:
    """Fraction of edges whose endpoints share a label."""
    coo = sp.coo_matrix(adj)
    return float(np.mean(y[coo.row] == y[coo.col])) if coo.nnz else 0.0


# ----------------------------------------------------------------------------- karate


def karate_club(labelled=(0, 33)) -> GraphData:
    """Zachary's karate club from networkx: 34 nodes, one-hot identity features,
    labels from the `club` attribute (0 = 'Mr. Hi', 1 = 'Officer'); `train` = `labelled`,
    `val` empty, `test` = all other nodes."""
    import networkx as nx

    g = nx.karate_club_graph()
    n = g.number_of_nodes()
    adj = sp.csr_matrix(nx.to_scipy_sparse_array(g, nodelist=range(n), weight=None), dtype=np.float32)
    adj = G.remove_self_loops(adj)
    y = np.array([0 if g.nodes[i]["club"] == "Mr. Hi" else 1 for i in range(n)], np.int64)
    train = np.array(sorted(labelled), np.int64)
    test = np.setdiff1d(np.arange(n), train)
    return GraphData(adj=adj, x=np.eye(n, dtype=np.float32), y=y, train=train,
                     val=np.zeros(0, np.int64), test=test, name="karate")


# ----------------------------------------------------------------------------- GraphSAINT


SAINT_FILES = ("adj_full.npz", "adj_train.npz", "role.json", "feats.npy", "class_map.json")


def write_graphsaint(data: GraphData, folder) -> pathlib.Path:
    """Writes `data` in the GraphSAINT folder format:
    adj_full.npz / adj_train.npz (scipy CSR, N x N; adj_train keeps only edges between
    training nodes), role.json {"tr","va","te": id lists}, feats.npy [N, F] (raw,
    unscaled), class_map.json {"id": int label or multi-hot list}."""
    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    adj = sp.csr_matrix(data.adj, dtype=np.float32)
    sp.save_npz(folder / "adj_full.npz", adj)
    keep = np.zeros(data.num_nodes, np.float32)
    keep[data.train] = 1
    d = sp.diags(keep)
    sp.save_npz(folder / "adj_train.npz", (d @ adj @ d).tocsr())
    (folder / "role.json").write_text(json.dumps(
        {"tr": data.train.tolist(), "va": data.val.tolist(), "te": data.test.tolist()}))
    np.save(folder / "feats.npy", data.x.astype(np.float32))
    if data.multilabel:
        cm = {str(i): data.y[i].astype(int).tolist() for i in range(data.num_nodes)}
    else:
        cm = {str(i): int(data.y[i]) for i in range(data.num_nodes)}
    (folder / "class_map.json").write_text(json.dumps(cm))
    return folder


def read_graphsaint(folder, scale: str = "standard") -> GraphData:
    """Reads a GraphSAINT folder (see `write_graphsaint`), validating each file.

    Features are scaled on the training nodes (`scale`: standard | minmax | none;
    GraphSAINT standardises). Raises `GraphFormatError` naming the file and field.
    """
    folder = pathlib.Path(folder)
    if not folder.is_dir():
        raise GraphFormatError(f"{folder}: not a directory (expected a GraphSAINT folder with {', '.join(SAINT_FILES)})")
    for f in SAINT_FILES:
        if not (folder / f).exists():
            raise GraphFormatError(f"{folder / f}: missing (a GraphSAINT folder has {', '.join(SAINT_FILES)})")

    def load_npz(name):
        try:
            a = sp.load_npz(folder / name)
        except Exception as e:  # noqa: BLE001
            raise GraphFormatError(f"{folder / name}: not a scipy.sparse .npz matrix ({e})") from None
        if a.ndim != 2 or a.shape[0] != a.shape[1]:
            raise GraphFormatError(f"{folder / name}: adjacency must be square, got shape {a.shape}")
        return sp.csr_matrix(a, dtype=np.float32)

    adj = load_npz("adj_full.npz")
    adj_train = load_npz("adj_train.npz")
    n = adj.shape[0]
    if adj_train.shape != adj.shape:
        raise GraphFormatError(f"{folder / 'adj_train.npz'}: shape {adj_train.shape} differs from adj_full.npz {adj.shape}")
    try:
        x = np.load(folder / "feats.npy", allow_pickle=False)
    except Exception as e:  # noqa: BLE001
        raise GraphFormatError(f"{folder / 'feats.npy'}: not a .npy array ({e})") from None
    if x.ndim != 2 or x.shape[0] != n:
        raise GraphFormatError(f"{folder / 'feats.npy'}: expected shape [{n}, F] (rows = adj_full.npz nodes), got {x.shape}")
    if not np.issubdtype(x.dtype, np.number) or not np.all(np.isfinite(x)):
        raise GraphFormatError(f"{folder / 'feats.npy'}: features must be finite numbers")

    def load_json(name):
        try:
            return json.loads((folder / name).read_text())
        except json.JSONDecodeError as e:
            raise GraphFormatError(f"{folder / name}: invalid JSON at line {e.lineno}: {e.msg}") from None

    role = load_json("role.json")
    if not isinstance(role, dict):
        raise GraphFormatError(f"{folder / 'role.json'}: expected an object with keys tr, va, te")
    splits = {}
    for key in ("tr", "va", "te"):
        if key not in role:
            raise GraphFormatError(f"{folder / 'role.json'}: missing field '{key}'")
        ids = role[key]
        if not isinstance(ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
            raise GraphFormatError(f"{folder / 'role.json'}: field '{key}' must be a list of integer node ids")
        arr = np.asarray(ids, np.int64)
        if arr.size and (arr.min() < 0 or arr.max() >= n):
            raise GraphFormatError(f"{folder / 'role.json'}: field '{key}' has node ids outside [0, {n})")
        splits[key] = arr
    cmap = load_json("class_map.json")
    if not isinstance(cmap, dict):
        raise GraphFormatError(f"{folder / 'class_map.json'}: expected an object mapping node id -> label")
    values = [None] * n
    for k, v in cmap.items():
        try:
            i = int(k)
        except ValueError:
            raise GraphFormatError(f"{folder / 'class_map.json'}: key '{k}' is not a node id") from None
        if not 0 <= i < n:
            raise GraphFormatError(f"{folder / 'class_map.json'}: key '{k}' outside [0, {n})")
        values[i] = v
    missing = [i for i, v in enumerate(values) if v is None]
    if missing:
        raise GraphFormatError(f"{folder / 'class_map.json'}: no label for node '{missing[0]}' ({len(missing)} missing)")
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        y = np.asarray(values, np.int64)
        if y.min() < 0:
            raise GraphFormatError(f"{folder / 'class_map.json'}: labels must be non-negative")
    elif all(isinstance(v, list) for v in values):
        widths = {len(v) for v in values}
        if len(widths) != 1:
            raise GraphFormatError(f"{folder / 'class_map.json'}: multi-hot labels have different lengths {sorted(widths)}")
        y = np.asarray(values, np.float32)
        if not np.all((y == 0) | (y == 1)):
            raise GraphFormatError(f"{folder / 'class_map.json'}: multi-hot labels must be 0/1")
    else:
        raise GraphFormatError(f"{folder / 'class_map.json'}: labels must all be ints or all be 0/1 lists")
    diff = abs(adj - adj.T)
    if diff.nnz and diff.max() > 1e-6:
        raise GraphFormatError(f"{folder / 'adj_full.npz'}: adjacency must be symmetric (undirected graph)")
    adj = G.remove_self_loops(adj)
    x = scale_features(x, splits["tr"], scale)
    return GraphData(adj=adj, x=x, y=y, train=splits["tr"], val=splits["va"], test=splits["te"],
                     name=folder.name)


# ----------------------------------------------------------------------------- Planetoid


PLANETOID_FIELDS = ("x", "y", "tx", "ty", "allx", "ally", "graph")


def write_planetoid(data: GraphData, folder, name: str, num_labelled: Optional[int] = None) -> np.ndarray:
    """Writes `data` as Planetoid files `ind.<name>.{x,y,tx,ty,allx,ally,graph,test.index}`
    exactly as kimiyoung/planetoid and tkipf/gcn ship them: pickles (protocol 2) of
    scipy CSR feature matrices (x, tx, allx), one-hot label arrays (y, ty, ally), a
    `collections.defaultdict(list)` adjacency dict (graph), and `test.index` as text,
    one id per line. Node order in the files: the first `len(y)` nodes of allx are the
    labelled training nodes, allx covers all non-test nodes, test nodes come after.

    Mapping from `data`: training nodes first, then validation, then the rest of the
    non-test nodes (allx), then test nodes; `num_labelled` defaults to len(train).
    Returns `node_at [N]`: the original id of the node at each file position.
    """
    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if data.multilabel:
        raise ValueError("Planetoid files hold single-label data")
    n = data.num_nodes
    test = np.asarray(data.test)
    rest = np.setdiff1d(np.arange(n), np.concatenate([data.train, data.val, test]))
    order = np.concatenate([data.train, data.val, rest, test])  # file position -> original id
    n_all = n - len(test)
    nl = len(data.train) if num_labelled is None else num_labelled
    pos = np.empty(n, np.int64)
    pos[order] = np.arange(n)
    c = data.num_classes
    onehot = np.eye(c, dtype=np.float32)[data.y[order]]
    feats = sp.csr_matrix(data.x[order].astype(np.float32))
    # test nodes get arbitrary (shuffled) indices >= n_all, as in the real files
    rng = np.random.default_rng(0)
    test_index = n_all + rng.permutation(len(test))
    # the file stores tx / ty in test.index order of reading: row j is node test_index[j]
    node_at = np.empty(n, np.int64)
    node_at[:n_all] = order[:n_all]
    node_at[test_index] = order[n_all:]
    objs = {
        "x": feats[:nl], "y": onehot[:nl],
        "allx": feats[:n_all], "ally": onehot[:n_all],
        "tx": sp.csr_matrix(data.x[order[n_all:]].astype(np.float32)), "ty": onehot[n_all:],
    }
    inv = np.empty(n, np.int64)
    inv[node_at] = np.arange(n)
    coo = sp.coo_matrix(data.adj)
    graph = collections.defaultdict(list)
    for a, b in zip(inv[coo.row], inv[coo.col]):
        graph[int(a)].append(int(b))
    for i in range(n):
        graph[i]  # every node has an entry, possibly empty
    objs["graph"] = graph
    for k, v in objs.items():
        with open(folder / f"ind.{name}.{k}", "wb") as f:
            pickle.dump(v, f, protocol=2)
    (folder / f"ind.{name}.test.index").write_text("".join(f"{i}\n" for i in test_index))
    return node_at


def read_planetoid(folder, name: str, num_val: int = 500, scale: str = "none") -> GraphData:
    """Reads Planetoid files as tkipf/gcn's `load_data` does: features = allx stacked
    with tx re-ordered by test.index; train = the first len(y) nodes, val = the next
    `num_val`, test = test.index. Ids in the test range missing from test.index
    (Citeseer's isolated nodes) get zero features and class 0 and are left out of every
    split. Raises `GraphFormatError` naming the file and field."""
    folder = pathlib.Path(folder)
    objs = {}
    for k in PLANETOID_FIELDS:
        path = folder / f"ind.{name}.{k}"
        if not path.exists():
            raise GraphFormatError(f"{path}: missing (Planetoid needs ind.{name}.{{{','.join(PLANETOID_FIELDS)},test.index}})")
        try:
            with open(path, "rb") as f:
                objs[k] = pickle.load(f, encoding="latin1")
        except Exception as e:  # noqa: BLE001
            raise GraphFormatError(f"{path}: not a readable pickle ({type(e).__name__}: {e})") from None
    path = folder / f"ind.{name}.test.index"
    if not path.exists():
        raise GraphFormatError(f"{path}: missing")
    test_index = []
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            test_index.append(int(line))
        except ValueError:
            raise GraphFormatError(f"{path}:{lineno}: expected an integer node id, got {line!r}") from None
    test_index = np.asarray(test_index, np.int64)

    def fname(k):
        return folder / f"ind.{name}.{k}"

    def as_feats(k):
        v = objs[k]
        if sp.issparse(v):
            return sp.csr_matrix(v, dtype=np.float32)
        if isinstance(v, np.ndarray) and v.ndim == 2:
            return sp.csr_matrix(v.astype(np.float32))
        raise GraphFormatError(f"{fname(k)}: field '{k}' must be a 2-D feature matrix, got {type(v).__name__}")

    def as_labels(k):
        v = objs[k]
        if not isinstance(v, np.ndarray) or v.ndim != 2:
            raise GraphFormatError(f"{fname(k)}: field '{k}' must be a 2-D one-hot label array, got {type(v).__name__} {getattr(v, 'shape', '')}")
        return v

    x, tx, allx = as_feats("x"), as_feats("tx"), as_feats("allx")
    y, ty, ally = as_labels("y"), as_labels("ty"), as_labels("ally")
    width = allx.shape[1]
    for k, m in (("x", x), ("tx", tx)):
        if m.shape[1] != width:
            raise GraphFormatError(f"{fname(k)}: field '{k}' has {m.shape[1]} feature columns, ind.{name}.allx has {width}")
    c = ally.shape[1]
    for k, m in (("y", y), ("ty", ty)):
        if m.shape[1] != c:
            raise GraphFormatError(f"{fname(k)}: field '{k}' has {m.shape[1]} classes, ind.{name}.ally has {c}")
    for fx, fy, a, b in (("x", "y", x, y), ("tx", "ty", tx, ty), ("allx", "ally", allx, ally)):
        if a.shape[0] != b.shape[0]:
            raise GraphFormatError(f"{fname(fy)}: field '{fy}' has {b.shape[0]} rows, ind.{name}.{fx} has {a.shape[0]}")
    if len(test_index) != tx.shape[0]:
        raise GraphFormatError(f"{path}: {len(test_index)} ids, ind.{name}.tx has {tx.shape[0]} rows")
    n_all = allx.shape[0]
    if len(y) > n_all:
        raise GraphFormatError(f"{fname('y')}: field 'y' has more rows ({len(y)}) than ind.{name}.allx ({n_all})")
    if test_index.size and test_index.min() < n_all:
        raise GraphFormatError(f"{path}: test id {int(test_index.min())} overlaps allx rows [0, {n_all})")
    graph = objs["graph"]
    if not isinstance(graph, dict):
        raise GraphFormatError(f"{fname('graph')}: field 'graph' must be a dict node -> neighbour list, got {type(graph).__name__}")
    hi = int(test_index.max()) + 1 if test_index.size else n_all
    n = max(hi, n_all, (max(graph.keys()) + 1) if graph else 0)
    feats = sp.lil_matrix((n, width), dtype=np.float32)
    feats[:n_all] = allx
    feats[test_index] = tx
    labels = np.zeros((n, c), np.float32)
    labels[:n_all] = ally
    labels[test_index] = ty
    rows, cols = [], []
    for a, nbrs in graph.items():
        if not isinstance(nbrs, (list, tuple)):
            raise GraphFormatError(f"{fname('graph')}: field 'graph' entry {a!r} must be a list of node ids")
        for b in nbrs:
            if not (isinstance(a, (int, np.integer)) and isinstance(b, (int, np.integer))) or not (0 <= a < n and 0 <= b < n):
                raise GraphFormatError(f"{fname('graph')}: field 'graph' edge ({a!r}, {b!r}) is not a pair of node ids in [0, {n})")
            rows.append(a)
            cols.append(b)
    adj = sp.coo_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(n, n)).tocsr()
    adj = ((adj + adj.T) > 0).astype(np.float32).tocsr()
    adj = G.remove_self_loops(adj)
    train = np.arange(len(y))
    val = np.arange(len(y), min(len(y) + num_val, n_all))
    test = np.sort(test_index)
    xs = scale_features(np.asarray(feats.todense(), np.float32), train, scale)
    return GraphData(adj=adj, x=xs, y=labels.argmax(1).astype(np.int64), train=train, val=val,
                     test=test, name=name)


def load(spec: str, **sbm_kwargs) -> GraphData:
    """`"sbm"` (a contextual SBM with `sbm_kwargs`), `"karate"`, a GraphSAINT folder, or
    `"planetoid:<folder>:<name>"`."""
    if spec == "sbm":
        return contextual_sbm(**sbm_kwargs)
    if spec == "karate":
        return karate_club()
    if spec.startswith("planetoid:"):
        _, folder, name = spec.split(":", 2)
        return read_planetoid(folder, name)
    return read_graphsaint(spec)
