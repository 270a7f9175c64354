"""The JSON-lines export reader, the planted repository, ranking metrics and baselines."""

import json

import numpy as np
import pytest

from jaxlab.coral import data, ranking
from jaxlab.coral.configs import PlantedConfig
from jaxlab.coral.gitlog import PullRequest, read_repository
from jaxlab.core.errors import DataFormatError

GOOD = [
    {"type": "pull", "number": 1, "title": "Add cache", "body": "Fixes #4", "user": {"login": "Ann"},
     "created_at": "2021-03-04T05:06:07Z", "base": {"repo": {"full_name": "org/repo"}}},
    {"type": "file", "pull_number": 1, "filename": "src/cache.py"},
    {"type": "review", "pull_number": 1, "user": {"login": "bob"}, "state": "APPROVED",
     "submitted_at": "2021-03-05T10:00:00Z"},
    {"type": "comment", "pull_number": 1, "user": {"login": "cy"}, "created_at": "2021-03-05T09:00:00Z"},
    {"type": "comment", "pull_number": 1, "user": {"login": "bob"}, "created_at": "2021-03-05T09:30:00Z"},
    {"type": "pull", "number": 2, "title": "Docs", "user": {"login": "bob"}, "created_at": "2021-03-01T00:00:00Z"},
]


def _write(tmp_path, rows):
    p = tmp_path / "export.jsonl"
    p.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return p


def test_export_reads_github_shapes(tmp_path):
    prs = data.read_export(_write(tmp_path, GOOD))
    assert [p.id for p in prs] == ["2", "1"]  # by creation time
    p = prs[1]
    assert p.author == "ann" and p.reviewers == ("bob",) and p.commenters == ("cy",)
    assert p.files == ("src/cache.py",) and p.work_items == ("4",) and p.repo == "org/repo"
    assert p.time == 1614834367.0


@pytest.mark.parametrize("bad, line, message", [
    ("{not json", 2, "invalid JSON"),
    ({"type": "issue", "number": 3}, 2, "unknown type 'issue'"),
    ({"type": "pull", "number": 3, "title": "x", "user": {"login": "a"}}, 2, "lacks field 'created_at'"),
    ({"type": "review", "pull_number": 9, "user": {"login": "a"}, "submitted_at": "2021-01-01T00:00:00Z"}, 2,
     "unknown pull request #9"),
    ({"type": "review", "pull_number": 1, "user": {"login": "a"}, "submitted_at": "yesterday"}, 2,
     "ISO 8601"),
    ({"type": "comment", "pull_number": 1, "user": {}, "created_at": "2021-01-01T00:00:00Z"}, 2, "login"),
])
def test_malformed_exports_name_the_line(tmp_path, bad, line, message):
    path = _write(tmp_path, [GOOD[0], bad])
    with pytest.raises(DataFormatError, match=f"export.jsonl:{line}: .*{message}"):
        data.read_export(path)


def test_planted_repository_is_deterministic_and_planted(tmp_path):
    cfg = PlantedConfig(num_commits=120, team_size=4)
    truth = data.planted_repository(tmp_path / "a", cfg)
    data.planted_repository(tmp_path / "b", cfg)
    a, b = read_repository(tmp_path / "a"), read_repository(tmp_path / "b")
    assert [p.id for p in a] == [p.id for p in b] and len(a) == 120
    people = {p.author for p in a}
    assert not any("old.example.com" in u for u in people)  # .mailmap merged the second addresses
    assert {u for u in people if "[bot]" in u or u.startswith("ci-bot")} <= set(truth.bots)
    for p in a[1:]:
        if p.author in truth.bots:
            continue
        team = truth.team_at(p.author, p.time)
        assert all(truth.team_at(r, p.time) == team for r in p.reviewers)  # reviewers from the author's team
        assert all(f.startswith(truth.topics[team] + "/") for f in p.files)
    assert truth.movers and all(len(truth.team[m]) == 2 for m in truth.movers)


def test_planted_repository_never_renames_a_file_it_creates_in_the_same_commit(tmp_path):
    # seed 0 with 4 movers draws a rename of the file created at commit 252 (git fast-import
    # used to fail with "Path ... not in branch")
    cfg = PlantedConfig(num_commits=400, team_size=8, movers=4, seed=0)
    truth = data.planted_repository(tmp_path / "r", cfg)
    prs = read_repository(tmp_path / "r")
    assert len(prs) == 400 and len(truth.movers) == 4
    assert any(f.endswith("_252.py") for f in prs[252].files)  # the new file, under its own name


def test_rank_metrics_hand_worked():
    pools = [["a", "b", "c"], ["a", "b", "c"]]
    scores = [np.array([3.0, 2.0, 1.0]), np.array([3.0, 2.0, 1.0])]
    m = ranking.rank_metrics(scores, pools, [["b"], ["d"]])
    assert m == {"top1": 0.0, "top3": 0.5, "top5": 0.5, "mrr": 0.25, "num_prs": 2}


def test_revfinder_similarities_and_frequency_baselines():
    assert ranking.path_similarity("a/b/c.py", "a/b/d.py") == (2 / 3, 0.0, 2 / 3, 2 / 3)
    assert ranking.path_similarity("x/b/c.py", "y/b/c.py") == (0.0, 2 / 3, 2 / 3, 2 / 3)
    assert ranking.path_similarity("a/x/c", "a/y/c")[3] == 2 / 3
    train = [PullRequest("1", 0.0, "ann", ("bob",), files=("a/b/c.py",)),
             PullRequest("2", 1.0, "ann", ("cy",), files=("z/q.py",)),
             PullRequest("3", 2.0, "dan", ("cy",), files=("z/q.py",))]
    new = PullRequest("4", 3.0, "ann", files=("a/b/d.py",))
    pool = ["bob", "cy", "dan"]
    np.testing.assert_array_equal(ranking.RepoFrequency(train, set()).scores(new, pool), [1, 2, 0])
    assert ranking.FileFrequency(train, set()).scores(new, pool).argmax() == 1  # no file history: repo count
    assert ranking.RevFinder(train, set()).scores(new, pool).argmax() == 0     # bob reviewed a/b/*
    assert ranking.candidate_pool(new, train, 1.0, {"dan"}) == ["bob", "cy"]


def test_directory_strata_by_hand():
    def pr(i, *files):
        return PullRequest(str(i), float(i), "a", ("b",), files=files)

    train = [pr(0, "src/a.py"), pr(1, "src/b.py", "doc/x.md"), pr(2, "src/c.py"), pr(3, "top.py")]
    test = [pr(4, "src/a.py", "src/d.py", "doc/y.md"), pr(5, "doc/z.md"), pr(6, "top.py"), pr(7, "new/q.py")]
    assert [ranking.top_directory(p) for p in test] == ["src", "doc", "", "new"]
    strata, cut = ranking.directory_strata(test, train)   # sizes 3, 1, 1, 0 -> median 1
    assert cut == 1 and strata == ["large", "large", "large", "small"]
