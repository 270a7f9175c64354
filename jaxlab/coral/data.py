"""Data of CORAL: the planted git repository (the embedded default) and the JSON-lines export reader.

`planted_repository(path, cfg)` writes a real git repository with `git fast-import`
(deterministic: fixed names, e-mails and dates, so the same seed gives the same hashes)
whose history has a known structure:

  * teams, each owning a directory of files named with the team's topic words;
  * people author changes in their team's directory; each author has a *buddy* in the
    team who reviews most of their changes (`Reviewed-by` trailers), other team members
    review the rest;
  * some people move to another team half-way through (the paper's main reason for a
    stale recommendation) and from then on work and review there;
  * a few bots (`dependabot[bot]`, `ci-bot`) bump dependencies;
  * a `.mailmap` merges a second e-mail address some people commit with;
  * `Fixes #N` links to per-team work items, and some files are renamed.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import subprocess

import numpy as np

from jaxlab.coral.configs import PlantedConfig
from jaxlab.coral.gitlog import PullRequest
from jaxlab.core.errors import DataFormatError

__all__ = ["planted_repository", "PlantedTruth", "read_export"]

TOPICS = {
    "storage": ["disk", "cache", "block", "flush", "snapshot", "volume", "compaction", "page"],
    "network": ["socket", "packet", "retry", "timeout", "proxy", "handshake", "route", "dns"],
    "ui": ["button", "layout", "theme", "widget", "render", "modal", "font", "scroll"],
    "auth": ["token", "login", "password", "session", "oauth", "permission", "role", "cookie"],
    "billing": ["invoice", "payment", "refund", "currency", "tax", "ledger", "coupon", "charge"],
    "search": ["index", "query", "ranking", "tokenizer", "shard", "facet", "synonym", "crawler"],
    "compiler": ["parser", "lexer", "optimizer", "bytecode", "inline", "register", "codegen", "ast"],
    "telemetry": ["metric", "trace", "span", "sampler", "exporter", "histogram", "alert", "dashboard"],
}
VERBS = ["fix", "add", "refactor", "improve", "remove", "speed up", "handle", "document"]
BOTS = [("dependabot[bot]", "49699333+dependabot[bot]@users.noreply.github.com"), ("ci-bot", "ci-bot@example.com")]


@dataclasses.dataclass
class PlantedTruth:
    """What the generator planted: `team[email]` is a list of `(from_time, team)`;
    `buddy[email]` the usual reviewer; `movers` the people who changed team; `bots`."""

    team: dict[str, list[tuple[float, int]]]
    buddy: dict[str, str]
    movers: list[str]
    bots: list[str]
    topics: list[str]

    def team_at(self, email: str, time: float) -> int:
        cur = -1
        for t0, team in self.team.get(email, []):
            if time >= t0:
                cur = team
        return cur


def _ident(name: str, email: str, t: int) -> str:
    return f"{name} <{email}> {t} +0000"


def _data(text: str) -> bytes:
    b = text.encode()
    return b"data %d\n" % len(b) + b + b"\n"


def planted_repository(path: str | pathlib.Path, cfg: PlantedConfig) -> PlantedTruth:
    """Writes the planted repository at `path` (created; must not hold a repository yet).

    Returns the planted truth. Deterministic in `cfg` (same hashes for the same config).
    """
    path = pathlib.Path(path)
    rng = np.random.default_rng([cfg.seed, 0xC0A1])
    topics = list(TOPICS)[: cfg.num_teams]
    if cfg.num_teams > len(TOPICS):
        raise ValueError(f"at most {len(TOPICS)} teams")
    people = [(t, i, f"Dev {topics[t].title()} {i}", f"{topics[t]}{i}@example.com")
              for t in range(cfg.num_teams) for i in range(cfg.team_size)]
    names = {e: n for _, _, n, e in people}
    members = {t: [e for tt, _, _, e in people if tt == t] for t in range(cfg.num_teams)}
    buddy = {}
    for t in range(cfg.num_teams):
        for e in members[t]:
            others = [o for o in members[t] if o != e]
            buddy[e] = others[int(rng.integers(len(others)))]
    t_start = cfg.start_time
    t_move = t_start + (cfg.num_commits // 2) * cfg.interval_s
    team = {e: [(0.0, t)] for t, _, _, e in people}
    movers = []
    for t in range(min(cfg.movers, cfg.num_teams)):
        e = members[t][-1]
        new = (t + 1) % cfg.num_teams
        team[e].append((float(t_move), new))
        movers.append(e)
    alias = {e: e.replace("@example.com", "@old.example.com") for _, i, _, e in people if i == 0}
    files = {t: [f"{topics[t]}/{w}.py" for w in TOPICS[topics[t]][:4]] for t in range(cfg.num_teams)}
    bots = BOTS[: cfg.bots]

    def current(e: str, time: float) -> int:
        return [tm for t0, tm in team[e] if time >= t0][-1]

    out = bytearray()
    mailmap = "".join(f"{names[e]} <{e}> <{a}>\n" for e, a in alias.items())
    for c in range(cfg.num_commits):
        time = t_start + c * cfg.interval_s
        ops: list[bytes] = []
        if c == 0:
            ops.append(b"M 100644 inline .mailmap\n" + _data(mailmap))
            for t in range(cfg.num_teams):
                for f in files[t]:
                    ops.append(b"M 100644 inline " + f.encode() + b"\n" + _data(f"# {f}\n"))
            name, email, msg = "Dev Root", names[people[0][3]], "initial layout\n"
            name = names[people[0][3]]
            email = people[0][3]
        elif bots and rng.random() < cfg.bot_rate:
            name, email = bots[int(rng.integers(len(bots)))]
            dep = ["numpy", "requests", "pyyaml", "urllib3"][int(rng.integers(4))]
            a, b = int(rng.integers(1, 9)), int(rng.integers(10, 30))
            human = people[int(rng.integers(len(people)))][3]
            msg = f"Bump {dep} from 1.{a} to 1.{b}\n\nReviewed-by: {names[human]} <{human}>\n"
            ops.append(b"M 100644 inline requirements.txt\n" + _data(f"{dep}==1.{b}\n"))
        else:
            email = people[int(rng.integers(len(people)))][3]
            name = names[email]
            t = current(email, time)
            here = [e for e in team if current(e, time) == t and e != email]
            b = buddy[email] if current(buddy[email], time) == t and buddy[email] != email else None
            if b is None or rng.random() > cfg.buddy_prob:
                b = here[int(rng.integers(len(here)))]
            revs = [b]
            if rng.random() < cfg.second_reviewer_prob:
                rest = [e for e in here if e != b]
                revs.append(rest[int(rng.integers(len(rest)))])
            words = TOPICS[topics[t]]
            w1, w2 = (words[int(i)] for i in rng.choice(len(words), 2, replace=False))
            touched, created = [], None
            if rng.random() < cfg.new_file_rate:
                created = f"{topics[t]}/{w1}_{w2}_{c}.py"
                files[t].append(created)
                touched.append(created)
            else:
                k = 1 + int(rng.integers(min(3, len(files[t]))))
                touched += [files[t][int(i)] for i in rng.choice(len(files[t]), k, replace=False)]
            j = int(rng.integers(len(files[t]))) if rng.random() < cfg.rename_rate and len(files[t]) > 4 else -1
            if j >= 0 and files[t][j] != created:  # a file created in this commit is not renamed in it
                old = files[t][j]
                new = old.replace(".py", "_v2.py") if not old.endswith("_v2.py") else old.replace("_v2.py", ".py")
                files[t][j] = new
                ops.append(b"R " + old.encode() + b" " + new.encode() + b"\n")
                touched = [f for f in touched if f != old]
            for f in touched:
                ops.append(b"M 100644 inline " + f.encode() + b"\n" + _data(f"# {f}\n# change {c}\n"))
            verb = VERBS[int(rng.integers(len(VERBS)))]
            body = f"The {w1} code now handles {w2} cases in {topics[t]}."
            if rng.random() < 0.3:
                body += f"\n\nFixes #{100 * t + int(rng.integers(20))}"
            trail = "".join(f"Reviewed-by: {names[r]} <{r}>\n" for r in revs)
            msg = f"{verb} {w1} {w2}\n\n{body}\n\n{trail}"
            if email in alias and rng.random() < 0.5:
                email = alias[email]
        stamp = _ident(name, email, time).encode()
        out += b"commit refs/heads/main\nmark :%d\nauthor %s\ncommitter %s\n" % (c + 1, stamp, stamp)
        out += _data(msg)
        if c:
            out += b"from :%d\n" % c
        out += b"".join(ops) + b"\n"
    path.mkdir(parents=True, exist_ok=True)
    _run(path, "init", "-q", "-b", "main")
    _run(path, "fast-import", "--quiet", stdin=bytes(out))
    _run(path, "reset", "-q", "--hard", "main")
    return PlantedTruth(team=team, buddy=buddy, movers=movers, bots=[e for _, e in bots], topics=topics)


def _run(path: pathlib.Path, *args: str, stdin: bytes | None = None) -> None:
    out = subprocess.run(["git", "-C", str(path), *args], input=stdin, capture_output=True)
    if out.returncode != 0:
        raise RuntimeError(f"git {args[0]} failed: {out.stderr.decode(errors='replace')}")


_EXPORT_FIELDS = {
    "pull": ("number", "title", "user", "created_at"),
    "file": ("pull_number", "filename"),
    "review": ("pull_number", "user", "submitted_at"),
    "comment": ("pull_number", "user", "created_at"),
}


def _timestamp(value, where: str) -> float:
    import datetime

    if not isinstance(value, str):
        raise DataFormatError(f"{where}: expected an ISO 8601 timestamp string, got {value!r}")
    try:
        t = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise DataFormatError(f"{where}: expected an ISO 8601 timestamp like 2021-03-04T05:06:07Z, "
                              f"got {value!r}") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=datetime.UTC)
    return t.timestamp()


def _login(obj, where: str) -> str:
    if not isinstance(obj, dict) or not isinstance(obj.get("login"), str) or not obj["login"]:
        raise DataFormatError(f"{where}: expected a user object with a non-empty 'login'")
    return obj["login"].lower()


def read_export(path: str | pathlib.Path) -> list[PullRequest]:
    """Pull requests from a JSON-lines export in the shapes of GitHub's REST API.

    One JSON object per line, with a `type` field and the fields of the REST object:

      {"type": "pull", "number": 7, "title": "...", "body": "...", "user": {"login": "ann"},
       "created_at": "2021-03-04T05:06:07Z", "base": {"repo": {"full_name": "org/repo"}}}
      {"type": "file", "pull_number": 7, "filename": "src/a.py"}        (GET /pulls/{n}/files)
      {"type": "review", "pull_number": 7, "user": {"login": "bob"}, "state": "APPROVED",
       "submitted_at": "2021-03-05T10:00:00Z"}                          (GET /pulls/{n}/reviews)
      {"type": "comment", "pull_number": 7, "user": {"login": "cy"}, "created_at": "..."}
                                                                        (GET /pulls/{n}/comments)

    Users are keyed by lower-cased login; `Fixes #N` in title or body links work items.
    Raises DataFormatError naming the file and line for invalid JSON, an unknown type, a
    missing field, a bad timestamp, or a file/review/comment of a PR the export lacks.
    """
    import re

    path = pathlib.Path(path)
    if not path.is_file():
        raise DataFormatError(f"{path}: no such export file")
    pulls: dict[int, dict] = {}
    refs = []
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataFormatError(f"{where}: invalid JSON ({e.msg})") from None
        if not isinstance(obj, dict) or "type" not in obj:
            raise DataFormatError(f"{where}: expected an object with a 'type' field")
        kind = obj["type"]
        if kind not in _EXPORT_FIELDS:
            raise DataFormatError(f"{where}: unknown type {kind!r}, expected one of {sorted(_EXPORT_FIELDS)}")
        for f in _EXPORT_FIELDS[kind]:
            if f not in obj:
                raise DataFormatError(f"{where}: {kind} lacks field {f!r}")
        if kind == "pull":
            if not isinstance(obj["number"], int) or obj["number"] in pulls:
                raise DataFormatError(f"{where}: field 'number' must be a new integer, got {obj['number']!r}")
            repo = ((obj.get("base") or {}).get("repo") or {}).get("full_name") or path.stem
            pulls[obj["number"]] = {"time": _timestamp(obj["created_at"], f"{where}: field 'created_at'"),
                                    "author": _login(obj["user"], f"{where}: field 'user'"),
                                    "title": str(obj["title"]), "body": str(obj.get("body") or ""), "repo": repo,
                                    "files": [], "reviewers": [], "commenters": []}
        else:
            stamp = {"review": "submitted_at", "comment": "created_at"}.get(kind)
            if stamp:
                _timestamp(obj[stamp], f"{where}: field {stamp!r}")
            refs.append((where, kind, obj))
    for where, kind, obj in refs:
        pr = pulls.get(obj["pull_number"])
        if pr is None:
            raise DataFormatError(f"{where}: {kind} of unknown pull request #{obj['pull_number']!r}")
        if kind == "file":
            pr["files"].append(str(obj["filename"]))
        else:
            login = _login(obj["user"], f"{where}: field 'user'")
            key = "reviewers" if kind == "review" else "commenters"
            if login != pr["author"] and login not in pr[key]:
                pr[key].append(login)
    fixes = re.compile(r"\b(?:fix(?:e[sd])?|close[sd]?|resolve[sd]?)\b\s*:?\s*#(\d+)", re.IGNORECASE)
    out = []
    for number, p in sorted(pulls.items(), key=lambda kv: (kv[1]["time"], kv[0])):
        people = {p["author"], *p["reviewers"], *p["commenters"]}
        out.append(PullRequest(
            id=str(number), time=p["time"], author=p["author"], reviewers=tuple(p["reviewers"]),
            review_kinds=("review",) * len(p["reviewers"]),
            commenters=tuple(u for u in p["commenters"] if u not in p["reviewers"]),
            files=tuple(dict.fromkeys(p["files"])), title=p["title"], body=p["body"],
            work_items=tuple(dict.fromkeys(fixes.findall(p["title"] + "\n" + p["body"]))), repo=p["repo"],
            names=tuple(sorted((u, u) for u in people))))
    return out
