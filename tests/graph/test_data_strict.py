"""The GraphSAINT and Planetoid readers validate values, not only shapes: each corruption
of a valid folder (written in exactly the real format by `write_graphsaint` /
`write_planetoid`) raises a `DataFormatError` naming the file and field; never a bare
NumPy / Unicode / Type error, never a silent load, never an allocation the files do not
back. Hypothesis fuzzes value corruptions and random byte flips."""

import collections
import json
import pathlib
import pickle
import tempfile
import zipfile

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jaxlab.core.errors import DataFormatError, JaxlabError
from jaxlab.graph import data as D

FUZZ = settings(deadline=None, max_examples=40, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


def _saint(folder, seed=0, n=30):
    d = D.contextual_sbm(n, num_classes=3, avg_degree=4, seed=seed, split=(0.4, 0.3, 0.3))
    return D.write_graphsaint(d, folder), d


def _planetoid(folder, seed=0, n=40):
    d = D.contextual_sbm(n, num_classes=3, avg_degree=4, seed=seed, split=(0.2, 0.2, 0.3))
    node_at = D.write_planetoid(d, folder, "toy")
    return pathlib.Path(folder), d, node_at


def _json(path, mutate):
    obj = json.loads(path.read_text())
    obj = mutate(obj) or obj
    path.write_text(json.dumps(obj))


def _pickled(path, mutate):
    with open(path, "rb") as f:
        obj = pickle.load(f, encoding="latin1")
    obj = mutate(obj)
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def _raises(fn, *names):
    """Calls `fn`, expecting a DataFormatError (a JaxlabError and a ValueError) whose
    message contains every string of `names`; returns the message."""
    with pytest.raises(DataFormatError) as e:
        fn()
    assert isinstance(e.value, D.GraphFormatError) and isinstance(e.value, JaxlabError)
    assert isinstance(e.value, ValueError)
    msg = str(e.value)
    for s in names:
        assert s in msg, (s, msg)
    return msg


def test_graph_format_error_is_a_data_format_error():
    assert issubclass(D.GraphFormatError, DataFormatError)
    assert issubclass(D.GraphFormatError, JaxlabError) and issubclass(D.GraphFormatError, ValueError)


# ----------------------------------------------------------------------------- GraphSAINT: the reported cases


def test_graphsaint_train_test_overlap(tmp_path):
    f, d = _saint(tmp_path)
    node = int(d.train[0])
    _json(f / "role.json", lambda r: r["te"].append(node))
    msg = _raises(lambda: D.read_graphsaint(f), str(f / "role.json"), "'tr'", "'te'", "disjoint")
    assert f"e.g. {node}" in msg


@pytest.mark.parametrize("a,b", [("tr", "va"), ("va", "te")])
def test_graphsaint_other_overlaps(tmp_path, a, b):
    f, _ = _saint(tmp_path)

    def mutate(r):
        r[b].append(r[a][-1])

    _json(f / "role.json", mutate)
    _raises(lambda: D.read_graphsaint(f), str(f / "role.json"), f"'{a}'", f"'{b}'")


def test_graphsaint_duplicate_id_in_a_split(tmp_path):
    f, d = _saint(tmp_path)
    _json(f / "role.json", lambda r: r["va"].append(r["va"][0]))
    _raises(lambda: D.read_graphsaint(f), str(f / "role.json"), "'va'", f"node {d.val[0]} 2 times")


def test_graphsaint_label_of_a_million(tmp_path):
    f, _ = _saint(tmp_path)
    _json(f / "class_map.json", lambda c: c.update({"7": 10 ** 6}))
    _raises(lambda: D.read_graphsaint(f), str(f / "class_map.json"), "node '7'", "1000000", "[0, 30)")


def test_graphsaint_labels_must_be_dense(tmp_path):
    f, d = _saint(tmp_path)
    # class 1 renamed 4: classes 0, 2, 4 are used, 1 and 3 are not
    _json(f / "class_map.json", lambda c: {k: (4 if v == 1 else v) for k, v in c.items()})
    _raises(lambda: D.read_graphsaint(f), str(f / "class_map.json"), "dense", "no node has class 1")


def test_graphsaint_empty_train_split(tmp_path):
    f, _ = _saint(tmp_path)
    sp.save_npz(f / "adj_train.npz", sp.csr_matrix((30, 30), dtype=np.float32))
    _json(f / "role.json", lambda r: r.update(tr=[]))
    _raises(lambda: D.read_graphsaint(f), str(f / "role.json"), "'tr' is empty")


@pytest.mark.parametrize("name", ["class_map.json", "role.json"])
def test_graphsaint_non_utf8_json(tmp_path, name):
    f, _ = _saint(tmp_path)
    raw = (f / name).read_bytes()
    (f / name).write_bytes(raw[:5] + b"\xff\xfe" + raw[5:])
    _raises(lambda: D.read_graphsaint(f), str(f / name), "not UTF-8", "0xff", "offset 5")


@pytest.mark.parametrize("label,expect", [
    (1.5, "node '3' has 1.5"), ("2", "node '3' has '2'"), (None, "node '3' has None"),
    (True, "node '3' has True"), (-1, "negative"),
])
def test_graphsaint_bad_int_labels(tmp_path, label, expect):
    f, _ = _saint(tmp_path)
    _json(f / "class_map.json", lambda c: c.update({"3": label}))
    _raises(lambda: D.read_graphsaint(f), str(f / "class_map.json"), expect)


@pytest.mark.parametrize("mutate,expect", [
    (lambda c: c.update({"01": c.pop("1")}), "key '01' is not a node id"),
    (lambda c: c.update({"30": 0}), "key '30' outside [0, 30)"),
    (lambda c: c.pop("29"), "no label for node '29'"),
])
def test_graphsaint_bad_class_map_keys(tmp_path, mutate, expect):
    f, _ = _saint(tmp_path)
    _json(f / "class_map.json", mutate)
    _raises(lambda: D.read_graphsaint(f), str(f / "class_map.json"), expect)


def test_graphsaint_duplicate_json_key(tmp_path):
    f, _ = _saint(tmp_path)
    text = (f / "class_map.json").read_text()
    (f / "class_map.json").write_text(text[:-1] + ', "4": 0}')
    _raises(lambda: D.read_graphsaint(f), str(f / "class_map.json"), "duplicate key '4'")


@pytest.mark.parametrize("ids,expect", [
    ([10 ** 20], "outside [0, 30)"), ([-1], "outside [0, 30)"), ([1.0], "list of integer node ids"),
    (["3"], "list of integer node ids"), ([True], "list of integer node ids"), ({"0": 1}, "list of integer"),
])
def test_graphsaint_bad_role_ids(tmp_path, ids, expect):
    f, _ = _saint(tmp_path)
    _json(f / "role.json", lambda r: r.update(va=ids))
    _raises(lambda: D.read_graphsaint(f), str(f / "role.json"), "'va'", expect)


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf, 1e39])
def test_graphsaint_non_finite_features(tmp_path, value):
    f, d = _saint(tmp_path)
    x = d.x.astype(np.float64)
    x[4, 2] = value
    np.save(f / "feats.npy", x)
    _raises(lambda: D.read_graphsaint(f), str(f / "feats.npy"), "feature [4, 2]", "finite")


@pytest.mark.parametrize("x,expect", [
    (np.ones((30, 4), np.complex64), "real numbers"),
    (np.array([["a"] * 4] * 30), "real numbers"),
    (np.ones((30, 0), np.float32), "F >= 1"),
    (np.ones(30, np.float32), "expected shape [30, F]"),
])
def test_graphsaint_bad_feature_arrays(tmp_path, x, expect):
    f, _ = _saint(tmp_path)
    np.save(f / "feats.npy", x)
    _raises(lambda: D.read_graphsaint(f), str(f / "feats.npy"), expect)


@pytest.mark.parametrize("weight,expect", [(np.nan, "weight nan"), (-1.0, "weight -1.0"), (np.inf, "weight inf")])
def test_graphsaint_bad_edge_weights(tmp_path, weight, expect):
    f, d = _saint(tmp_path)
    a = d.adj.tolil()
    a[2, 5] = a[5, 2] = weight
    sp.save_npz(f / "adj_full.npz", a.tocsr())
    _raises(lambda: D.read_graphsaint(f), str(f / "adj_full.npz"), "field 'data'", expect, "(2, 5)")


def test_graphsaint_asymmetric_adjacency(tmp_path):
    f, d = _saint(tmp_path)
    a = d.adj.tolil()
    u, v = next((u, v) for u in range(30) for v in range(u + 1, 30) if a[u, v] == 0)
    a[u, v] = 1
    sp.save_npz(f / "adj_full.npz", a.tocsr())
    _raises(lambda: D.read_graphsaint(f), str(f / "adj_full.npz"), "symmetric", f"({u}, {v})")


def test_graphsaint_adj_train_links_training_nodes_only(tmp_path):
    f, d = _saint(tmp_path)
    t, o = int(d.train[0]), int(d.test[0])
    a = sp.load_npz(f / "adj_train.npz").tolil()
    a[t, o] = a[o, t] = 1
    sp.save_npz(f / "adj_train.npz", a.tocsr())
    _raises(lambda: D.read_graphsaint(f), str(f / "adj_train.npz"), f"node {o}", "'tr'")


def test_graphsaint_index_outside_the_matrix(tmp_path):
    f, _ = _saint(tmp_path)
    np.savez(f / "adj_full.npz", format=np.array(b"csr"), shape=np.array([30, 30]), data=np.ones(1, np.float32),
             indices=np.array([45]), indptr=np.r_[0, np.ones(30, int)])
    _raises(lambda: D.read_graphsaint(f), str(f / "adj_full.npz"), "indices")


# ----------------------------------------------------------------------------- GraphSAINT: bounded allocation


def test_graphsaint_huge_declared_shape_allocates_nothing(tmp_path):
    # a COO adjacency declaring 10^13 nodes with one entry: converting it to CSR would
    # allocate an 80 TB index pointer; the reader stops at feats.npy's 30 rows first
    f, _ = _saint(tmp_path)
    np.savez(f / "adj_full.npz", format=np.array(b"coo"), shape=np.array([10 ** 13, 10 ** 13]),
             data=np.ones(1, np.float32), row=np.zeros(1, np.int64), col=np.zeros(1, np.int64))
    _raises(lambda: D.read_graphsaint(f), str(f / "feats.npy"), "[10000000000000, F]", "adj_full.npz")


def test_graphsaint_npy_header_larger_than_file(tmp_path):
    f, _ = _saint(tmp_path)
    with open(f / "feats.npy", "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, {"descr": "<f4", "fortran_order": False, "shape": (30, 10 ** 11)})
        fh.write(b"\0" * 64)
    _raises(lambda: D.read_graphsaint(f), str(f / "feats.npy"), "not a .npy array")


def test_graphsaint_npz_member_larger_than_archive(tmp_path):
    f, _ = _saint(tmp_path)
    p = f / "adj_full.npz"
    with zipfile.ZipFile(p, "w") as z:
        for k, v in dict(format=np.array("csr"), shape=np.array([30, 30]), indices=np.zeros(0, np.int32),
                         indptr=np.zeros(31, np.int32)).items():
            with z.open(k + ".npy", "w") as fh:
                np.lib.format.write_array(fh, v)
        with z.open("data.npy", "w") as fh:  # declares 4 TB, holds 16 bytes
            np.lib.format.write_array_header_1_0(fh, {"descr": "<f4", "fortran_order": False, "shape": (10 ** 12,)})
            fh.write(b"\0" * 16)
    _raises(lambda: D.read_graphsaint(f), str(p), "'data.npy'", "declares")


def test_graphsaint_valid_variants_still_load(tmp_path):
    f, d = _saint(tmp_path)
    # COO storage and int64 features are fine; values are compared with what was written
    sp.save_npz(f / "adj_full.npz", sp.coo_matrix(d.adj))
    np.save(f / "feats.npy", np.round(d.x * 100).astype(np.int64))
    r = D.read_graphsaint(f, scale="none")
    assert (r.adj != d.adj).nnz == 0
    np.testing.assert_array_equal(r.x, np.round(d.x * 100).astype(np.float32))
    np.testing.assert_array_equal(r.y, d.y)
    assert r.num_classes == 3


def test_graphsaint_multi_hot_values(tmp_path):
    d = D.contextual_sbm(30, num_classes=3, avg_degree=4, seed=0, split=(0.4, 0.3, 0.3))
    y = (np.random.default_rng(0).random((30, 4)) < 0.4).astype(np.float32)
    f = D.write_graphsaint(D.GraphData(d.adj, d.x, y, d.train, d.val, d.test), tmp_path / "m")
    np.testing.assert_array_equal(D.read_graphsaint(f).y, y)
    for bad, expect in [(2, "node '5' has 2 at position 1"), ("1", "node '5' has '1' at position 1"),
                        (None, "node '5' has None at position 1"), (0.5, "node '5' has 0.5"),
                        ([1], "node '5' has [1] at position 1")]:
        def mutate(c, bad=bad):
            c["5"][1] = bad

        D.write_graphsaint(D.GraphData(d.adj, d.x, y, d.train, d.val, d.test), f)
        _json(f / "class_map.json", mutate)
        _raises(lambda: D.read_graphsaint(f), str(f / "class_map.json"), expect)
    D.write_graphsaint(D.GraphData(d.adj, d.x, y, d.train, d.val, d.test), f)
    _json(f / "class_map.json", lambda c: {k: [] for k in c})
    _raises(lambda: D.read_graphsaint(f), str(f / "class_map.json"), "0 classes")
    _json(f / "class_map.json", lambda c: {k: [[0], [1]] for k in c})  # nested alike: a 3-D array
    _raises(lambda: D.read_graphsaint(f), str(f / "class_map.json"), "node '0' has [0] at position 0")


# ----------------------------------------------------------------------------- Planetoid: the reported cases


@pytest.mark.parametrize("field", ["x", "tx", "allx"])
@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_planetoid_non_finite_features(tmp_path, field, value):
    p, _, _ = _planetoid(tmp_path)

    def mutate(m):
        m = m.tolil()
        m[1, 2] = value
        return m.tocsr()

    _pickled(p / f"ind.toy.{field}", mutate)
    _raises(lambda: D.read_planetoid(p, "toy"), str(p / f"ind.toy.{field}"), f"field '{field}' row 1 column 2")


@pytest.mark.parametrize("field", ["y", "ty"])
def test_planetoid_all_zero_label_row(tmp_path, field):
    p, _, _ = _planetoid(tmp_path)

    def mutate(a):
        a = a.copy()
        a[3] = 0
        return a

    _pickled(p / f"ind.toy.{field}", mutate)
    _raises(lambda: D.read_planetoid(p, "toy"), str(p / f"ind.toy.{field}"), "row 3", "all-zero")


def test_planetoid_all_zero_labels_everywhere(tmp_path):
    # every label row zeroed: tkipf's argmax would make every node class 0
    p, _, _ = _planetoid(tmp_path)
    for k in ("y", "ty", "ally"):
        _pickled(p / f"ind.toy.{k}", np.zeros_like)
    _raises(lambda: D.read_planetoid(p, "toy"), "ind.toy.", "all-zero")


def test_planetoid_training_row_of_ally_must_repeat_y(tmp_path):
    p, _, _ = _planetoid(tmp_path)

    def mutate(a):
        a = a.copy()
        a[2] = np.roll(a[2], 1)  # still one-hot, but another class than y says
        return a

    _pickled(p / "ind.toy.ally", mutate)
    _raises(lambda: D.read_planetoid(p, "toy"), str(p / "ind.toy.ally"), "row 2", "ind.toy.y row 2")


@pytest.mark.parametrize("field", ["y", "ty", "ally"])
@pytest.mark.parametrize("value,expect", [(2.0, "has 2.0"), (0.5, "has 0.5"), (np.nan, "has nan"),
                                          ("two-hot", "2 classes")])
def test_planetoid_not_one_hot(tmp_path, field, value, expect):
    p, _, _ = _planetoid(tmp_path)

    def mutate(a):
        a = a.astype(np.float32)
        if value == "two-hot":
            a[1] = 0
            a[1, :2] = 1
        else:
            a[1, 0] = value
        return a

    _pickled(p / f"ind.toy.{field}", mutate)
    _raises(lambda: D.read_planetoid(p, "toy"), str(p / f"ind.toy.{field}"), f"field '{field}' row 1", expect)


def test_planetoid_duplicate_test_ids(tmp_path):
    p, _, _ = _planetoid(tmp_path)
    path = p / "ind.toy.test.index"
    lines = path.read_text().splitlines()
    lines[5] = lines[2]
    path.write_text("\n".join(lines) + "\n")
    _raises(lambda: D.read_planetoid(p, "toy"), f"{path}:6", f"test id {lines[2]} repeats line 3")


@pytest.mark.parametrize("key", ["a", 2.5, None, (1, 2), -3])  # (2.0 or True would just be keys 2 and 1)
def test_planetoid_graph_key_types(tmp_path, key):
    p, _, _ = _planetoid(tmp_path)

    def mutate(g):
        g[key] = [1]
        return g

    _pickled(p / "ind.toy.graph", mutate)
    _raises(lambda: D.read_planetoid(p, "toy"), str(p / "ind.toy.graph"), "field 'graph' key", repr(key))


def test_planetoid_huge_graph_key_is_bounded(tmp_path):
    p, _, _ = _planetoid(tmp_path)

    def mutate(g):
        g[10 ** 13] = [1]
        return g

    _pickled(p / "ind.toy.graph", mutate)
    # 40 graph entries + the bad one: ids are bounded by 41, nothing of 10^13 is allocated
    _raises(lambda: D.read_planetoid(p, "toy"), str(p / "ind.toy.graph"), "key 10000000000000", "[0, 41)")


@pytest.mark.parametrize("nbrs,expect", [
    ([10 ** 13], "edge (0, 10000000000000)"), ([-1], "edge (0, -1)"), (["3"], "edge (0, '3')"),
    ([True], "edge (0, True)"), ([3.0], "edge (0, 3.0)"),
    (5, "entry 0 must be a list"), ({1: 2}, "entry 0 must be a list"),
])
def test_planetoid_bad_neighbours(tmp_path, nbrs, expect):
    p, _, _ = _planetoid(tmp_path)

    def mutate(g):
        g[0] = nbrs
        return g

    _pickled(p / "ind.toy.graph", mutate)
    _raises(lambda: D.read_planetoid(p, "toy"), str(p / "ind.toy.graph"), expect)


@pytest.mark.parametrize("line,expect", [("10000000000000", "outside [16, 40)"), ("3", "outside [16, 40)"),
                                         ("-2", "outside [16, 40)"), ("1_2", "expected an integer"),
                                         ("1e3", "expected an integer")])
def test_planetoid_bad_test_ids(tmp_path, line, expect):
    p, _, _ = _planetoid(tmp_path)
    path = p / "ind.toy.test.index"
    lines = path.read_text().splitlines()
    lines[4] = line
    path.write_text("\n".join(lines) + "\n")
    _raises(lambda: D.read_planetoid(p, "toy"), f"{path}:5", expect)


def test_planetoid_non_utf8_test_index(tmp_path):
    p, _, _ = _planetoid(tmp_path)
    path = p / "ind.toy.test.index"
    path.write_bytes(b"28\n\xe9\n" + path.read_bytes())
    _raises(lambda: D.read_planetoid(p, "toy"), str(path), "not UTF-8")


def test_planetoid_huge_feature_width_is_refused(tmp_path):
    p, _, _ = _planetoid(tmp_path)
    for k in ("x", "tx", "allx"):
        _pickled(p / f"ind.toy.{k}",
                 lambda m: sp.csr_matrix((m.data, m.indices, m.indptr), shape=(m.shape[0], 10 ** 12)))
    _raises(lambda: D.read_planetoid(p, "toy"), str(p / "ind.toy.allx"), "1000000000000 feature columns", "GiB")


def test_planetoid_sparse_rows_must_match_labels_before_conversion(tmp_path):
    p, _, _ = _planetoid(tmp_path)
    _pickled(p / "ind.toy.allx", lambda m: sp.coo_matrix((m.tocoo().data, (m.tocoo().row, m.tocoo().col)),
                                                        shape=(10 ** 13, m.shape[1])))
    _raises(lambda: D.read_planetoid(p, "toy"), str(p / "ind.toy.ally"), "16 rows", "10000000000000")


def test_planetoid_unlabelled_nodes_are_left_out_not_class_0(tmp_path):
    # allx may hold unlabelled nodes (all-zero rows of ally, as in NELL); they join no split
    p, d, node_at = _planetoid(tmp_path)
    ny = len(d.train)

    def mutate(a):
        a = a.copy()
        a[ny + 1] = 0
        a[ny + 4] = 0
        return a

    _pickled(p / "ind.toy.ally", mutate)
    r = D.read_planetoid(p, "toy")
    want_val = np.setdiff1d(np.arange(ny, 16), [ny + 1, ny + 4])  # 16 allx rows
    np.testing.assert_array_equal(r.val, want_val)
    np.testing.assert_array_equal(r.y[want_val], d.y[node_at[want_val]])
    # the whole validation window unlabelled is an error, not an empty split
    _pickled(p / "ind.toy.ally", lambda a: np.concatenate([a[:ny], np.zeros_like(a[ny:])]))
    _raises(lambda: D.read_planetoid(p, "toy"), str(p / "ind.toy.ally"), f"rows {ny}..15", "unlabelled")


def test_planetoid_citeseer_gaps_and_nell_extra_nodes(tmp_path):
    # Citeseer: a test-range id missing from test.index is an isolated node in no split;
    # NELL: graph entries beyond allx + tx rows are nodes too (the bound grows with them)
    p, d, node_at = _planetoid(tmp_path)
    path = p / "ind.toy.test.index"
    ids = [int(s) for s in path.read_text().split()]
    hi = max(ids)
    ids[ids.index(hi)] = hi + 1  # id `hi` is now missing; ids reach hi + 1
    path.write_text("".join(f"{i}\n" for i in ids))

    def mutate(g):
        g = collections.defaultdict(list, g)
        g[hi + 1] = []
        g[hi + 2] = [0]
        return g

    _pickled(p / "ind.toy.graph", mutate)
    r = D.read_planetoid(p, "toy")
    assert r.num_nodes == hi + 3
    assert hi not in r.test and hi + 1 in r.test and hi + 2 not in r.test
    np.testing.assert_array_equal(r.x[hi], 0)
    assert r.adj[hi + 2, 0] == 1 and r.adj[0, hi + 2] == 1


# ----------------------------------------------------------------------------- load(spec)


def test_load_planetoid_without_a_name(tmp_path):
    p, d, node_at = _planetoid(tmp_path / "one")
    r = D.load(f"planetoid:{p}")
    assert r.name == "toy" and r.num_nodes == 40
    np.testing.assert_array_equal(r.y, d.y[node_at])
    r2 = D.load(f"planetoid:{p}:toy", scale="standard")
    np.testing.assert_allclose(r2.x[r2.train].mean(0), 0, atol=1e-5)
    D.write_planetoid(d, p, "other")
    _raises(lambda: D.load(f"planetoid:{p}"), "no dataset name", "other, toy")
    (tmp_path / "empty").mkdir()
    _raises(lambda: D.load(f"planetoid:{tmp_path / 'empty'}"), "holds no ind.<name>.graph")


@pytest.mark.parametrize("spec,expect", [
    ("planetoid:", "no folder"), ("planetoid::cora", "no folder"), ("", "is empty"), ("  ", "is empty"),
    ("planetoid:/no/such/dir:cora", "/no/such/dir is not a directory"),
    ("/no/such/folder", "nor an existing GraphSAINT folder"), ("cora", "nor an existing GraphSAINT folder"),
])
def test_load_bad_specs(spec, expect):
    _raises(lambda: D.load(spec), expect)


def test_load_planetoid_unknown_name(tmp_path):
    p, _, _ = _planetoid(tmp_path)
    _raises(lambda: D.load(f"planetoid:{p}:cora"), str(p / "ind.cora.x"), "missing")


def test_load_graphsaint_sbm_karate(tmp_path):
    f, d = _saint(tmp_path / "g")
    r = D.load(str(f), scale="none", seed=3)  # sbm keywords are ignored for files
    np.testing.assert_array_equal(r.x, d.x)
    s = D.load(str(f))  # the reader's default: standardised
    np.testing.assert_allclose(s.x[d.train].std(0), 1, atol=1e-4)
    a, b = D.load("sbm", num_nodes=200, seed=1), D.contextual_sbm(num_nodes=200, seed=1)
    assert (a.adj != b.adj).nnz == 0
    assert D.load("karate").num_nodes == 34


# ----------------------------------------------------------------------------- fuzzing


def _check_graph(g: D.GraphData):
    """What a successful load promises."""
    n = g.num_nodes
    assert g.adj.shape == (n, n) and (abs(g.adj - g.adj.T) > 1e-6).nnz == 0
    assert g.x.shape[0] == n and g.x.dtype == np.float32 and np.isfinite(g.x).all()
    if g.multilabel:
        assert set(np.unique(g.y)) <= {0.0, 1.0}
    else:
        assert g.y.shape == (n,) and g.y.min() >= 0 and g.y.max() < n
    parts = [g.train, g.val, g.test]
    for s in parts:
        assert s.size == 0 or (s.min() >= 0 and s.max() < n)
        assert len(np.unique(s)) == len(s)
    assert len(np.unique(np.concatenate(parts))) == sum(map(len, parts))
    assert len(g.train) > 0


def _saint_corruption(f, d, data):
    """Applies one value corruption that makes the folder invalid; returns the file it
    is in and a string the error must hold."""
    n = d.num_nodes
    kind = data.draw(st.sampled_from([
        "overlap", "dup", "role_range", "role_type", "label_type", "label_range", "label_gap",
        "feat", "weight", "asym", "train_edge", "utf8"]))
    bad_values = st.one_of(st.floats(allow_nan=True).filter(lambda v: v != int(v) if np.isfinite(v) else True),
                           st.text(max_size=3), st.none(), st.booleans(), st.lists(st.integers(), max_size=2))
    if kind == "overlap":
        a, b = data.draw(st.sampled_from([("tr", "va"), ("tr", "te"), ("va", "te")]))
        _json(f / "role.json", lambda r: r[b].append(data.draw(st.sampled_from(r[a]))))
        return "role.json", "disjoint"
    if kind == "dup":
        k = data.draw(st.sampled_from(["tr", "va", "te"]))
        _json(f / "role.json", lambda r: r[k].append(data.draw(st.sampled_from(r[k]))))
        return "role.json", "times"
    if kind == "role_range":
        k = data.draw(st.sampled_from(["tr", "va", "te"]))
        v = data.draw(st.one_of(st.integers(max_value=-1), st.integers(min_value=n)))
        _json(f / "role.json", lambda r: r[k].append(v))
        return "role.json", "outside"
    if kind == "role_type":
        k = data.draw(st.sampled_from(["tr", "va", "te"]))
        _json(f / "role.json", lambda r: r[k].append(data.draw(bad_values)))
        return "role.json", f"'{k}'"
    node = str(data.draw(st.integers(0, n - 1)))
    if kind == "label_type":
        _json(f / "class_map.json", lambda c: c.update({node: data.draw(bad_values)}))
        return "class_map.json", f"node '{node}'"
    if kind == "label_range":
        v = data.draw(st.one_of(st.integers(max_value=-1), st.integers(min_value=n)))
        _json(f / "class_map.json", lambda c: c.update({node: v}))
        return "class_map.json", f"node '{node}'"
    if kind == "label_gap":  # move every node of one class to an unused id
        c = data.draw(st.integers(0, 2))
        new = data.draw(st.integers(3, n - 1))
        _json(f / "class_map.json", lambda m: {k: (new if v == c else v) for k, v in m.items()})
        return "class_map.json", "dense"
    if kind == "feat":
        x = d.x.copy()
        x[data.draw(st.integers(0, n - 1)), data.draw(st.integers(0, x.shape[1] - 1))] = data.draw(
            st.sampled_from([np.nan, np.inf, -np.inf]))
        np.save(f / "feats.npy", x)
        return "feats.npy", "finite"
    if kind in ("weight", "asym"):
        a = d.adj.tolil()
        u, v = data.draw(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)).filter(
            lambda e: e[0] != e[1] and (kind == "weight" or d.adj[e[0], e[1]] == 0)))
        if kind == "weight":
            a[u, v] = a[v, u] = data.draw(st.sampled_from([np.nan, np.inf, -1.0, -1e-3]))
        else:
            a[u, v] = 1
        sp.save_npz(f / "adj_full.npz", a.tocsr())
        return "adj_full.npz", "weight" if kind == "weight" else "symmetric"
    if kind == "train_edge":
        a = sp.load_npz(f / "adj_train.npz").tolil()
        u = data.draw(st.sampled_from(np.setdiff1d(np.arange(n), d.train).tolist()))
        v = data.draw(st.integers(0, n - 1))
        a[u, v] = 1
        sp.save_npz(f / "adj_train.npz", a.tocsr())
        return "adj_train.npz", "'tr'"
    name = data.draw(st.sampled_from(["role.json", "class_map.json"]))
    raw = (f / name).read_bytes()
    at = data.draw(st.integers(0, len(raw)))
    bad = data.draw(st.sampled_from([b"\xff", b"\xc3", b"\x80", b"\xed\xa0\x80"]))
    (f / name).write_bytes(raw[:at] + bad + raw[at:])
    return name, "not UTF-8"


@FUZZ
@given(data=st.data(), seed=st.integers(0, 3))
def test_fuzz_graphsaint_value_corruptions(data, seed):
    with tempfile.TemporaryDirectory() as tmp:
        f, d = _saint(pathlib.Path(tmp) / "g", seed=seed)
        name, expect = _saint_corruption(f, d, data)
        _raises(lambda: D.read_graphsaint(f), str(f / name), expect)


def _planetoid_corruption(p, d, data):
    n_all = 16
    kind = data.draw(st.sampled_from(["feat", "zero_row", "not01", "two_hot", "train_label", "dup_test",
                                      "test_range", "test_text", "key", "nbr", "entry"]))
    if kind == "feat":
        k = data.draw(st.sampled_from(["x", "tx", "allx"]))

        def mutate(m):
            m = m.tolil()
            m[data.draw(st.integers(0, m.shape[0] - 1)), data.draw(st.integers(0, m.shape[1] - 1))] = data.draw(
                st.sampled_from([np.nan, np.inf, -np.inf]))
            return m.tocsr()

        _pickled(p / f"ind.toy.{k}", mutate)
        return f"ind.toy.{k}", "finite"
    if kind in ("zero_row", "not01", "two_hot"):
        k = data.draw(st.sampled_from(["y", "ty"] if kind == "zero_row" else ["y", "ty", "ally"]))

        def mutate(a):
            a = a.astype(np.float32)
            r = data.draw(st.integers(0, a.shape[0] - 1))
            if kind == "zero_row":
                a[r] = 0
            elif kind == "two_hot":
                a[r] = 1
            else:
                a[r, data.draw(st.integers(0, a.shape[1] - 1))] = data.draw(
                    st.one_of(st.floats(width=32, allow_nan=True).filter(lambda v: v not in (0.0, 1.0)),
                              st.sampled_from([np.nan, 2.0, -1.0, 0.5])))
            return a

        _pickled(p / f"ind.toy.{k}", mutate)
        return f"ind.toy.{k}", f"field '{k}' row"
    if kind == "train_label":  # a training row of ally zeroed or moved to another class
        def mutate(a):
            a = a.copy()
            r = data.draw(st.integers(0, len(d.train) - 1))
            a[r] = 0 if data.draw(st.booleans()) else np.roll(a[r], data.draw(st.integers(1, 2)))
            return a

        _pickled(p / "ind.toy.ally", mutate)
        return "ind.toy.ally", "ind.toy.y row"
    path = p / "ind.toy.test.index"
    lines = path.read_text().splitlines()
    if kind == "dup_test":
        i, j = data.draw(st.lists(st.integers(0, len(lines) - 1), min_size=2, max_size=2, unique=True))
        lines[j] = lines[i]
        path.write_text("\n".join(lines) + "\n")
        return "ind.toy.test.index", "repeats"
    if kind == "test_range":
        lines[data.draw(st.integers(0, len(lines) - 1))] = str(
            data.draw(st.one_of(st.integers(-10 ** 17, n_all - 1), st.integers(41, 10 ** 17))))
        path.write_text("\n".join(lines) + "\n")
        return "ind.toy.test.index", "outside"
    if kind == "test_text":
        lines[data.draw(st.integers(0, len(lines) - 1))] = data.draw(
            st.sampled_from(["1.5", "x", "0x1f", "1_0", "1 2", "١٢", "--3"]))
        path.write_text("\n".join(lines) + "\n")
        return "ind.toy.test.index", "expected an integer"
    # a new key 41 raises the bound to 41 (graph entries); 2.0 or True would hit keys 2 and 1
    bad_key = st.one_of(st.integers(min_value=41), st.integers(max_value=-1), st.text(max_size=2),
                        st.floats().filter(lambda v: not v.is_integer()), st.none())
    bad_id = st.one_of(bad_key, st.just(40), st.floats(), st.booleans())

    def mutate(g):
        if kind == "key":
            g[data.draw(bad_key)] = [0]
        elif kind == "nbr":
            g[data.draw(st.integers(0, 39))].append(data.draw(bad_id))
        else:
            g[data.draw(st.integers(0, 39))] = data.draw(st.one_of(st.integers(), st.text(), st.none(),
                                                                    st.dictionaries(st.integers(), st.integers())))
        return g

    _pickled(p / "ind.toy.graph", mutate)
    return "ind.toy.graph", "field 'graph'"


@FUZZ
@given(data=st.data(), seed=st.integers(0, 3))
def test_fuzz_planetoid_value_corruptions(data, seed):
    with tempfile.TemporaryDirectory() as tmp:
        p, d, _ = _planetoid(pathlib.Path(tmp), seed=seed)
        name, expect = _planetoid_corruption(p, d, data)
        _raises(lambda: D.read_planetoid(p, "toy"), str(p / name), expect)


def _flip(path, data):
    raw = bytearray(path.read_bytes())
    if data.draw(st.booleans()):
        for _ in range(data.draw(st.integers(1, 3))):
            raw[data.draw(st.integers(0, len(raw) - 1))] ^= data.draw(st.integers(1, 255))
    else:
        raw = raw[: data.draw(st.integers(0, len(raw) - 1))]
    path.write_bytes(bytes(raw))


@settings(deadline=None, max_examples=60, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), name=st.sampled_from(D.SAINT_FILES))
def test_fuzz_graphsaint_byte_flips(data, name):
    with tempfile.TemporaryDirectory() as tmp:
        f, _ = _saint(pathlib.Path(tmp) / "g")
        _flip(f / name, data)
        try:
            g = D.read_graphsaint(f)
        except D.GraphFormatError as e:
            assert str(f) in str(e) and name in str(e), str(e)
        else:
            _check_graph(g)


@settings(deadline=None, max_examples=60, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), field=st.sampled_from(D.PLANETOID_FIELDS + ("test.index",)))
def test_fuzz_planetoid_byte_flips(data, field):
    with tempfile.TemporaryDirectory() as tmp:
        p, _, _ = _planetoid(pathlib.Path(tmp))
        _flip(p / f"ind.toy.{field}", data)
        try:
            g = D.read_planetoid(p, "toy")
        except D.GraphFormatError as e:
            assert str(p) in str(e) and f"ind.toy.{field}" in str(e), str(e)
        else:
            _check_graph(g)
