"""Edit plans: the `EDIT_PLAN <s> TARGET` output format of CoditT5 (spec section 2.1).

An edit plan lists the `difflib.SequenceMatcher` opcodes that turn a source token sequence
into a target token sequence::

    replace -> <REPLACE_OLD> old... <REPLACE_NEW> new... <REPLACE_END>
    insert  -> <INSERT> new... <INSERT_END>
    delete  -> <DELETE> old... <DELETE_END>
    equal   -> <KEEP> same... <KEEP_END>        (dropped from model targets)

The model's output is `plan <s> target`. Without its KEEP spans a plan does not say *where*
an insertion goes, so only a plan built with `keep=True` can be applied on its own
(`apply_plan`); the model therefore also writes the target after `<s>`, which is what is
evaluated (`split_output` cuts after the last edit keyword).

Example: `x = f ( a )` -> `x = f ( a ) ;` gives `<INSERT> ; <INSERT_END> <s> x = f ( a ) ;`.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence

from jaxlab.core.errors import DataFormatError

__all__ = [
    "DELETE", "DELETE_END", "EDIT_TOKENS", "INSERT", "INSERT_END", "KEEP", "KEEP_END", "REPLACE_END",
    "REPLACE_NEW", "REPLACE_OLD", "SEP", "apply_plan", "build_output", "build_plan", "parse_plan", "split_output",
]

REPLACE_OLD, REPLACE_NEW, REPLACE_END = "<REPLACE_OLD>", "<REPLACE_NEW>", "<REPLACE_END>"
INSERT, INSERT_END = "<INSERT>", "<INSERT_END>"
DELETE, DELETE_END = "<DELETE>", "<DELETE_END>"
KEEP, KEEP_END = "<KEEP>", "<KEEP_END>"
SEP = "<s>"
EDIT_TOKENS = (REPLACE_OLD, REPLACE_NEW, REPLACE_END, INSERT, INSERT_END, DELETE, DELETE_END, KEEP, KEEP_END)


def build_plan(source: Sequence[str], target: Sequence[str], *, keep: bool = False) -> list[str]:
    """The edit plan (a token list) from `source` to `target`: difflib opcodes, no autojunk.

    `keep=False` drops the KEEP spans, as CoditT5's targets do (`remove_keep_span`).
    """
    source, target = list(source), list(target)
    out: list[str] = []
    matcher = difflib.SequenceMatcher(None, source, target, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            if keep:
                out += [KEEP, *source[i1:i2], KEEP_END]
        elif tag == "replace":
            out += [REPLACE_OLD, *source[i1:i2], REPLACE_NEW, *target[j1:j2], REPLACE_END]
        elif tag == "insert":
            out += [INSERT, *target[j1:j2], INSERT_END]
        elif tag == "delete":
            out += [DELETE, *source[i1:i2], DELETE_END]
    return out


def parse_plan(plan: Sequence[str]) -> list[tuple[str, list[str], list[str]]]:
    """Parses a plan into `(op, old, new)` triples, `op` in {equal, replace, insert, delete}.

    Raises `DataFormatError` naming the position of the first malformed token.
    """
    plan = list(plan)
    ops: list[tuple[str, list[str], list[str]]] = []
    i = 0

    def until(stop: str, start: int) -> tuple[list[str], int]:
        j = start
        while j < len(plan) and plan[j] != stop:
            if plan[j] in EDIT_TOKENS:
                raise DataFormatError(f"edit plan: token {j} is {plan[j]!r}, expected {stop!r} or a plain token")
            j += 1
        if j == len(plan):
            raise DataFormatError(f"edit plan: {stop!r} missing after token {start}")
        return plan[start:j], j + 1

    while i < len(plan):
        t = plan[i]
        if t == KEEP:
            span, i = until(KEEP_END, i + 1)
            ops.append(("equal", span, span))
        elif t == INSERT:
            span, i = until(INSERT_END, i + 1)
            ops.append(("insert", [], span))
        elif t == DELETE:
            span, i = until(DELETE_END, i + 1)
            ops.append(("delete", span, []))
        elif t == REPLACE_OLD:
            old, i = until(REPLACE_NEW, i + 1)
            new, i = until(REPLACE_END, i)
            ops.append(("replace", old, new))
        else:
            raise DataFormatError(f"edit plan: token {i} is {t!r}, expected an edit keyword")
    return ops


def apply_plan(source: Sequence[str], ops: Sequence[tuple[str, list[str], list[str]]]) -> list[str]:
    """Applies a parsed plan *with KEEP spans* to `source`; every old span must match in order.

    Raises `DataFormatError` if the plan does not fit the source (a KEEP-less plan whose
    insertions have no anchor cannot be applied: build it with `keep=True`).
    """
    source = list(source)
    out: list[str] = []
    pos = 0
    for op, old, new in ops:
        if source[pos:pos + len(old)] != old:
            raise DataFormatError(f"edit plan: {op} expects {old!r} at source token {pos}, "
                                  f"found {source[pos:pos + len(old)]!r}")
        pos += len(old)
        out += new
    if pos != len(source):
        raise DataFormatError(f"edit plan covers {pos} of {len(source)} source tokens")
    return out


def build_output(source: Sequence[str], target: Sequence[str]) -> list[str]:
    """The CoditT5 output tokens `plan(source -> target, no KEEP) <s> target`."""
    return [*build_plan(source, target), SEP, *target]


def split_output(tokens: Sequence[str]) -> tuple[list[str], list[str]]:
    """`(plan, target)` of a decoded output: the target starts after the first `<s>` that follows
    the last edit keyword (spec: cut after the last edit keyword); with no `<s>` the tokens after
    the last edit keyword are the target."""
    tokens = list(tokens)
    last = max((i for i, t in enumerate(tokens) if t in EDIT_TOKENS), default=-1)
    rest = tokens[last + 1:]
    if SEP in rest:
        k = rest.index(SEP)
        return tokens[:last + 1] + rest[:k], rest[k + 1:]
    return tokens[:last + 1], rest
