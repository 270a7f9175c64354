"""Pretraining corruptions: CoditT5's edit-aware noise (spec section 2.2) and T5's span corruption.

Edit-aware noise: a fixed noise *budget* per sequence (not a rate), placed as in T5's
`random_spans_noise_mask`, and an edit type drawn per span::

    budget  = min(round(mean_span_count * mean_span_length), L - 1)
    spans   = max(1, round(budget / mean_span_length))
    layout  = non-noise, noise, non-noise, noise, ...   (first token never noised, last span ends at L)

with the noise and non-noise token counts each split into `spans` non-empty segments uniformly
at random (sequences with fewer non-noise tokens than spans are skipped, as the reference
sampler raises on them). Code: 1.9 x 6.5 -> 12 tokens in 2 spans; NL: 1.4 x 3 -> 4 tokens in 1.
Per span, the edit the model must perform to restore the original:

    replace (p_r): the span becomes one sentinel           -> model replaces the sentinel
    insert  (p_i): the span is removed                     -> model inserts it back
    delete  (p_d): a sentinel is put before the span        -> model deletes the sentinel
                   (`quirk_len1_delete`: for a length-1 span the original token is dropped too)

with (p_d, p_i, p_r) = (0.495, 0.215, 0.29) for code and (0.07, 0.11, 0.82) for comments.
The pretraining pair is (corrupted, `plan(corrupted -> original) <s> original`).

T5 span corruption (the "no edit pretraining" baseline): 15% noise density, mean span 3, each
span replaced by a sentinel; target `<extra_id_0> span_0 <extra_id_1> span_1 ...`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

__all__ = ["EditNoise", "CODE_NOISE", "NL_NOISE", "noise_spans", "edit_corrupt", "t5_span_corrupt",
           "segment", "EDIT_TYPES"]

EDIT_TYPES = ("delete", "insert", "replace")


@dataclasses.dataclass(frozen=True)
class EditNoise:
    """The noise recipe of one kind of text (spec 2.2): span budget and edit-type probabilities."""

    mean_span_count: float
    mean_span_length: float
    p_delete: float
    p_insert: float
    p_replace: float

    @property
    def probs(self) -> np.ndarray:
        p = np.array([self.p_delete, self.p_insert, self.p_replace], np.float64)
        return p / p.sum()


CODE_NOISE = EditNoise(1.9, 6.5, 0.495, 0.215, 0.29)
NL_NOISE = EditNoise(1.4, 3.0, 0.07, 0.11, 0.82)


def segment(n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """`n` items split into `k` non-empty segments uniformly at random; returns the `k` lengths."""
    cuts = np.sort(rng.choice(np.arange(1, n), size=k - 1, replace=False)) if k > 1 else np.array([], int)
    return np.diff(np.concatenate([[0], cuts, [n]])).astype(int)


def noise_spans(length: int, noise: EditNoise, rng: np.random.Generator) -> list[tuple[int, int]] | None:
    """The noise spans `[(start, end), ...]` of a sequence of `length` tokens, or None when the
    reference sampler would fail (fewer non-noise tokens than spans, or length < 2)."""
    if length < 2:
        return None
    budget = min(int(round(noise.mean_span_count * noise.mean_span_length)), length - 1)
    spans = max(1, int(round(budget / noise.mean_span_length)))
    if length - budget < spans or budget < spans:
        return None
    noise_len = segment(budget, spans, rng)
    keep_len = segment(length - budget, spans, rng)
    out, pos = [], 0
    for a, b in zip(keep_len, noise_len):
        pos += int(a)
        out.append((pos, pos + int(b)))
        pos += int(b)
    return out


def edit_corrupt(tokens: Sequence[str], noise: EditNoise, rng: np.random.Generator, *,
                 sentinel=lambda i: f"<extra_id_{i}>", quirk_len1_delete: bool = False):
    """Edit-aware corruption of one sequence (see module docstring).

    Returns `(corrupted tokens, [(edit type, start, end), ...])`, or None when the sequence is skipped.
    """
    tokens = list(tokens)
    spans = noise_spans(len(tokens), noise, rng)
    if spans is None:
        return None
    kinds = rng.choice(3, size=len(spans), p=noise.probs)
    out: list[str] = []
    pos = 0
    record = []
    for i, ((s, e), k) in enumerate(zip(spans, kinds)):
        out += tokens[pos:s]
        kind = EDIT_TYPES[int(k)]
        record.append((kind, s, e))
        if kind == "replace":
            out.append(sentinel(i))
        elif kind == "delete":
            out.append(sentinel(i))
            out += tokens[s + 1:e] if (quirk_len1_delete and e - s == 1) else tokens[s:e]
        pos = e
    out += tokens[pos:]
    return out, record


def t5_span_corrupt(tokens: Sequence[str], rng: np.random.Generator, *, noise_density: float = 0.15,
                    mean_span_length: float = 3.0, sentinel=lambda i: f"<extra_id_{i}>"):
    """T5's span corruption: `(inputs, targets)` token lists, or None for sequences under 2 tokens."""
    tokens = list(tokens)
    n = len(tokens)
    if n < 2:
        return None
    num_noise = min(max(int(round(n * noise_density)), 1), n - 1)
    spans = max(1, int(round(num_noise / mean_span_length)))
    spans = min(spans, num_noise, n - num_noise)
    noise_len = segment(num_noise, spans, rng)
    keep_len = segment(n - num_noise, spans, rng)
    inputs, targets, pos = [], [], 0
    for i, (a, b) in enumerate(zip(keep_len, noise_len)):
        inputs += tokens[pos:pos + int(a)] + [sentinel(i)]
        pos += int(a)
        targets += [sentinel(i)] + tokens[pos:pos + int(b)]
        pos += int(b)
    return inputs, targets


def statistics(sequences: Sequence[Sequence[str]], noise: EditNoise, rng: np.random.Generator) -> dict:
    """Corruption statistics over `sequences` (spec check 2): skipped share, noise tokens and spans per
    sequence, edit-type frequencies against the recipe with Pearson's chi-squared p-value."""
    from scipy import stats

    kinds, budgets, spans, skipped = [], [], [], 0
    for seq in sequences:
        out = edit_corrupt(seq, noise, rng)
        if out is None:
            skipped += 1
            continue
        budgets.append(sum(e - s for _, s, e in out[1]))
        spans.append(len(out[1]))
        kinds += [k for k, _, _ in out[1]]
    observed = np.array([kinds.count(k) for k in EDIT_TYPES])
    p = stats.chisquare(observed, noise.probs * observed.sum()).pvalue if observed.sum() else float("nan")
    return {"sequences": len(sequences), "skipped": skipped,
            "noise_tokens": dict(zip(*map(lambda a: a.tolist(), np.unique(budgets, return_counts=True)))),
            "spans": dict(zip(*map(lambda a: a.tolist(), np.unique(spans, return_counts=True)))),
            "edit_type_share": {k: float(c / max(observed.sum(), 1)) for k, c in zip(EDIT_TYPES, observed)},
            "expected_share": dict(zip(EDIT_TYPES, noise.probs.tolist())), "chi2_pvalue": float(p)}
