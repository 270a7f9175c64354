"""The inductive protocol on a small graph written in GraphSAINT's own file format:
training batches hold only training nodes and only edges of adj_train.npz; evaluation
runs on the whole graph."""

import json

import numpy as np
import pytest
import scipy.sparse as sp

from jaxlab.core.config import override
from jaxlab.meguide import configs, run
from jaxlab.meguide.sampler import make_sampler, training_protocol

SAMPLERS = ("meguide", "saint-node", "saint-edge", "saint-rw", "cluster", "neighbor", "full")


def _write_saint_folder(folder, seed, n=90, drop_train_edge=False):
    """GraphSAINT's five files, written with scipy/numpy/json as its data are distributed:
    adj_full.npz and adj_train.npz (CSR N x N, symmetric; adj_train keeps only edges
    between training nodes), role.json {"tr", "va", "te"}, feats.npy, class_map.json."""
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n)
    tr, va, te = np.sort(perm[: n // 2]), np.sort(perm[n // 2: 3 * n // 4]), np.sort(perm[3 * n // 4:])
    labels = rng.integers(0, 3, n)
    upper = sp.triu(sp.random(n, n, density=0.08, random_state=rng, data_rvs=np.ones), 1)
    full = ((upper + upper.T) > 0).astype(np.float32).tocsr()
    is_tr = np.zeros(n, bool)
    is_tr[tr] = True
    coo = full.tocoo()
    keep = is_tr[coo.row] & is_tr[coo.col]
    train = sp.coo_matrix((coo.data[keep], (coo.row[keep], coo.col[keep])), shape=(n, n)).tocsr()
    dropped = None
    if drop_train_edge:  # adj_train is what training reads, not the induced graph of adj_full
        r, c = sp.triu(train, 1).nonzero()
        dropped = (int(r[0]), int(c[0]))
        train = train.tolil()
        train[dropped[0], dropped[1]] = 0
        train[dropped[1], dropped[0]] = 0
        train = train.tocsr()
        train.eliminate_zeros()
    folder.mkdir()
    sp.save_npz(folder / "adj_full.npz", full)
    sp.save_npz(folder / "adj_train.npz", train)
    (folder / "role.json").write_text(json.dumps({"tr": tr.tolist(), "va": va.tolist(), "te": te.tolist()}))
    np.save(folder / "feats.npy", (rng.standard_normal((n, 5)) + labels[:, None]).astype(np.float32))
    (folder / "class_map.json").write_text(json.dumps({str(i): int(labels[i]) for i in range(n)}))
    return full, train, set(tr.tolist()), dropped


def _batch_edges(g):
    """Global (node ids, directed edges between distinct real nodes) of one padded batch."""
    n = int(g.n_node[0])
    ids = np.asarray(g.nodes["ids"])[:n] if "ids" in g.nodes else np.arange(n)
    s, r = np.asarray(g.senders)[: int(g.n_edge[0])], np.asarray(g.receivers)[: int(g.n_edge[0])]
    real = (s < n) & (r < n) & (s != r)
    return ids, set(zip(ids[s[real]].tolist(), ids[r[real]].tolist()))


def _config(folder, sampler, *extra):
    return override(configs.get_config("smoke"), [f"data={folder}", f"sampler={sampler}",
                                                  "saint.presample=3", "meguide.presample=3", *extra])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_inductive_batches_see_only_training_nodes_and_adj_train_edges(tmp_path, seed):
    full, train, tr, dropped = _write_saint_folder(tmp_path / "g", seed, drop_train_edge=True)
    train_edges = set(zip(*(a.tolist() for a in train.nonzero())))
    for kind in SAMPLERS:
        cfg = _config(tmp_path / "g", kind)
        data = run.load_data(cfg)
        assert cfg.train_graph == "auto" and training_protocol(cfg, data) == "inductive"
        sampler = make_sampler(cfg, data)
        for step in range(4):
            g = sampler.batch(step)
            ids, edges = _batch_edges(g)
            assert edges <= train_edges, (kind, step, sorted(edges - train_edges)[:3])
            assert dropped not in edges and dropped[::-1] not in edges
            if kind != "full":  # full batch keeps every node, isolated outside the training set
                assert set(ids.tolist()) <= tr, (kind, sorted(set(ids.tolist()) - tr)[:3])
            else:
                n = int(g.n_node[0])
                assert np.array_equal(np.asarray(g.nodes["mask"])[:n], np.isin(np.arange(n), list(tr)))
    # evaluation runs on the whole graph, every edge of adj_full included
    _, eval_edges = _batch_edges(run.eval_graph(cfg, data))
    assert eval_edges == set(zip(*(a.tolist() for a in full.nonzero())))


def test_transductive_walks_leave_the_training_set(tmp_path):
    """The same folder with train_graph=full: walks reach non-training nodes (so the
    property above is not vacuous); SBM data stay transductive under "auto"."""
    _, _, tr, _ = _write_saint_folder(tmp_path / "g", 0)
    cfg = _config(tmp_path / "g", "saint-rw", "train_graph=full")
    data = run.load_data(cfg)
    assert training_protocol(cfg, data) == "transductive"
    seen = set()
    sampler = make_sampler(cfg, data)
    for step in range(4):
        seen |= set(_batch_edges(sampler.batch(step))[0].tolist())
    assert seen - tr
    sbm = configs.get_config("smoke")
    assert training_protocol(sbm, run.load_data(sbm)) == "transductive"
