"""The git reader and the graph builder on a repository written here with `git`, edge by edge."""

import os
import subprocess

import numpy as np
import pytest

from jaxlab.coral import graph as graph_lib
from jaxlab.coral.configs import GraphConfig
from jaxlab.coral.gitlog import read_repository
from jaxlab.core.errors import DataFormatError


def _git(repo, *args, name="Ann Author", email="ann@x.org", date=1_600_000_000):
    env = dict(os.environ, GIT_AUTHOR_NAME=name, GIT_AUTHOR_EMAIL=email, GIT_COMMITTER_NAME=name,
               GIT_COMMITTER_EMAIL=email, GIT_AUTHOR_DATE=f"{date} +0000", GIT_COMMITTER_DATE=f"{date} +0000",
               GIT_CONFIG_GLOBAL=os.devnull, GIT_CONFIG_NOSYSTEM="1")
    return subprocess.run(["git", "-C", str(repo), *args], env=env, check=True, capture_output=True, text=True).stdout


def _commit(repo, files, message, **who):
    for f, text in files.items():
        p = repo / f
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
        _git(repo, "add", f)
    _git(repo, "commit", "-q", "-m", message, **who)


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    r = tmp_path_factory.mktemp("hist") / "proj"
    r.mkdir()
    _git(r, "init", "-q", "-b", "main")
    # .mailmap: Bob's old address maps to his canonical one.
    _commit(r, {".mailmap": "Bob Builder <bob@x.org> <bob@old.org>\n", "src/core/cache.py": "a\n"},
            "Add cache layer\n\nReviewed-by: Bob Builder <bob@x.org>\n", date=1_600_000_000)
    _commit(r, {"src/core/cache.py": "b\n", "docs/guide.md": "g\n"},
            "Speed up cache eviction\n\nThe eviction loop was quadratic.\n\n"
            "Reviewed-by: Doe, John <john@x.org>\nAcked-by: Bob Builder <bob@old.org>\n"
            "Co-authored-by: Cy Coder <cy@x.org>\n", name="Dan Dev", email="dan@x.org", date=1_600_000_100)
    _git(r, "mv", "docs/guide.md", "docs/manual.md")
    _git(r, "commit", "-q", "-m", "Rename guide to manual\n\nCloses #12. Part of #3.", name="Bob Old",
         email="bob@old.org", date=1_600_000_200)
    # a colon-less "Fixes #5" inside the trailer paragraph: git drops the trailer block.
    _commit(r, {"src/net/socket.py": "s\n"}, "Socket retry\n\nFixes #5\nReviewed-by: Ann Author <ann@x.org>\n",
            name="Cy Coder", email="cy@x.org", date=1_600_000_300)
    _git(r, "checkout", "-q", "-b", "feature")
    _commit(r, {"src/net/proxy.py": "p\n"}, "Proxy support", name="Dan Dev", email="dan@x.org",
            date=1_600_000_400)
    _git(r, "checkout", "-q", "main")
    _git(r, "merge", "-q", "--no-ff", "feature", "-m", "Merge pull request #7 from dan/feature",
         name="Ann Author", email="ann@x.org", date=1_600_000_500)
    return r


def test_commits_fields_mailmap_trailers_rename(repo):
    prs = read_repository(repo)
    assert [p.title for p in prs] == ["Add cache layer", "Speed up cache eviction", "Rename guide to manual",
                                      "Socket retry", "Proxy support"]  # the merge is skipped in commit mode
    a, b, c, d, e = prs
    assert a.author == "ann@x.org" and a.reviewers == ("bob@x.org",) and a.time == 1_600_000_000
    assert set(a.files) == {".mailmap", "src/core/cache.py"}
    # comma in a trailer name; .mailmap applied to a trailer (bob@old.org -> bob@x.org); kinds kept.
    assert b.author == "dan@x.org" and b.reviewers == ("john@x.org", "bob@x.org")
    assert b.review_kinds == ("Reviewed-by", "Acked-by") and b.coauthors == ("cy@x.org",)
    assert dict(b.names)["john@x.org"] == "Doe, John" and "Reviewed-by" not in b.body
    # .mailmap applied to the author; the rename keeps the file's first path; Closes/Part-of.
    assert c.author == "bob@x.org" and c.files == ("docs/guide.md",)
    assert c.work_items == ("12",) and c.parent_items == (("3", "12"),)
    # git drops the trailer block, the work item is still found.
    assert d.reviewers == () and d.work_items == ("5",)
    assert e.author == "dan@x.org" and e.files == ("src/net/proxy.py",)


def test_merge_unit_is_a_pull_request(repo):
    prs = read_repository(repo, unit="merge")
    merge = prs[-1]
    assert merge.title.startswith("Merge pull request #7")
    assert merge.author == "dan@x.org" and merge.reviewers == ("ann@x.org",) and merge.review_kinds == ("merger",)
    assert merge.files == ("src/net/proxy.py",)
    assert "Proxy support" not in [p.title for p in prs]  # only first-parent units
    assert read_repository(repo, unit="merge", merger_reviews=False)[-1].reviewers == ()


def test_committer_signal_is_a_switch(tmp_path):
    r = tmp_path / "r"
    r.mkdir()
    _git(r, "init", "-q")
    (r / "f.txt").write_text("x")
    _git(r, "add", "f.txt")
    env_cmd = ["git", "-C", str(r), "commit", "-q", "-m", "x"]
    env = dict(os.environ, GIT_AUTHOR_NAME="A", GIT_AUTHOR_EMAIL="a@x.org", GIT_COMMITTER_NAME="C",
               GIT_COMMITTER_EMAIL="c@x.org", GIT_CONFIG_GLOBAL=os.devnull)
    subprocess.run(env_cmd, env=env, check=True)
    assert read_repository(r)[0].reviewers == ()
    assert read_repository(r, committer_reviews=True)[0].reviewers == ("c@x.org",)


def test_not_a_repository(tmp_path):
    with pytest.raises(DataFormatError, match="not a git repository"):
        read_repository(tmp_path)
    with pytest.raises(DataFormatError, match="not a directory"):
        read_repository(tmp_path / "missing")


def test_graph_edges_one_by_one(repo):
    prs = read_repository(repo)
    g = graph_lib.build_graph(prs, GraphConfig(min_token_count=1, min_cooccurrence=1))
    h = [p.id for p in prs]
    assert g.edges_of_type("creates") == {("ann@x.org", h[0]), ("dan@x.org", h[1]), ("bob@x.org", h[2]),
                                          ("cy@x.org", h[3]), ("dan@x.org", h[4])}
    assert g.edges_of_type("reviews") == {("bob@x.org", h[0]), ("john@x.org", h[1]), ("bob@x.org", h[1])}
    assert g.edges_of_type("coAuthors") == {("cy@x.org", h[1])}
    assert g.edges_of_type("contains") == {("proj", x) for x in h}
    assert g.edges_of_type("changes") == {(h[0], ".mailmap"), (h[0], "src/core/cache.py"), (h[1], "src/core/cache.py"),
                                          (h[1], "docs/guide.md"), (h[2], "docs/guide.md"),
                                          (h[3], "src/net/socket.py"), (h[4], "src/net/proxy.py")}
    assert g.edges_of_type("linkedTo") == {(h[2], "proj#12"), (h[3], "proj#5")}
    assert g.edges_of_type("parentOf") == {("proj#3", "proj#12")}
    assert g.edges_of_type("commentsOn") == set()
    mentions = g.edges_of_type("mentions")
    assert ("cache", h[0]) in mentions and ("eviction", h[1]) in mentions and ("cache", "src/core/cache.py") in mentions
    assert not any(t in graph_lib.STOP_WORDS for t, _ in mentions)
    c = g.counts()
    assert c["nodes"] == {"pr": 5, "user": 5, "file": 5, "repo": 1, "workitem": 3, "token": len(g.vocab)}


def test_pmi_matches_a_direct_count():
    docs = [{"a", "b", "c"}, {"a", "b"}, {"b", "c"}, {"a", "d"}, {"b"}]
    got = graph_lib.pmi_table(docs)
    n = len(docs)
    for x in "abcd":
        for y in "abcd":
            if x >= y:
                continue
            oxy = sum(x in d and y in d for d in docs)
            if oxy == 0:
                assert (x, y) not in got
                continue
            ox, oy = sum(x in d for d in docs), sum(y in d for d in docs)
            np.testing.assert_allclose(got[(x, y)], np.log((oxy / n) / ((ox / n) * (oy / n))), rtol=1e-12)
    assert graph_lib.pmi_table(docs, min_cooccurrence=2) == {k: v for k, v in got.items() if k in {("a", "b"),
                                                                                                   ("b", "c")}}


def test_tokenizer_drops_stop_words_and_splits_paths():
    assert graph_lib.tokenize("Fix the blockCache for DNS v2") == ["block", "cache", "dns", "v2"]
    assert graph_lib.path_tokens("storage/blockCache_v2.py") == ["storage", "block", "cache", "v2"]
