"""The socio-technical graph of CORAL (paper §III-A), built from review units.

Node types (paper: pull request, work item, author, reviewer, file, repository; authors
and reviewers are one `user` type here since the same person plays both roles) plus the
augmented graph's `token` nodes:

    pr, user, file, repo, workitem, token

Edge types (each stored once, undirected; message passing uses both directions as two
relations):

    creates     user -> pr        the author
    reviews     user -> pr        a reviewer (hidden for PRs whose reviewers are predicted)
    contains    repo -> pr
    changes     pr -> file
    linkedTo    pr -> workitem    `Fixes #N`
    commentsOn  pr -> user        a commenter who did not review (exports)
    parentOf    workitem -> workitem
    coAuthors   user -> pr        `Co-authored-by` (the spec's collaboration edge)
    mentions    token -> pr | file  weight: occurrences in the PR's title and body (1 for paths)
    cooccurs    token -> token      weight: PMI(x, y) = log p(x, y) / (p(x) p(y)) > 0

Tokens and PMI come from the training PRs only (a PR's document is its title, body and
the path components of the files it changes), with a stop-word block list.
"""

from __future__ import annotations

import collections
import dataclasses
import re

import numpy as np
import scipy.sparse as sp

from jaxlab.coral.configs import GraphConfig
from jaxlab.coral.gitlog import PullRequest

__all__ = ["NODE_TYPES", "EDGE_TYPES", "STOP_WORDS", "SocioGraph", "build_graph", "extend", "Extension",
           "extension", "tokenize", "path_tokens", "pmi_table"]

NODE_TYPES = ("pr", "user", "file", "repo", "workitem", "token")
EDGE_TYPES = ("creates", "reviews", "contains", "changes", "linkedTo", "commentsOn", "parentOf", "coAuthors",
              "mentions", "cooccurs")
LABEL_EDGES = ("reviews", "commentsOn")
T = {name: i for i, name in enumerate(NODE_TYPES)}
R = {name: i for i, name in enumerate(EDGE_TYPES)}

STOP_WORDS = frozenset("""
a about above after again all also am an and any are as at be because been before being below between both but
by can could did do does doing down during each few for from further had has have having he her here hers him his
how i if in into is it its itself just me more most my no nor not now of off on once only or other our out over own
same she should so some such than that the their them then there these they this those through to too under until
up very was we were what when where which while who whom why will with would you your py js ts md txt cc cpp h c
src lib test tests new now use used using make makes via per etc fixes fix fixed closes close resolves merge pull
request from branch main master signed off by co authored reviewed acked tested
""".split())
_WORD = re.compile(r"[A-Za-z][A-Za-z0-9]+")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def tokenize(text: str) -> list[str]:
    """Lower-cased words of >= 2 characters starting with a letter, camelCase split, stop words dropped."""
    out = []
    for w in _WORD.findall(text):
        for part in _CAMEL.split(w):
            part = part.lower()
            if len(part) >= 2 and part not in STOP_WORDS:
                out.append(part)
    return out


def path_tokens(path: str) -> list[str]:
    """Tokens of a file path's components (`storage/blockCache_v2.py` -> storage, block, cache, v2)."""
    return tokenize(re.sub(r"[/._\-]", " ", path))


def pmi_table(docs: list[set[str]], min_count: int = 1, min_cooccurrence: int = 1) -> dict[tuple[str, str], float]:
    """PMI(x, y) = log(o(x, y) N / (o(x) o(y))) over N documents, for x < y.

    o(x): documents holding x; o(x, y): documents holding both. Only tokens with
    o(x) >= min_count and pairs with o(x, y) >= min_cooccurrence are kept.
    """
    counts = collections.Counter(t for d in docs for t in d)
    vocab = sorted(t for t, c in counts.items() if c >= min_count)
    if not vocab or not docs:
        return {}
    col = {t: i for i, t in enumerate(vocab)}
    rows, cols = [], []
    for i, d in enumerate(docs):
        for t in d:
            if t in col:
                rows.append(i)
                cols.append(col[t])
    x = sp.csr_matrix((np.ones(len(rows), np.float64), (rows, cols)), shape=(len(docs), len(vocab)))
    co = sp.triu(x.T @ x, k=1).tocoo()
    o = np.asarray(x.sum(0)).ravel()
    n = len(docs)
    keep = co.data >= min_cooccurrence
    r, c, v = co.row[keep], co.col[keep], co.data[keep]
    pmi = np.log(v * n / (o[r] * o[c]))
    return {(vocab[a], vocab[b]): float(p) for a, b, p in zip(r, c, pmi, strict=True)}


@dataclasses.dataclass
class SocioGraph:
    """A socio-technical graph.

    Attributes:
      node_type: int `[N]`, index into NODE_TYPES.
      node_key: `[N]` keys (PR id, e-mail, file path, repo name, work item, token).
      src, dst, etype: int `[E]` undirected edges (each once), type index into EDGE_TYPES.
      weight: float `[E]`.
      inductive: bool `[E]`: edges of PRs added by `extend`, passed only src -> dst (into the new node).
      num_trained: nodes `[0, num_trained)` have a learned embedding (all but PRs).
      vocab: the token vocabulary of the training PRs.
      pr_time: `{pr id: time}` of the PRs in the graph.
    """

    node_type: np.ndarray
    node_key: list[str]
    src: np.ndarray
    dst: np.ndarray
    etype: np.ndarray
    weight: np.ndarray
    inductive: np.ndarray
    num_trained: int
    vocab: frozenset[str]
    pmi: dict[tuple[str, str], float]
    pr_time: dict[str, float]

    def __post_init__(self):
        self.index = {(int(t), k): i for i, (t, k) in enumerate(zip(self.node_type, self.node_key, strict=True))}

    @property
    def num_nodes(self) -> int:
        return len(self.node_key)

    def node(self, kind: str, key: str) -> int:
        return self.index[(T[kind], key)]

    def has(self, kind: str, key: str) -> bool:
        return (T[kind], key) in self.index

    def edges_of_type(self, name: str) -> set[tuple[str, str]]:
        """`{(src key, dst key)}` of the edges of type `name` (for tests and reports)."""
        m = self.etype == R[name]
        return {(self.node_key[s], self.node_key[d]) for s, d in zip(self.src[m], self.dst[m], strict=True)}

    def counts(self) -> dict:
        return {"nodes": {n: int((self.node_type == i).sum()) for i, n in enumerate(NODE_TYPES)},
                "edges": {n: int((self.etype == i).sum()) for i, n in enumerate(EDGE_TYPES)}}

    def embedding_index(self) -> np.ndarray:
        """int `[N]`: row of each node in the embedding table. Rows `[0, 6)` are one shared row
        per node type (every PR, and any node added by `extend`); node i < num_trained of another
        type has row 6 + i."""
        idx = self.node_type.astype(np.int32).copy()
        own = (np.arange(self.num_nodes) < self.num_trained) & (self.node_type != T["pr"])
        idx[own] = len(NODE_TYPES) + np.arange(self.num_nodes)[own]
        return idx

    @property
    def num_embeddings(self) -> int:
        return len(NODE_TYPES) + self.num_trained


class _Builder:
    def __init__(self, graph: SocioGraph | None = None):
        if graph is None:
            self.types, self.keys = [], []
            self.index: dict[tuple[int, str], int] = {}
            self.edges: list[tuple[int, int, int, float, bool]] = []
        else:
            self.types, self.keys = list(graph.node_type), list(graph.node_key)
            self.index = dict(graph.index)
            self.edges = list(zip(graph.src, graph.dst, graph.etype, graph.weight, graph.inductive, strict=True))

    def node(self, kind: str, key: str) -> int:
        k = (T[kind], key)
        if k not in self.index:
            self.index[k] = len(self.keys)
            self.types.append(T[kind])
            self.keys.append(key)
        return self.index[k]

    def edge(self, a: int, b: int, kind: str, w: float = 1.0, inductive: bool = False) -> None:
        self.edges.append((a, b, R[kind], w, inductive))

    def finish(self, num_trained, vocab, pmi, pr_time) -> SocioGraph:
        e = np.array([x[:4] for x in self.edges], np.float64).reshape(-1, 4)
        return SocioGraph(
            node_type=np.array(self.types, np.int32), node_key=list(self.keys), src=e[:, 0].astype(np.int32),
            dst=e[:, 1].astype(np.int32), etype=e[:, 2].astype(np.int32), weight=e[:, 3].astype(np.float32),
            inductive=np.array([x[4] for x in self.edges], bool), num_trained=num_trained, vocab=vocab, pmi=pmi,
            pr_time=pr_time)


def _doc(pr: PullRequest, cfg: GraphConfig) -> set[str]:
    d = set(tokenize(pr.title + "\n" + pr.body))
    if cfg.files:
        for f in pr.files:
            d.update(path_tokens(f))
    return d


def _recency(pr: PullRequest, ref_time: float | None, half_life_days: float) -> float:
    if not half_life_days or ref_time is None:
        return 1.0
    return 0.5 ** (max(0.0, ref_time - pr.time) / (86400.0 * half_life_days))


def _add_pr(b: _Builder, pr: PullRequest, cfg: GraphConfig, vocab, labels: bool, inductive: bool,
            decay: float = 1.0) -> int:
    p = b.node("pr", pr.id)

    def link(kind_node: str, key: str, edge: str, w: float = 1.0, pr_first: bool = False):
        n = b.node(kind_node, key)
        if pr_first and not inductive:
            b.edge(p, n, edge, w * decay, inductive)
        else:
            b.edge(n, p, edge, w * decay, inductive)
        return n

    link("user", pr.author, "creates")
    for u in pr.coauthors:
        link("user", u, "coAuthors")
    if labels:
        for u in pr.reviewers:
            link("user", u, "reviews")
        for u in pr.commenters:
            if u not in pr.reviewers:
                link("user", u, "commentsOn", pr_first=True)
    link("repo", pr.repo, "contains")
    if cfg.files:
        for f in pr.files:
            link("file", f, "changes", pr_first=True)
    if cfg.work_items:
        for w in pr.work_items:
            link("workitem", f"{pr.repo}#{w}", "linkedTo", pr_first=True)
    if cfg.tokens:
        for tok, c in collections.Counter(t for t in tokenize(pr.title + "\n" + pr.body) if t in vocab).items():
            link("token", tok, "mentions", float(c))
    return p


def build_graph(prs: list[PullRequest], cfg: GraphConfig, *, ref_time: float | None = None,
                half_life_days: float = 0.0) -> SocioGraph:
    """The graph of the training PRs `prs` (with their review edges).

    With `half_life_days > 0` every edge of a PR is weighted by 0.5^((ref_time - t) / half-life)
    (the recency weighting of the drift experiment; not in the paper).
    """
    docs = [_doc(pr, cfg) for pr in prs]
    counts = collections.Counter(t for d in docs for t in d)
    vocab = frozenset(t for t, c in counts.items() if c >= cfg.min_token_count) if cfg.tokens else frozenset()
    b = _Builder()
    for pr in prs:
        _add_pr(b, pr, cfg, vocab, labels=True, inductive=False, decay=_recency(pr, ref_time, half_life_days))
        for parent, child in (pr.parent_items if cfg.work_items else ()):
            b.edge(b.node("workitem", f"{pr.repo}#{parent}"), b.node("workitem", f"{pr.repo}#{child}"), "parentOf")
    pmi = {}
    if cfg.tokens:
        seen_files = {f for pr in prs for f in pr.files} if cfg.files else set()
        for f in sorted(seen_files):
            for tok in sorted(set(path_tokens(f)) & vocab):
                b.edge(b.node("token", tok), b.node("file", f), "mentions")
        pmi = pmi_table(docs, cfg.min_token_count, cfg.min_cooccurrence)
        pos = sorted(((v, k) for k, v in pmi.items() if v > 0), reverse=True)
        if cfg.max_pmi_edges:
            pos = pos[: cfg.max_pmi_edges]
        for v, (x, y) in pos:
            b.edge(b.node("token", x), b.node("token", y), "cooccurs", v)
    g = b.finish(len(b.keys), vocab, pmi, {pr.id: pr.time for pr in prs})
    return _dedupe(g)


def _dedupe(g: SocioGraph) -> SocioGraph:
    key = np.stack([g.src, g.dst, g.etype], 1)
    _, first = np.unique(key, axis=0, return_index=True)
    keep = np.zeros(len(key), bool)
    keep[first] = True
    keep |= g.etype != R["parentOf"]
    if keep.all():
        return g
    return dataclasses.replace(g, src=g.src[keep], dst=g.dst[keep], etype=g.etype[keep], weight=g.weight[keep],
                               inductive=g.inductive[keep])


def extend(graph: SocioGraph, prs: list[PullRequest], cfg: GraphConfig) -> tuple[SocioGraph, np.ndarray]:
    """The graph with new PRs added inductively (paper §III-C), and their node ids `[len(prs)]`.

    Each new PR gets its author, co-author, repository, file, work-item and token edges (no
    review edges: those are what is predicted), flagged `inductive` and stored as
    (neighbour, new PR), so messages flow only into the new PR (and into a new file from its
    path tokens), and the representations of the existing nodes do not change. New users,
    files and work items get the shared row of their type; unknown tokens are dropped.
    """
    b = _Builder(graph)
    ids = [_add_pr(b, pr, cfg, graph.vocab, labels=False, inductive=True) for pr in prs]
    for i in range(graph.num_nodes, len(b.keys)):
        if b.types[i] == T["file"]:
            for tok in sorted(set(path_tokens(b.keys[i])) & graph.vocab):
                b.edge(b.node("token", tok), i, "mentions", 1.0, True)
    g = b.finish(graph.num_trained, graph.vocab, graph.pmi, {**graph.pr_time, **{pr.id: pr.time for pr in prs}})
    return g, np.array(ids, np.int32)


class _Overlay(_Builder):
    """A builder that adds nodes and edges on top of `graph` without copying it (new nodes get
    ids from `graph.num_nodes` on)."""

    def __init__(self, graph: SocioGraph):
        self.base = graph
        self.types, self.keys = [], []
        self.index: dict[tuple[int, str], int] = {}
        self.edges = []

    def node(self, kind: str, key: str) -> int:
        k = (T[kind], key)
        i = self.base.index.get(k)
        if i is not None:
            return i
        if k not in self.index:
            self.index[k] = self.base.num_nodes + len(self.keys)
            self.types.append(T[kind])
            self.keys.append(key)
        return self.index[k]


@dataclasses.dataclass
class Extension:
    """What `extend` would add to a graph, without the graph: new nodes (ids `base + i`) and
    the inductive edges (all into new nodes)."""

    base_nodes: int
    node_type: np.ndarray      # int [K] new nodes
    node_key: list[str]
    src: np.ndarray            # int [E] global ids
    dst: np.ndarray
    etype: np.ndarray
    weight: np.ndarray
    pr_ids: np.ndarray         # int [len(prs)] global ids of the new PRs


def extension(graph: SocioGraph, prs: list[PullRequest], cfg: GraphConfig) -> Extension:
    """The nodes and edges `extend(graph, prs, cfg)` adds, in O(size of the PRs) time (no copy of
    the graph): the same edges in the same order, with the same node ids."""
    b = _Overlay(graph)
    ids = [_add_pr(b, pr, cfg, graph.vocab, labels=False, inductive=True) for pr in prs]
    for j, kind in enumerate(list(b.types)):
        if kind == T["file"]:
            for tok in sorted(set(path_tokens(b.keys[j])) & graph.vocab):
                b.edge(b.node("token", tok), graph.num_nodes + j, "mentions", 1.0, True)
    e = np.array([x[:4] for x in b.edges], np.float64).reshape(-1, 4)
    return Extension(graph.num_nodes, np.array(b.types, np.int32), list(b.keys), e[:, 0].astype(np.int32),
                     e[:, 1].astype(np.int32), e[:, 2].astype(np.int32), e[:, 3].astype(np.float32),
                     np.array(ids, np.int32))


def message_edges(graph: SocioGraph) -> dict[str, np.ndarray]:
    """Directed message-passing arrays: each undirected edge of type t gives relation 2t
    (src -> dst) and 2t + 1 (dst -> src); inductive edges only src -> dst (into the new node).

    Returns senders, receivers, relation, weight `[M]` and `label_pr` `[M]`: for reviews and
    commentsOn edges the PR node (so a step can hide the edges of its target PRs), else -1.
    """
    pr_end = np.where(graph.node_type[graph.src] == T["pr"], graph.src, graph.dst)
    fwd = np.ones(len(graph.src), bool)
    bwd = ~graph.inductive
    label = np.isin(graph.etype, [R[n] for n in LABEL_EDGES])
    label_pr = np.where(label, pr_end, -1)
    return {
        "senders": np.concatenate([graph.src[fwd], graph.dst[bwd]]).astype(np.int32),
        "receivers": np.concatenate([graph.dst[fwd], graph.src[bwd]]).astype(np.int32),
        "relation": np.concatenate([2 * graph.etype[fwd], 2 * graph.etype[bwd] + 1]).astype(np.int32),
        "weight": np.concatenate([graph.weight[fwd], graph.weight[bwd]]).astype(np.float32),
        "label_pr": np.concatenate([label_pr[fwd], label_pr[bwd]]).astype(np.int32),
    }


NUM_RELATIONS = 2 * len(EDGE_TYPES)
