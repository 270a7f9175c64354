"""Graph data: contextual stochastic block models, GraphSAINT folders, Planetoid files,
networkx's karate club; all as a `GraphData` (host NumPy / SciPy).

Nothing downloads: the block model is generated, karate ships with networkx, and the
two readers read the public formats users already have. Readers validate what they read
and raise `GraphFormatError` naming the file and field that is wrong.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import json
import math
import pathlib
import pickle
import re
import zipfile

import numpy as np
import scipy.sparse as sp

from jaxlab.core.errors import DataFormatError
from jaxlab.graph import graphs as G


class GraphFormatError(DataFormatError):
    """A graph file does not have the expected format; the message names file and field.
    A `DataFormatError` (so a `JaxlabError` the command line prints as one line, and a
    `ValueError`)."""


@dataclasses.dataclass
class GraphData:
    """A node-classification dataset.

    adj: symmetric `[N, N]` CSR adjacency without self loops.
    x: `[N, F]` float32 features.  y: `[N]` int labels or `[N, C]` multi-hot.
    train / val / test: int index arrays.
    adj_train: the inductive training graph where the source gives one (GraphSAINT's
      adj_train.npz: symmetric `[N, N]` CSR, edges between training nodes only), else
      None; `train_adjacency()` falls back to the graph induced on the training nodes.
    """

    adj: sp.csr_matrix
    x: np.ndarray
    y: np.ndarray
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    name: str = "graph"
    adj_train: sp.csr_matrix | None = None

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

    def train_adjacency(self) -> sp.csr_matrix:
        """The graph of inductive training (GraphSAINT's protocol: training nodes see only
        each other): `adj_train` when the source gave one, else `adj` induced on the
        training nodes. `[N, N]` CSR, symmetric, no self loops, no stored zeros."""
        if self.adj_train is not None:
            return self.adj_train
        keep = np.zeros(self.num_nodes, np.float32)
        keep[self.train] = 1
        d = sp.diags(keep)
        a = (d @ sp.csr_matrix(self.adj) @ d).tocsr()
        a.eliminate_zeros()
        return a

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
    GraphSAINT's convention), "minmax" (CS-GNN's convention) or "none"; float32 out."""
    x = np.asarray(x, np.float32)
    if how == "none":
        return x
    ref = x[train_idx] if len(train_idx) else x
    # statistics and the map in float64: a float32 variance overflows for |x| > 1.8e19
    if how == "standard":
        shift, scale = ref.mean(0, dtype=np.float64), ref.std(0, dtype=np.float64)
    elif how == "minmax":
        shift = ref.min(0).astype(np.float64)
        scale = ref.max(0).astype(np.float64) - shift
    else:
        raise ValueError(f"feature scaling must be 'standard', 'minmax' or 'none', got {how!r}")
    scale = np.where(scale > 0, scale, 1.0)
    out = np.empty(x.shape, np.float32)
    rows = max(1, 2 ** 24 // max(1, x.shape[-1]))  # float64 temporaries of at most 128 MiB
    for lo in range(0, x.shape[0], rows):
        out[lo:lo + rows] = (x[lo:lo + rows] - shift) / scale
    return out


# ----------------------------------------------------------------------------- CSBM


def contextual_sbm(num_nodes: int = 10_000, num_classes: int = 5, avg_degree: float = 10.0,
                   homophily: float = 0.8, num_features: int = 32, feature_signal: float = 1.0,
                   noise: float = 1.0, split=(0.6, 0.2, 0.2), seed: int = 0,
                   num_labels: int = 0) -> GraphData:
    """Contextual stochastic block model (vectorised, ~1 s for 200k nodes).

    Labels are balanced over `num_classes`. Each of `num_nodes * avg_degree / 2`
    undirected edges picks a uniform endpoint u and, with probability `homophily`, a
    uniform partner v of the same class, else one of a uniformly chosen other class;
    self loops and duplicates are dropped, so the edge homophily (fraction of
    intra-class edges) is `homophily` up to sampling noise. Features
    x_v = feature_signal * mu_{y_v} + noise * eps / sqrt(F), eps ~ N(0, I_F), with
    unit-norm random class means mu_c. Random split by `split` (train, val, test).

    `num_labels > 0` makes the targets multi-label (as GraphSAINT's PPI and Yelp): the
    classes stay hidden communities that shape the edges and features, each class owns
    a random ~30% of `num_labels` binary labels (at least one), and node v carries
    label l with probability 0.8 if its class owns l, else 0.05; `y` is then a 0/1 array
    [num_nodes, num_labels], scored by micro-F1.
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
    if num_labels:
        owned = rng.random((num_classes, num_labels)) < 0.3
        owned[np.arange(num_classes), rng.integers(0, num_labels, num_classes)] = True
        y = (rng.random((num_nodes, num_labels)) < np.where(owned, 0.8, 0.05)[y]).astype(np.int64)
    return GraphData(adj=adj, x=x.astype(np.float32), y=y.astype(np.int64),
                     train=np.sort(perm[:n_tr]), val=np.sort(perm[n_tr:n_tr + n_va]),
                     test=np.sort(perm[n_tr + n_va:]),
                     name=f"csbm-h{homophily}" + (f"-ml{num_labels}" if num_labels else ""))


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
    adj_full.npz / adj_train.npz (scipy CSR, N x N; adj_train is `data.train_adjacency()`,
    edges between training nodes only), role.json {"tr","va","te": id lists}, feats.npy [N, F] (raw,
    unscaled), class_map.json {"id": int label or multi-hot list}."""
    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    adj = sp.csr_matrix(data.adj, dtype=np.float32)
    sp.save_npz(folder / "adj_full.npz", adj)
    sp.save_npz(folder / "adj_train.npz", sp.csr_matrix(data.train_adjacency(), dtype=np.float32))
    (folder / "role.json").write_text(json.dumps(
        {"tr": data.train.tolist(), "va": data.val.tolist(), "te": data.test.tolist()}))
    np.save(folder / "feats.npy", data.x.astype(np.float32))
    if data.multilabel:
        cm = {str(i): data.y[i].astype(int).tolist() for i in range(data.num_nodes)}
    else:
        cm = {str(i): int(data.y[i]) for i in range(data.num_nodes)}
    (folder / "class_map.json").write_text(json.dumps(cm))
    return folder


def _is_int(v) -> bool:
    """An integer id read from JSON or a pickle (a bool is not one)."""
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _short(v, width: int = 40) -> str:
    """`repr(v)`, cut to `width` characters for an error message."""
    r = repr(v)
    return r if len(r) <= width else r[: width - 3] + "..."


def _first(mask: np.ndarray) -> int:
    """Flat index of the first True of `mask` (which has one)."""
    return int(np.argmax(mask.ravel()))


def _read_text(path: pathlib.Path) -> str:
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise GraphFormatError(f"{path}: not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset {e.start})") from None


def _read_json(path: pathlib.Path):
    """A JSON file, rejecting duplicate keys (which `json` would silently collapse)."""

    def unique_keys(pairs):
        out = {}
        for k, v in pairs:
            if k in out:
                raise GraphFormatError(f"{path}: duplicate key {_short(k)}")
            out[k] = v
        return out

    text = _read_text(path)
    try:
        return json.loads(text, object_pairs_hook=unique_keys)
    except json.JSONDecodeError as e:
        raise GraphFormatError(f"{path}: invalid JSON at line {e.lineno}: {e.msg}") from None
    except RecursionError:
        raise GraphFormatError(f"{path}: JSON nested too deeply") from None


_NPY_HEADERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


class _Npz:
    """The members of a `scipy.sparse.save_npz` archive, read with `zipfile` (a file that
    is not a zip archive is closed again, unlike `np.load`'s). Every member's declared
    size is checked against the bytes the archive holds for it when opened, so reading one
    allocates no more than the file backs."""

    def __init__(self, path: pathlib.Path):
        self.path = path
        with open(path, "rb") as f:
            if f.read(6) == b"\x93NUMPY":
                raise self.error("a plain .npy array; write it with scipy.sparse.save_npz")
        try:
            self.zip = zipfile.ZipFile(path)
        except Exception as e:  # anything a corrupt archive raises
            raise self.error(f"{type(e).__name__}: {e}") from None
        try:
            self.files = {}
            for info in self.zip.infolist():
                with self.zip.open(info) as f:
                    header = _NPY_HEADERS.get(np.lib.format.read_magic(f))
                    if header is None:
                        raise self.error(f"member {info.filename!r} has an unsupported .npy version")
                    shape, _, dtype = header(f)
                if dtype.hasobject or math.prod(shape) * dtype.itemsize > info.file_size:
                    raise self.error(f"member {info.filename!r} declares {dtype} {list(shape)}, "
                                     f"more than the {info.file_size} bytes it holds")
                self.files[info.filename.removesuffix(".npy")] = info.filename
        except GraphFormatError:
            self.zip.close()
            raise
        except Exception as e:
            self.zip.close()
            raise self.error(f"{type(e).__name__}: {e}") from None

    def error(self, msg) -> GraphFormatError:
        return GraphFormatError(f"{self.path}: not a scipy.sparse .npz matrix ({msg})")

    def __getitem__(self, key: str) -> np.ndarray:
        if key not in self.files:
            raise GraphFormatError(f"{self.path}: no field {key!r}; members: {sorted(self.files)}")
        try:
            with self.zip.open(self.files[key]) as f:
                return np.lib.format.read_array(f, allow_pickle=False)
        except Exception as e:  # a corrupt member: CRC, deflate, truncation
            raise self.error(f"member {key!r}: {type(e).__name__}: {e}") from None

    def close(self):
        self.zip.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _npz_open(path: pathlib.Path):
    """Opens a `scipy.sparse.save_npz` file and reads only its header: returns
    `(_Npz, format, (rows, cols))`; the caller closes the archive (`with`)."""
    z = _Npz(path)
    with contextlib.ExitStack() as stack:
        stack.callback(z.close)  # closed unless the header is good
        fmt, shape = z["format"], z["shape"]
        fmt = fmt.item() if fmt.shape == () else None
        fmt = fmt.decode("ascii", "replace") if isinstance(fmt, bytes) else fmt
        if fmt not in ("csr", "csc", "coo"):
            raise GraphFormatError(f"{path}: field 'format' must be 'csr', 'csc' or 'coo', got {_short(fmt)}")
        if shape.shape != (2,) or shape.dtype.kind not in "iu" or shape.min() < 0:
            raise GraphFormatError(f"{path}: field 'shape' must be two non-negative integers, "
                                   f"got {_short(shape.tolist())}")
        stack.pop_all()
    return z, fmt, (int(shape[0]), int(shape[1]))


def _npz_matrix(path: pathlib.Path, z: _Npz, fmt: str, shape) -> sp.csr_matrix:
    """The matrix of an `_npz_open`ed file as float32 CSR, its indices and values checked:
    indices inside `shape`, weights finite and non-negative. Closes the archive."""
    names = ("data", "row", "col") if fmt == "coo" else ("data", "indices", "indptr")
    with z:
        arrays = {k: z[k] for k in names}
    for k, a in arrays.items():
        kinds = "biuf" if k == "data" else "iu"
        if a.ndim != 1 or a.dtype.kind not in kinds:
            raise GraphFormatError(f"{path}: field {k!r} must be a 1-D {'number' if k == 'data' else 'integer'} array, "
                                   f"got {a.dtype} {list(a.shape)}")
    try:
        if fmt == "coo":
            m = sp.coo_matrix((arrays["data"], (arrays["row"], arrays["col"])), shape=shape)
        else:
            m = (sp.csr_matrix if fmt == "csr" else sp.csc_matrix)(
                (arrays["data"], arrays["indices"], arrays["indptr"]), shape=shape)
            m.check_format(full_check=True)
    except ValueError as e:
        raise GraphFormatError(f"{path}: fields {', '.join(map(repr, names[1:]))} do not describe a {fmt} matrix "
                               f"of shape {list(shape)} ({e})") from None
    m = sp.csr_matrix(m, dtype=np.float32)
    bad = ~np.isfinite(m.data) | (m.data < 0)
    if bad.any():
        coo = m.tocoo()
        i = _first(~np.isfinite(coo.data) | (coo.data < 0))
        raise GraphFormatError(f"{path}: field 'data': edge ({coo.row[i]}, {coo.col[i]}) has weight {coo.data[i]} "
                               "(edge weights must be finite and non-negative)")
    return m


def _read_feats_npy(path: pathlib.Path, n: int) -> np.ndarray:
    """`feats.npy` as float32 `[n, F]`; the header is checked (through a memory map,
    which fails if the file is shorter than it says) before the values are read."""
    try:
        mm = np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception as e:
        raise GraphFormatError(f"{path}: not a .npy array ({type(e).__name__}: {e})") from None
    if not isinstance(mm, np.ndarray):
        raise GraphFormatError(f"{path}: not a .npy array (an .npz archive)")
    if mm.ndim != 2 or mm.shape[0] != n:
        raise GraphFormatError(f"{path}: expected shape [{n}, F] (rows = adj_full.npz nodes), got {list(mm.shape)}")
    if mm.shape[1] == 0:
        raise GraphFormatError(f"{path}: expected shape [{n}, F] with F >= 1 feature columns, got {list(mm.shape)}")
    if mm.dtype.kind not in "biuf":
        raise GraphFormatError(f"{path}: features must be real numbers, got dtype {mm.dtype}")
    with np.errstate(over="ignore"):
        x = np.array(mm, dtype=np.float32)
    del mm
    bad = ~np.isfinite(x)
    if bad.any():
        r, c = np.unravel_index(_first(bad), x.shape)
        raise GraphFormatError(f"{path}: feature [{r}, {c}] is {x[r, c]} as float32 (features must be finite)")
    return x


_NODE_KEY = re.compile(r"0|[1-9][0-9]{0,17}")


def read_graphsaint(folder, scale: str = "standard") -> GraphData:
    """Reads a GraphSAINT folder (see `write_graphsaint`), validating each file.

    Checked: adjacencies square, symmetric (adj_full), with finite non-negative weights and
    indices inside the node count that feats.npy's rows confirm (a header cannot make the
    reader allocate more than the files hold); adj_train symmetric, with edges only between
    training nodes; finite real features; role.json's tr / va / te disjoint lists of distinct node
    ids with tr non-empty; class_map.json with one label per node: ints that are dense
    class ids 0..C-1 (C <= number of nodes), or 0/1 lists of one length.

    Features are scaled on the training nodes (`scale`: standard | minmax | none;
    GraphSAINT standardises). adj_train (self loops removed) becomes `GraphData.adj_train`,
    the training graph of GraphSAINT's inductive protocol. Raises `GraphFormatError`
    naming the file and field.
    """
    folder = pathlib.Path(folder)
    if not folder.is_dir():
        raise GraphFormatError(f"{folder}: not a directory (expected a GraphSAINT folder with "
                               f"{', '.join(SAINT_FILES)})")
    for f in SAINT_FILES:
        if not (folder / f).exists():
            raise GraphFormatError(f"{folder / f}: missing (a GraphSAINT folder has {', '.join(SAINT_FILES)})")
    p_full, p_train, p_role, p_cmap = (folder / f for f in
                                       ("adj_full.npz", "adj_train.npz", "role.json", "class_map.json"))

    z, fmt, shape = _npz_open(p_full)
    if shape[0] != shape[1]:
        z.close()
        raise GraphFormatError(f"{p_full}: adjacency must be square, got shape {list(shape)}")
    n = shape[0]
    try:
        x = _read_feats_npy(folder / "feats.npy", n)  # bounds n by the bytes feats.npy holds
    except GraphFormatError:
        z.close()
        raise
    adj = _npz_matrix(p_full, z, fmt, shape)
    z, fmt, shape_train = _npz_open(p_train)
    if shape_train != shape:
        z.close()
        raise GraphFormatError(f"{p_train}: shape {list(shape_train)} differs from adj_full.npz {list(shape)}")
    adj_train = _npz_matrix(p_train, z, fmt, shape_train)

    role = _read_json(p_role)
    if not isinstance(role, dict):
        raise GraphFormatError(f"{p_role}: expected an object with keys tr, va, te")
    splits = {}
    for key in ("tr", "va", "te"):
        if key not in role:
            raise GraphFormatError(f"{p_role}: missing field '{key}'")
        ids = role[key]
        if not isinstance(ids, list) or not all(_is_int(i) for i in ids):
            raise GraphFormatError(f"{p_role}: field '{key}' must be a list of integer node ids")
        out = next((i for i in ids if not 0 <= i < n), None)
        if out is not None:
            raise GraphFormatError(f"{p_role}: field '{key}' has node ids outside [0, {n}) (e.g. {_short(out)})")
        arr = np.asarray(ids, np.int64)
        uniq, counts = np.unique(arr, return_counts=True)
        if (counts > 1).any():
            d = _first(counts > 1)
            raise GraphFormatError(f"{p_role}: field '{key}' lists node {uniq[d]} {counts[d]} times "
                                   "(ids must be distinct)")
        splits[key] = arr
    if not splits["tr"].size:
        raise GraphFormatError(f"{p_role}: field 'tr' is empty (no training nodes)")
    for a, b in (("tr", "va"), ("tr", "te"), ("va", "te")):
        both = np.intersect1d(splits[a], splits[b])
        if both.size:
            raise GraphFormatError(f"{p_role}: fields '{a}' and '{b}' share {both.size} node(s), e.g. {both[0]} "
                                   "(the splits must be disjoint)")
    coo = adj_train.tocoo()
    touched = np.union1d(coo.row[coo.data != 0], coo.col[coo.data != 0])
    outside = np.setdiff1d(touched, splits["tr"])
    if outside.size:
        raise GraphFormatError(f"{p_train}: has edges at node {outside[0]}, which role.json does not list in 'tr' "
                               f"({outside.size} such nodes; the training graph links training nodes only)")

    cmap = _read_json(p_cmap)
    if not isinstance(cmap, dict):
        raise GraphFormatError(f"{p_cmap}: expected an object mapping node id -> label")
    unset = object()
    values = [unset] * n
    for k, v in cmap.items():
        if not _NODE_KEY.fullmatch(k):
            raise GraphFormatError(f"{p_cmap}: key {_short(k)} is not a node id (a decimal integer)")
        i = int(k)
        if i >= n:
            raise GraphFormatError(f"{p_cmap}: key '{k}' outside [0, {n})")
        values[i] = v
    missing = [i for i, v in enumerate(values) if v is unset]
    if missing:
        raise GraphFormatError(f"{p_cmap}: no label for node '{missing[0]}' ({len(missing)} missing)")
    if all(_is_int(v) for v in values):
        i = next((i for i, v in enumerate(values) if not 0 <= v < n), None)
        if i is not None:
            raise GraphFormatError(
                f"{p_cmap}: node '{i}' has label {_short(values[i])}; labels must be class ids in [0, {n}) "
                f"({'negative' if values[i] < 0 else f'{n} nodes hold at most {n} classes'})")
        y = np.asarray(values, np.int64)
        counts = np.bincount(y)
        empty = np.flatnonzero(counts == 0)
        if empty.size:
            raise GraphFormatError(
                f"{p_cmap}: labels must be dense class ids 0..C-1, but no node has class {empty[0]} "
                f"({empty.size} of the {len(counts)} ids up to the largest label {len(counts) - 1} are unused)")
    elif all(isinstance(v, list) for v in values):
        widths = {len(v) for v in values}
        if len(widths) != 1:
            raise GraphFormatError(f"{p_cmap}: multi-hot labels have different lengths {sorted(widths)[:5]}")
        width = widths.pop()
        if not 1 <= width <= n:
            raise GraphFormatError(f"{p_cmap}: multi-hot labels have {width} classes, expected 1..{n} (the node count)")
        try:
            y = np.array(values)
        except (ValueError, TypeError, OverflowError):
            y = np.array(values, dtype=object)
        ok = y.dtype.kind in "biuf" and y.ndim == 2  # nested lists would add dimensions
        good = ((y == 0) | (y == 1)) if ok else np.zeros(y.shape, bool)
        if not good.all():
            if ok:
                r, c = np.unravel_index(_first(~good), y.shape)
            else:  # not all numbers: find the first entry that is not a 0/1 number
                r, c = next(((r, c) for r, row in enumerate(values) for c, e in enumerate(row)
                             if not (type(e) in (int, float, bool) and e in (0, 1))), (0, 0))
            raise GraphFormatError(f"{p_cmap}: node '{r}' has {_short(values[r][c])} at position {c} of its multi-hot "
                                   "label (entries must be 0 or 1)")
        y = y.astype(np.float32)
    else:
        i = next((i for i, v in enumerate(values) if not (_is_int(v) or isinstance(v, list))), None)
        if i is None:  # ints and lists mixed
            i = next(i for i, v in enumerate(values) if isinstance(v, list) != isinstance(values[0], list))
            got = f"node '0' has {_short(values[0])} but node '{i}' has {_short(values[i])}"
        else:
            got = f"node '{i}' has {_short(values[i])}"
        raise GraphFormatError(f"{p_cmap}: labels must all be ints or all be 0/1 lists ({got})")
    for path, a in ((p_full, adj), (p_train, adj_train)):
        diff = abs(a - a.T).tocoo()
        if diff.nnz and diff.max() > 1e-6:
            r, c = diff.row[np.argmax(diff.data)], diff.col[np.argmax(diff.data)]
            raise GraphFormatError(f"{path}: adjacency must be symmetric (undirected graph); "
                                   f"entries ({r}, {c}) and ({c}, {r}) differ")
    adj = G.remove_self_loops(adj)
    adj_train = G.remove_self_loops(adj_train)  # also drops stored zeros
    x = scale_features(x, splits["tr"], scale)
    return GraphData(adj=adj, x=x, y=y, train=splits["tr"], val=splits["va"], test=splits["te"],
                     name=folder.name, adj_train=adj_train)


# ----------------------------------------------------------------------------- Planetoid


PLANETOID_FIELDS = ("x", "y", "tx", "ty", "allx", "ally", "graph")


def write_planetoid(data: GraphData, folder, name: str, num_labelled: int | None = None) -> np.ndarray:
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


MAX_DENSE_FEATURE_BYTES = 16 * 2 ** 30
"""The largest dense float32 feature matrix `read_planetoid` builds (Planetoid stores
features sparse; a corrupt width must not make the reader ask for terabytes)."""


def _read_pickle(path: pathlib.Path):
    """A pickle read from the file's bytes (a length field in a corrupt pickle can then
    not make it allocate more than the file holds)."""
    data = path.read_bytes()
    try:
        return pickle.loads(data, encoding="latin1")
    except Exception as e:  # anything a corrupt pickle raises
        raise GraphFormatError(f"{path}: not a readable pickle ({type(e).__name__}: {e})") from None


def _read_test_index(path: pathlib.Path):
    """`ind.<name>.test.index`: one integer node id a line; returns (ids, line numbers)."""
    ids, lines = [], []
    for lineno, line in enumerate(_read_text(path).splitlines(), 1):
        s = line.strip()
        if not s:
            continue
        if not re.fullmatch(r"-?[0-9]{1,18}", s):
            raise GraphFormatError(f"{path}:{lineno}: expected an integer node id, got {_short(line)}")
        ids.append(int(s))
        lines.append(lineno)
    return np.asarray(ids, np.int64), np.asarray(lines, np.int64)


def _planetoid_labels(path: pathlib.Path, k: str, v, unlabelled_ok: bool) -> np.ndarray:
    """A Planetoid one-hot label array `[rows, C]` of 0/1 numbers with exactly one 1 a row
    (`unlabelled_ok`: or none, an unlabelled node, as allowed in `ally`)."""
    if not isinstance(v, np.ndarray) or v.ndim != 2:
        raise GraphFormatError(f"{path}: field '{k}' must be a 2-D one-hot label array, got {type(v).__name__} "
                               f"{list(getattr(v, 'shape', []))}")
    v = np.asarray(v)
    if v.dtype.kind not in "biuf":
        raise GraphFormatError(f"{path}: field '{k}' must hold 0/1 numbers, got dtype {v.dtype}")
    good = (v == 0) | (v == 1)
    if not good.all():
        r, c = np.unravel_index(_first(~good), v.shape)
        raise GraphFormatError(f"{path}: field '{k}' row {r} has {v[r, c]} in column {c} (one-hot labels hold 0 and 1)")
    ones = np.count_nonzero(v, axis=1)
    bad = (ones > 1) if unlabelled_ok else (ones != 1)
    if bad.any():
        r = _first(bad)
        what = "no class (an all-zero row)" if ones[r] == 0 else f"{ones[r]} classes"
        raise GraphFormatError(f"{path}: field '{k}' row {r} has {what}; each row must be one-hot")
    return v


def _shape2(v):
    try:
        shape = tuple(int(s) for s in v.shape)
    except Exception:
        return None
    return shape if len(shape) == 2 and min(shape) >= 0 else None


def _planetoid_features(path: pathlib.Path, k: str, v) -> sp.csr_matrix:
    """A Planetoid feature matrix (scipy sparse, or a 2-D array) as float32 CSR, its
    indices and values checked (finite real numbers)."""
    try:
        if isinstance(v, np.ndarray):
            if v.dtype.kind not in "biuf":
                raise GraphFormatError(f"{path}: field '{k}' must hold real numbers, got dtype {v.dtype}")
            with np.errstate(over="ignore"):
                m = sp.csr_matrix(np.asarray(v, np.float32))
        else:
            shape = _shape2(v)
            if v.format in ("csr", "csc"):
                m = (sp.csr_matrix if v.format == "csr" else sp.csc_matrix)(
                    (np.asarray(v.data), np.asarray(v.indices), np.asarray(v.indptr)), shape=shape)
                m.check_format(full_check=True)
            else:
                c = v.tocoo()
                m = sp.coo_matrix((np.asarray(c.data), (np.asarray(c.row), np.asarray(c.col))), shape=shape)
            if m.dtype.kind not in "biuf":
                raise GraphFormatError(f"{path}: field '{k}' must hold real numbers, got dtype {m.dtype}")
            with np.errstate(over="ignore"):
                m = sp.csr_matrix(m, dtype=np.float32)
    except GraphFormatError:
        raise
    except Exception as e:  # a corrupt sparse matrix fails in many ways
        raise GraphFormatError(f"{path}: field '{k}' is not a valid sparse matrix ({type(e).__name__}: {e})") from None
    bad = ~np.isfinite(m.data)
    if bad.any():
        i = _first(bad)
        r = int(np.searchsorted(m.indptr, i, side="right")) - 1
        raise GraphFormatError(f"{path}: field '{k}' row {r} column {m.indices[i]} is {m.data[i]} as float32 "
                               "(features must be finite)")
    return m


def read_planetoid(folder, name: str, num_val: int = 500, scale: str = "none") -> GraphData:
    """Reads Planetoid files as tkipf/gcn's `load_data` does: features = allx stacked
    with tx re-ordered by test.index; train = the first len(y) nodes, val = the labelled
    nodes among the next `num_val`, test = test.index. Ids in the test range missing from
    test.index (Citeseer's isolated nodes) get zero features and class 0 and are left out
    of every split; so are allx's unlabelled nodes (all-zero rows of ally).

    Checked: labels one-hot 0/1 (all-zero rows only in ally, never for a node of y, whose
    rows ally repeats), at most one class a node; features finite real numbers; test ids
    distinct and after the allx rows; graph a dict of integer node ids. Node ids are
    bounded by what the files hold: allx + tx rows, or the number of graph entries where
    that is larger (NELL), so a corrupt id cannot make the reader allocate more.
    Raises `GraphFormatError` naming the file and field."""
    folder = pathlib.Path(folder)
    if not name:
        raise GraphFormatError(f"{folder}: no Planetoid dataset name given (the files are ind.<name>.x, ...)")
    if not folder.is_dir():
        raise GraphFormatError(f"{folder}: not a directory (expected Planetoid files ind.{name}.*)")
    if num_val < 0:
        raise ValueError(f"num_val must be >= 0, got {num_val}")
    objs = {}
    for k in PLANETOID_FIELDS:
        path = folder / f"ind.{name}.{k}"
        if not path.exists():
            raise GraphFormatError(f"{path}: missing (Planetoid needs "
                                   f"ind.{name}.{{{','.join(PLANETOID_FIELDS)},test.index}})")
        objs[k] = _read_pickle(path)
    path = folder / f"ind.{name}.test.index"
    if not path.exists():
        raise GraphFormatError(f"{path}: missing")
    test_index, test_lines = _read_test_index(path)

    def fname(k):
        return folder / f"ind.{name}.{k}"

    y = _planetoid_labels(fname("y"), "y", objs["y"], unlabelled_ok=False)
    ty = _planetoid_labels(fname("ty"), "ty", objs["ty"], unlabelled_ok=False)
    ally = _planetoid_labels(fname("ally"), "ally", objs["ally"], unlabelled_ok=True)
    shapes = {}
    for k in ("x", "tx", "allx"):
        v = objs[k]
        shapes[k] = _shape2(v) if isinstance(v, np.ndarray) or sp.issparse(v) else None
        if shapes[k] is None:
            raise GraphFormatError(f"{fname(k)}: field '{k}' must be a 2-D feature matrix, got {type(v).__name__}")
    width = shapes["allx"][1]
    for k in ("x", "tx"):
        if shapes[k][1] != width:
            raise GraphFormatError(f"{fname(k)}: field '{k}' has {shapes[k][1]} feature columns, "
                                   f"ind.{name}.allx has {width}")
    c = ally.shape[1]
    for k, m in (("y", y), ("ty", ty)):
        if m.shape[1] != c:
            raise GraphFormatError(f"{fname(k)}: field '{k}' has {m.shape[1]} classes, ind.{name}.ally has {c}")
    for fx, fy, b in (("x", "y", y), ("tx", "ty", ty), ("allx", "ally", ally)):
        if shapes[fx][0] != b.shape[0]:
            raise GraphFormatError(f"{fname(fy)}: field '{fy}' has {b.shape[0]} rows, "
                                   f"ind.{name}.{fx} has {shapes[fx][0]}")
    # the row counts now match dense label arrays, so converting the features is bounded;
    # x is checked although tkipf/gcn only takes its row count
    _x, tx, allx = (_planetoid_features(fname(k), k, objs[k]) for k in ("x", "tx", "allx"))
    n_all, ny = allx.shape[0], y.shape[0]
    if ny == 0:
        raise GraphFormatError(f"{fname('y')}: field 'y' has no rows (no labelled training nodes)")
    if ny > n_all:
        raise GraphFormatError(f"{fname('y')}: field 'y' has more rows ({ny}) than ind.{name}.allx ({n_all})")
    differ = np.flatnonzero((ally[:ny] != y).any(axis=1))
    if differ.size:
        r = differ[0]
        raise GraphFormatError(f"{fname('ally')}: field 'ally' row {r} is {ally[r].tolist()} but ind.{name}.y "
                               f"row {r} is {y[r].tolist()} (the first len(y) = {ny} rows of ally are the "
                               "training nodes of y)")
    if len(test_index) != tx.shape[0]:
        raise GraphFormatError(f"{path}: {len(test_index)} ids, ind.{name}.tx has {tx.shape[0]} rows")
    graph = objs["graph"]
    if not isinstance(graph, dict):
        raise GraphFormatError(f"{fname('graph')}: field 'graph' must be a dict node -> neighbour list, "
                               f"got {type(graph).__name__}")
    bound = max(n_all + tx.shape[0], len(graph))
    limit = "node ids are bounded by the allx + tx rows or the number of graph entries"
    if test_index.size:
        out = (test_index < n_all) | (test_index >= bound)
        if out.any():
            i = _first(out)
            raise GraphFormatError(f"{path}:{test_lines[i]}: test id {test_index[i]} is outside [{n_all}, {bound}) "
                                   f"(test ids follow the {n_all} allx rows; {limit})")
        order = np.argsort(test_index, kind="stable")
        dup = np.flatnonzero(np.diff(test_index[order]) == 0)
        if dup.size:
            a, b = order[dup[0]], order[dup[0] + 1]
            raise GraphFormatError(f"{path}:{test_lines[b]}: test id {test_index[b]} repeats line {test_lines[a]} "
                                   "(test ids must be distinct)")
    rows, cols = [], []
    for a, nbrs in graph.items():
        if not _is_int(a) or not 0 <= a < bound:
            raise GraphFormatError(f"{fname('graph')}: field 'graph' key {_short(a)} is not a node id in "
                                   f"[0, {bound}) ({limit})")
        if not isinstance(nbrs, (list, tuple)):
            raise GraphFormatError(f"{fname('graph')}: field 'graph' entry {a} must be a list of node ids, "
                                   f"got {type(nbrs).__name__}")
        for b in nbrs:
            if not _is_int(b) or not 0 <= b < bound:
                raise GraphFormatError(f"{fname('graph')}: field 'graph' edge ({a}, {_short(b)}) is not a pair of "
                                       f"node ids in [0, {bound}) ({limit})")
            rows.append(int(a))
            cols.append(int(b))
    n = max(n_all + tx.shape[0], int(test_index.max()) + 1 if test_index.size else 0,
            max(rows, default=-1) + 1, max(cols, default=-1) + 1, max((int(a) for a in graph), default=-1) + 1)
    if c > n:
        raise GraphFormatError(f"{fname('ally')}: field 'ally' has {c} classes for {n} nodes "
                               "(more classes than nodes)")
    if n * width * 4 > MAX_DENSE_FEATURE_BYTES:
        raise GraphFormatError(f"{fname('allx')}: field 'allx' has {width} feature columns: {n} nodes would need "
                               f"{n * width * 4 / 2 ** 30:.1f} GiB as dense float32 "
                               f"(more than MAX_DENSE_FEATURE_BYTES = {MAX_DENSE_FEATURE_BYTES / 2 ** 30:.0f} GiB)")
    stacked = sp.vstack([allx, tx]).tocoo()
    at = np.concatenate([np.arange(n_all), test_index])  # file row -> node id
    feats = sp.csr_matrix((stacked.data, (at[stacked.row], stacked.col)), shape=(n, width))
    labels = np.full(n, -1, np.int64)
    has = ally.any(axis=1)
    labels[np.flatnonzero(has)] = ally.argmax(1)[has]
    labels[test_index] = ty.argmax(1)
    adj = sp.coo_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(n, n)).tocsr()
    adj = ((adj + adj.T) > 0).astype(np.float32).tocsr()
    adj = G.remove_self_loops(adj)
    train = np.arange(ny)
    window = np.arange(ny, min(ny + num_val, n_all))
    val = window[labels[window] >= 0]
    if window.size and not val.size:
        raise GraphFormatError(f"{fname('ally')}: field 'ally' rows {ny}..{window[-1]} (the validation nodes) are "
                               "all unlabelled (all-zero rows)")
    test = np.sort(test_index)
    xs = scale_features(feats.toarray(), train, scale)
    return GraphData(adj=adj, x=xs, y=np.maximum(labels, 0), train=train, val=val, test=test, name=name)


def _planetoid_spec(spec: str):
    """`(folder, name)` of `"planetoid:<folder>:<name>"`; without a name, the one dataset
    whose `ind.<name>.graph` the folder holds."""
    rest = spec[len("planetoid:"):]
    folder, sep, name = rest.rpartition(":")
    if not sep:
        folder, name = rest, ""
    if not folder:
        raise GraphFormatError(f"data spec {spec!r}: no folder (expected 'planetoid:<folder>:<name>', "
                               "e.g. 'planetoid:data/planetoid:cora')")
    p = pathlib.Path(folder).expanduser()
    if not p.is_dir():
        raise GraphFormatError(f"data spec {spec!r}: {p} is not a directory (expected 'planetoid:<folder>:<name>')")
    if not name:
        found = sorted(f.name[len("ind."):-len(".graph")] for f in p.glob("ind.*.graph"))
        if len(found) != 1:
            raise GraphFormatError(f"data spec {spec!r}: no dataset name (expected 'planetoid:<folder>:<name>'); "
                                   + (f"{p} holds {', '.join(found)}" if found else f"{p} holds no ind.<name>.graph"))
        name = found[0]
    return p, name


def load(spec: str, *, scale: str | None = None, num_val: int = 500, **sbm_kwargs) -> GraphData:
    """The dataset a data spec names:

      "sbm"                        a contextual SBM built with `sbm_kwargs` (ignored otherwise);
      "karate"                     Zachary's karate club;
      "planetoid:<folder>:<name>"  Planetoid files `<folder>/ind.<name>.*` (`:<name>` may be
                                   left out when the folder holds one dataset);
      any other string             a GraphSAINT folder.

    `scale` (standard | minmax | none) scales the features of the files read (default: each
    reader's own: GraphSAINT standardises, Planetoid does not); `num_val` is Planetoid's
    validation count. A spec that names nothing readable raises `GraphFormatError`.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise GraphFormatError(f"data spec {spec!r} is empty: expected 'sbm', 'karate', "
                               "'planetoid:<folder>:<name>' or a GraphSAINT folder")
    if spec == "sbm":
        return contextual_sbm(**sbm_kwargs)
    if spec == "karate":
        return karate_club()
    kwargs = {} if scale is None else {"scale": scale}
    if spec.startswith("planetoid:"):
        folder, name = _planetoid_spec(spec)
        return read_planetoid(folder, name, num_val=num_val, **kwargs)
    folder = pathlib.Path(spec).expanduser()
    if not folder.is_dir():
        raise GraphFormatError(f"data spec {spec!r}: not 'sbm', 'karate', 'planetoid:<folder>:<name>', nor an "
                               "existing GraphSAINT folder")
    return read_graphsaint(folder, **kwargs)
