"""Data: Python standard-library functions as the embedded corpus, the three edit tasks built from
them, the real-format readers, encoding and bucketed batches.

Corpus (nothing is downloaded): every `.py` file of the running interpreter's standard library
(tests and site-packages excluded), parsed with `ast`; each function gives its code tokens
(Python's `tokenize`, docstring removed, `§NL`/`§IN`/`§DE` for NEWLINE/INDENT/DEDENT, string
literals with whitespace or over 12 characters as `STR`) and its docstring's first paragraph split
on whitespace. The split is by file: `crc32(path) % 20` == 0 is test, == 1 validation, else train.

Tasks (fine-tuning; source, context -> target):
  bugfix  : mutated code -> original code; one of flip a comparison, off-by-one on an integer
            literal, swap two single-token call arguments, drop a simple statement.
  comment : old docstring + the code change (its edit plan) -> docstring with a renamed
            parameter propagated into it.
  review  : code + a templated instruction ("rename a to b", "change 1 to 2", "use < instead of <=")
            -> the edited code.

Formats users bring: CodeSearchNet `*.jsonl(.gz)` (`code_tokens`, `docstring_tokens`, ...) and the
library's JSON lines `{"source", "context", "target"}` (whitespace-tokenised strings); a malformed
line raises `DataFormatError` naming the file and line.
"""

from __future__ import annotations

import ast
import gzip
import io
import json
import keyword
import pathlib
import sysconfig
import textwrap
import tokenize
import zlib
from collections.abc import Sequence

import numpy as np

from jaxlab.coditt5 import editplan
from jaxlab.coditt5.tokenizer import EOS, PAD, Tokenizer
from jaxlab.core.errors import DataFormatError

__all__ = ["stdlib_functions", "split_of", "make_bugfix", "make_comment", "make_review", "make_task",
           "read_jsonl_examples", "read_codesearchnet", "encode_example", "Buckets", "NL", "INDENT", "DEDENT"]

NL, INDENT, DEDENT = "\u00a7NL", "\u00a7IN", "\u00a7DE"
_SKIP_DIRS = {"test", "tests", "site-packages", "idle_test", "__pycache__"}
#: named random streams (np.random.default_rng([seed, STREAM, ...]))
TASK_STREAM, BATCH_STREAM = 101, 102


def split_of(relpath: str) -> str:
    """Deterministic file-level split: 'test', 'valid' or 'train'."""
    r = zlib.crc32(relpath.encode()) % 20
    return "test" if r == 0 else "valid" if r == 1 else "train"


def _code_tokens(src: str) -> list[str] | None:
    out = []
    try:
        for tok in tokenize.generate_tokens(io.StringIO(src).readline):
            if tok.type in (tokenize.COMMENT, tokenize.NL, tokenize.ENCODING, tokenize.ENDMARKER):
                continue
            if tok.type == tokenize.NEWLINE:
                out.append(NL)
            elif tok.type == tokenize.INDENT:
                out.append(INDENT)
            elif tok.type == tokenize.DEDENT:
                out.append(DEDENT)
            elif tok.type == tokenize.STRING and (len(tok.string) > 12 or any(c.isspace() for c in tok.string)):
                out.append("STR")
            elif tok.string.strip():
                out.append(tok.string)
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return None
    while out and out[-1] == DEDENT:
        out.pop()
    return out


def stdlib_functions(max_files: int = 0, *, max_code_tokens: int = 64, min_code_tokens: int = 8,
                     root: str | pathlib.Path | None = None) -> list[dict]:
    """Functions of the standard library (or of `root`): dicts with `file`, `split`, `name`, `params`,
    `code` (tokens), `doc` (tokens, maybe empty). `max_files` > 0 keeps that many files per sorted path."""
    root = pathlib.Path(root or sysconfig.get_paths()["stdlib"])
    files = sorted(p for p in root.rglob("*.py") if not (_SKIP_DIRS & set(p.relative_to(root).parts[:-1])))
    if max_files:
        files = files[:max_files]
    out = []
    for path in files:
        rel = path.relative_to(root).as_posix()
        try:
            text = path.read_text(encoding="utf-8")
            tree = ast.parse(text)
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        lines = text.splitlines(keepends=True)
        for node in ast.walk(tree):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) or node.end_lineno is None:
                continue
            body = list(node.body)
            doc = ast.get_docstring(node) or ""
            if doc and len(body) > 1:
                body = body[1:]
            elif doc:
                continue
            first = node.lineno - 1
            if doc:  # the header up to the docstring, then the body after it
                seg = "".join(lines[first:node.body[0].lineno - 1]) + "".join(lines[body[0].lineno - 1:node.end_lineno])
            else:
                seg = "".join(lines[first:node.end_lineno])
            code = _code_tokens(textwrap.dedent(seg))
            if code is None or not (min_code_tokens <= len(code) <= max_code_tokens):
                continue
            para = doc.strip().split("\n\n")[0].split()
            out.append({"file": rel, "split": split_of(rel), "name": node.name,
                        "params": [a.arg for a in node.args.args + node.args.kwonlyargs if a.arg != "self"],
                        "code": code, "doc": para[:48]})
    return out


# ---- fine-tuning tasks ----------------------------------------------------------------------------

_FLIP = {"<": ">=", ">": "<=", "<=": ">", ">=": "<", "==": "!=", "!=": "=="}
_NEW_NAMES = ("value", "item", "obj", "data", "arg", "result", "key", "node", "text", "count")


def _is_name(t: str) -> bool:
    return t.isidentifier() and not keyword.iskeyword(t)


def make_bugfix(code: Sequence[str], rng: np.random.Generator) -> dict | None:
    """A bug-fixing example (buggy -> fixed) from one random applicable mutation, or None."""
    code = list(code)
    cands = []
    cands += [("flip", i) for i, t in enumerate(code) if t in _FLIP]
    cands += [("off_by_one", i) for i, t in enumerate(code) if t.isdigit() and len(t) < 4]
    cands += [("swap", i) for i in range(len(code) - 4)
              if code[i] == "(" and code[i + 2] == "," and code[i + 4] == ")" and code[i + 1] != code[i + 3]
              and code[i + 1] not in ("*", "**") and code[i + 3] not in ("*", "**")]
    nls = [i for i, t in enumerate(code) if t == NL]
    for a, b in zip(nls, nls[1:]):
        line = code[a + 1:b]
        if 2 <= len(line) and not {INDENT, DEDENT} & set(line) and line[-1] != ":" and b + 1 < len(code) \
                and code[b + 1] != INDENT:
            cands.append(("drop", a))
    if not cands:
        return None
    kind, i = cands[int(rng.integers(len(cands)))]
    bug = list(code)
    if kind == "flip":
        bug[i] = _FLIP[code[i]]
    elif kind == "off_by_one":
        n = int(code[i])
        bug[i] = str(n + 1 if n == 0 or rng.random() < 0.5 else n - 1)
    elif kind == "swap":
        bug[i + 1], bug[i + 3] = code[i + 3], code[i + 1]
    else:
        b = nls[nls.index(i) + 1]
        bug = code[:i + 1] + code[b + 1:]
    return {"source": bug, "context": [], "target": code, "kind": kind}


def _rename(tokens: Sequence[str], old: str, new: str) -> list[str]:
    out = []
    for t in tokens:
        core = t.strip(".,:;()`'\"[]")
        out.append(t.replace(core, new, 1) if core == old else t)
    return out


def make_comment(fn: dict, rng: np.random.Generator) -> dict | None:
    """A comment-update example: a parameter mentioned in the docstring is renamed in the code;
    source = old docstring, context = the code change's edit plan, target = updated docstring."""
    doc = fn["doc"]
    cores = {t.strip(".,:;()`'\"[]") for t in doc}
    params = [p for p in fn["params"] if p in cores and len(p) > 1]
    if not params:
        return None
    old = params[int(rng.integers(len(params)))]
    names = [n for n in _NEW_NAMES if n not in fn["code"] and n != old]
    new = f"{old}_{names[int(rng.integers(len(names)))]}" if names else f"{old}_new"
    new_code = [new if t == old else t for t in fn["code"]]
    return {"source": list(doc), "context": editplan.build_plan(fn["code"], new_code),
            "target": _rename(doc, old, new), "kind": "rename"}


def make_review(code: Sequence[str], rng: np.random.Generator) -> dict | None:
    """A review-style edit from a templated instruction: rename an identifier, change a literal or
    swap a comparison operator; source = code, context = instruction, target = edited code."""
    code = list(code)
    names = sorted({t for t in code[2:] if _is_name(t) and len(t) > 1 and code.count(t) >= 2})
    ints = [i for i, t in enumerate(code) if t.isdigit() and len(t) < 4]
    cmps = [i for i, t in enumerate(code) if t in _FLIP]
    kinds = [k for k, ok in (("rename", names), ("literal", ints), ("operator", cmps)) if ok]
    if not kinds:
        return None
    kind = kinds[int(rng.integers(len(kinds)))]
    if kind == "rename":
        old = names[int(rng.integers(len(names)))]
        new = f"{old}_{_NEW_NAMES[int(rng.integers(len(_NEW_NAMES)))]}"
        return {"source": code, "context": ["rename", old, "to", new],
                "target": [new if t == old else t for t in code], "kind": kind}
    if kind == "literal":
        i = ints[int(rng.integers(len(ints)))]
        new = str(int(code[i]) + int(rng.integers(1, 10)))
        return {"source": code, "context": ["change", code[i], "to", new],
                "target": code[:i] + [new] + code[i + 1:], "kind": kind}
    i = cmps[int(rng.integers(len(cmps)))]
    new = _FLIP[code[i]]
    return {"source": code, "context": ["use", new, "instead", "of", code[i]],
            "target": code[:i] + [new] + code[i + 1:], "kind": kind}


def make_task(functions: Sequence[dict], task: str, split: str, seed: int) -> list[dict]:
    """Examples of `task` ('bugfix' | 'comment' | 'review') from the functions of one split (one per function)."""
    rng = np.random.default_rng([seed, TASK_STREAM, ("train", "valid", "test").index(split),
                                 ("bugfix", "comment", "review").index(task)])
    out = []
    for fn in functions:
        if fn["split"] != split:
            continue
        ex = (make_bugfix(fn["code"], rng) if task == "bugfix" else make_comment(fn, rng) if task == "comment"
              else make_review(fn["code"], rng))
        if ex is not None and ex["source"] != ex["target"]:
            out.append(ex)
    return out


# ---- real formats -------------------------------------------------------------------------------

def _open_lines(path: pathlib.Path):
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            yield from enumerate(f, 1)
    except (OSError, UnicodeDecodeError, EOFError) as e:
        raise DataFormatError(f"{path}: cannot read ({e})") from None


def _load_line(path, lineno: int, line: str) -> dict:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as e:
        raise DataFormatError(f"{path}:{lineno}: not a JSON object ({e.msg})") from None
    if not isinstance(obj, dict):
        raise DataFormatError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
    return obj


def read_jsonl_examples(path: str | pathlib.Path, *, need_target: bool = True) -> list[dict]:
    """Reads the library's JSON-lines format: `{"source": str, "context": str (optional), "target": str}`
    per line (blank lines skipped; `target` optional when `need_target` is False); strings are split
    on whitespace."""
    path = pathlib.Path(path)
    out = []
    for lineno, line in _open_lines(path):
        if not line.strip():
            continue
        obj = _load_line(path, lineno, line)
        for field in ("source", "target") if need_target else ("source",):
            if not isinstance(obj.get(field), str):
                raise DataFormatError(f"{path}:{lineno}: field {field!r} must be a string, got {obj.get(field)!r}")
        ctx = obj.get("context", "")
        if not isinstance(ctx, str):
            raise DataFormatError(f"{path}:{lineno}: field 'context' must be a string, got {ctx!r}")
        tgt = obj.get("target", "")
        if not isinstance(tgt, str):
            raise DataFormatError(f"{path}:{lineno}: field 'target' must be a string, got {tgt!r}")
        out.append({"source": obj["source"].split(), "context": ctx.split(), "target": tgt.split()})
    return out


def read_codesearchnet(path: str | pathlib.Path) -> list[dict]:
    """Reads CodeSearchNet `*.jsonl(.gz)` lines into `{"code", "doc", "split", "name", "params"}` using
    `code_tokens`, `docstring_tokens`, `partition` (train/valid/test) and `func_name`."""
    path = pathlib.Path(path)
    out = []
    for lineno, line in _open_lines(path):
        if not line.strip():
            continue
        obj = _load_line(path, lineno, line)
        for field in ("code_tokens", "docstring_tokens"):
            v = obj.get(field)
            if not (isinstance(v, list) and all(isinstance(t, str) for t in v)):
                raise DataFormatError(f"{path}:{lineno}: field {field!r} must be a list of strings")
        part = obj.get("partition", "train")
        if part not in ("train", "valid", "test"):
            raise DataFormatError(f"{path}:{lineno}: field 'partition' must be train, valid or test, got {part!r}")
        out.append({"code": obj["code_tokens"], "doc": obj["docstring_tokens"], "split": part,
                    "name": str(obj.get("func_name", "")), "params": [], "file": str(obj.get("path", ""))})
    return out


# ---- encoding and bucketed batches --------------------------------------------------------------

def encode_example(tok: Tokenizer, source: Sequence[str], context: Sequence[str], output: Sequence[str]
                   ) -> tuple[list[int], list[int]]:
    """Ids of `source </s> context </s>` (context part omitted when empty) and `output </s>`; the
    separator, edit tokens and sentinels in them get their reserved ids."""
    sp = tok.specials
    src = tok.encode(source, sp) + [EOS]
    if context:
        src += tok.encode(context, sp) + [EOS]
    return src, tok.encode(output, sp) + [EOS]


class Buckets:
    """Examples padded to a few (source, target) length pairs so a step compiles once per bucket.

    `lengths = ((s1, t1), (s2, t2), ...)` in increasing order; an example goes to the first pair
    that holds it and is dropped when none does. `batch(step, seed)` samples a bucket with
    probability proportional to its size, then `batch_size` of its examples (with replacement):
    a pure function of (seed, step). `pairs` may be a list or a random-access source
    (`builder.PairSource`): it is read once for the lengths, then only the records of each batch.
    """

    def __init__(self, pairs: Sequence[tuple[list[int], list[int]]], lengths: Sequence[tuple[int, int]],
                 batch_size: int):
        self.lengths = [tuple(map(int, p)) for p in lengths]
        self.batch_size = batch_size
        self.members: list[list[int]] = [[] for _ in self.lengths]
        self.pairs = pairs if hasattr(pairs, "__getitem__") else list(pairs)  # lists or random-access sources
        self.dropped = 0
        for i, (s, t) in enumerate(self.pairs):
            for b, (ls, lt) in enumerate(self.lengths):
                if len(s) <= ls and len(t) <= lt:
                    self.members[b].append(i)
                    break
            else:
                self.dropped += 1
        sizes = np.array([len(m) for m in self.members], np.float64)
        if sizes.sum() == 0:
            raise DataFormatError("no example fits the largest bucket "
                                  f"{self.lengths[-1]}: raise the bucket lengths or shorten the data")
        self.probs = sizes / sizes.sum()

    def __len__(self) -> int:
        return sum(len(m) for m in self.members)

    def pad(self, idx: Sequence[int], bucket: int) -> dict:
        ls, lt = self.lengths[bucket]
        src = np.full((len(idx), ls), PAD, np.int32)
        tgt = np.full((len(idx), lt), PAD, np.int32)
        for r, i in enumerate(idx):
            s, t = self.pairs[i]
            src[r, :len(s)] = s
            tgt[r, :len(t)] = t
        return {"src": src, "labels": tgt}

    def batch(self, step: int, seed: int) -> dict:
        rng = np.random.default_rng([seed, BATCH_STREAM, step])
        b = int(rng.choice(len(self.lengths), p=self.probs))
        idx = rng.choice(self.members[b], size=self.batch_size, replace=True)
        return self.pad(idx, b)
