"""Reading pull requests out of a local git repository through the `git` command line.

One `git log` call with a fixed machine-readable format gives every commit (or, with
`unit="merge"`, every first-parent commit, merges diffed against their first parent):

    %H %P %aN %aE %cN %cE %at %ct %s %(trailers:...) %b      (fields split by 0x1f)

followed by `--name-status -M` lines (renames as `R<score> old new`). `%aN/%aE/%cN/%cE`
honour `.mailmap`; trailer identities (`Reviewed-by`, `Acked-by`, `Tested-by`,
`Co-authored-by`) are mapped through `git check-mailmap` in one call. Users are keyed by
their lower-cased canonical e-mail. `Fixes #N` / `Closes #N` / `Resolves #N` are parsed
from the whole message (a colon-less `Fixes #5` line inside the trailer paragraph makes git
drop the trailer block, so they are never read from trailers), and `Part-of: #M` next to
them gives a work-item `parentOf` edge M -> N. A renamed file keeps its first path as its
identity, so its history follows it.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import re
import subprocess

from jaxlab.core.errors import DataFormatError

__all__ = ["PullRequest", "read_repository", "is_bot", "REVIEW_KEYS"]

REVIEW_KEYS = ("Reviewed-by", "Acked-by", "Tested-by")
_FORMAT = ("%x1e%H%x1f%P%x1f%aN%x1f%aE%x1f%cN%x1f%cE%x1f%at%x1f%ct%x1f%s%x1f"
           "%(trailers:key=Reviewed-by,key=Acked-by,key=Tested-by,key=Co-authored-by,separator=%x1d)%x1f%b%x1f")
_NUM_FIELDS = 11
_IDENT = re.compile(r"^\s*(.*?)\s*<([^<>]*)>\s*$")
_FIXES = re.compile(r"\b(?:fix(?:e[sd])?|close[sd]?|resolve[sd]?)\b\s*:?\s*#(\d+)", re.IGNORECASE)
_PART_OF = re.compile(r"\bpart[- ]of\b\s*:?\s*#(\d+)", re.IGNORECASE)
_TRAILER_LINE = re.compile(r"^(?:Reviewed-by|Acked-by|Tested-by|Co-authored-by|Signed-off-by|Part-of):", re.IGNORECASE)


@dataclasses.dataclass(frozen=True)
class PullRequest:
    """One review unit: a commit (`unit="commit"`) or a merged pull request.

    Attributes:
      id: commit hash (or the export's PR number as a string).
      time: creation time, seconds since the epoch (author date).
      author: canonical e-mail of the author (lower case).
      reviewers: canonical e-mails of the reviewers (the link-prediction labels).
      review_kinds: the signal of each reviewer ("Reviewed-by", "committer", "merger", "review").
      coauthors: `Co-authored-by` identities.
      commenters: users who commented without reviewing (exports only).
      files: file identities (the first path of a renamed file).
      title, body: subject and message body (trailer lines removed).
      work_items: ids of linked work items (`Fixes #N`).
      parent_items: `(parent, child)` work-item pairs.
      repo: repository name.
      names: e-mail -> display name of the people above.
    """

    id: str
    time: float
    author: str
    reviewers: tuple[str, ...] = ()
    review_kinds: tuple[str, ...] = ()
    coauthors: tuple[str, ...] = ()
    commenters: tuple[str, ...] = ()
    files: tuple[str, ...] = ()
    title: str = ""
    body: str = ""
    work_items: tuple[str, ...] = ()
    parent_items: tuple[tuple[str, str], ...] = ()
    repo: str = "repo"
    names: tuple[tuple[str, str], ...] = ()

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> PullRequest:
        d = dict(d)
        for k in ("reviewers", "review_kinds", "coauthors", "commenters", "files", "work_items"):
            d[k] = tuple(d.get(k, ()))
        d["parent_items"] = tuple(tuple(p) for p in d.get("parent_items", ()))
        d["names"] = tuple(tuple(p) for p in d.get("names", ()))
        return cls(**d)


def is_bot(name: str, email: str) -> bool:
    """Automated accounts: `[bot]` in the name or e-mail, or a local part ending in `bot`."""
    local = email.split("@")[0].lower()
    return "[bot]" in name.lower() or "[bot]" in email.lower() or local.endswith("bot") or local.endswith("-bot")


def _git(repo: pathlib.Path, *args: str, stdin: str | None = None) -> str:
    env = dict(os.environ, GIT_PAGER="cat", LC_ALL="C")
    try:
        out = subprocess.run(["git", "-C", str(repo), *args], input=stdin, capture_output=True, text=True,
                             env=env, check=False)
    except FileNotFoundError as e:
        raise DataFormatError("the `git` command line is not installed") from e
    if out.returncode != 0:
        raise DataFormatError(f"{repo}: git {args[0]} failed: {out.stderr.strip().splitlines()[-1:]}")
    return out.stdout


def _check_repository(repo: pathlib.Path) -> None:
    if not repo.is_dir():
        raise DataFormatError(f"{repo}: not a directory (expected a git repository)")
    env = dict(os.environ, LC_ALL="C")
    out = subprocess.run(["git", "-C", str(repo), "rev-parse", "--git-dir"], capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise DataFormatError(f"{repo}: not a git repository (git rev-parse --git-dir failed)")


def _parse_ident(text: str) -> tuple[str, str] | None:
    m = _IDENT.match(text)
    return (m.group(1), m.group(2).strip().lower()) if m else None


def _strip_trailers(body: str) -> str:
    return "\n".join(line for line in body.splitlines() if not _TRAILER_LINE.match(line.strip())).strip()


def read_repository(path: str | pathlib.Path, *, unit: str = "commit", rev: str = "HEAD",
                    committer_reviews: bool = False, merger_reviews: bool = True,
                    trailer_keys: tuple[str, ...] = REVIEW_KEYS, max_count: int = 0) -> list[PullRequest]:
    """The review units of `path` at `rev`, oldest first.

    Args:
      unit: "commit" (`--no-merges`, each commit a PR) or "merge" (`--first-parent`, each
        first-parent commit a PR; a merge's author is its second parent's author and its
        files are its diff against the first parent).
      committer_reviews: count a committer other than the author as a reviewer (noisy:
        rebases and cherry-picks also change the committer).
      merger_reviews: in "merge" mode, count the person who merged as a reviewer.
      trailer_keys: the trailers that name reviewers.
      max_count: newest commits only (0: all).
    Raises:
      DataFormatError: `path` is not a git repository, or `rev` does not resolve.
    """
    repo = pathlib.Path(path)
    _check_repository(repo)
    args = ["log", "--reverse", "--use-mailmap", "--name-status", "-M", "--no-color", f"--format={_FORMAT}"]
    if unit == "commit":
        args.append("--no-merges")
    elif unit == "merge":
        args += ["--first-parent", "--diff-merges=first-parent"]
    else:
        raise ValueError(f"unit must be 'commit' or 'merge', got {unit!r}")
    if max_count:
        args.append(f"--max-count={max_count}")
    args += [rev, "--"]
    out = _git(repo, *args)
    raw = [r for r in out.split("\x1e") if r.strip()]
    records = []
    idents: set[str] = set()
    for rec in raw:
        fields = rec.split("\x1f")
        if len(fields) != _NUM_FIELDS + 1:
            raise DataFormatError(f"{repo}: git log record {fields[0][:12]!r} has {len(fields)} fields, "
                                  f"expected {_NUM_FIELDS + 1}")
        records.append(fields)
        for t in fields[9].split("\x1d"):
            if ":" in t:
                idents.add(t.split(":", 1)[1].strip())
    mailmap = _check_mailmap(repo, sorted(i for i in idents if _parse_ident(i)))
    second_parent_author: dict[str, tuple[str, str]] = {}
    if unit == "merge" and any(len(f[1].split()) > 1 for f in records):
        for line in _git(repo, "log", "--use-mailmap", "--format=%H%x1f%aN%x1f%aE", rev, "--").splitlines():
            h, n, e = line.split("\x1f")
            second_parent_author[h] = (n, e.lower())
    alias: dict[str, str] = {}
    prs = []
    for f in records:
        sha, parents, an, ae, cn, ce, at, _ct, subject, trailers, body, changes = f
        names = {ae.lower(): an, ce.lower(): cn}
        author = ae.lower()
        reviewers: list[str] = []
        kinds: list[str] = []
        coauthors: list[str] = []
        ps = parents.split()
        if unit == "merge" and len(ps) > 1:
            n2, e2 = second_parent_author.get(ps[1], (an, ae.lower()))
            names[e2] = n2
            if merger_reviews and e2 != author:
                reviewers.append(author)
                kinds.append("merger")
            author = e2
        for t in trailers.split("\x1d"):
            if ":" not in t:
                continue
            key, value = (s.strip() for s in t.split(":", 1))
            ident = _parse_ident(mailmap.get(value, value))
            if ident is None:
                continue
            names.setdefault(ident[1], ident[0])
            if key.lower() == "co-authored-by":
                if ident[1] != author and ident[1] not in coauthors:
                    coauthors.append(ident[1])
            elif key.lower() in {k.lower() for k in trailer_keys}:
                if ident[1] != author and ident[1] not in reviewers:
                    reviewers.append(ident[1])
                    kinds.append(key)
        if committer_reviews and ce.lower() != author and ce.lower() not in reviewers:
            reviewers.append(ce.lower())
            kinds.append("committer")
        files: list[str] = []
        for line in changes.strip("\n").splitlines():
            parts = line.split("\t")
            if len(parts) < 2:
                continue
            status = parts[0]
            if status.startswith(("R", "C")) and len(parts) == 3:
                key = alias.get(parts[1], parts[1])
                if status.startswith("R"):
                    alias[parts[2]] = key
                else:
                    key = alias.setdefault(parts[2], parts[2])
            else:
                key = alias.setdefault(parts[1], parts[1])
            if key not in files:
                files.append(key)
        message = subject + "\n" + body
        items = tuple(dict.fromkeys(_FIXES.findall(message)))
        parents_of = tuple((p, c) for p in dict.fromkeys(_PART_OF.findall(message)) for c in items if p != c)
        used = {author, *reviewers, *coauthors}
        prs.append(PullRequest(
            id=sha, time=float(at), author=author, reviewers=tuple(reviewers), review_kinds=tuple(kinds),
            coauthors=tuple(coauthors), files=tuple(files), title=subject, body=_strip_trailers(body),
            work_items=items, parent_items=parents_of, repo=repo.resolve().name,
            names=tuple(sorted((e, n) for e, n in names.items() if e in used))))
    return prs


def _check_mailmap(repo: pathlib.Path, idents: list[str]) -> dict[str, str]:
    """`Name <email>` -> its `.mailmap` canonical form, for every identity in one git call."""
    if not idents:
        return {}
    out = _git(repo, "check-mailmap", *idents).splitlines()
    return dict(zip(idents, out, strict=True))
