"""Metrics of edit tasks (spec section 4): xMatch, sentence BLEU-4 (NLTK's `sentence_bleu` with
smoothing method2 and `auto_reweigh`, averaged, x100), COPY%, SARI (Xu et al. 2016) and GLEU
(Napoles et al. 2016), both with one reference and averaged over sentences.

BLEU of hypothesis h and reference r (token lists), orders n = 1..N (N = 4, or len(h) when h is
shorter, the `auto_reweigh` rule), uniform weights::

    p_n  = clipped n-gram matches / n-gram count of h          (n = 1 as is; n >= 2: (m + 1) / (c + 1))
    BP   = 1 if len(h) > len(r) else exp(1 - len(r) / len(h))
    BLEU = BP * exp(mean_n log p_n)        (0 when no unigram matches; an empty h is "<EMPTY>")

For comment updating every metric first subtokenises the three comments (`subtokenize_comment`,
the released evaluation's rule from Panthaplackel et al.): Javadoc tags `@return`/`@param`/
`@throws` and comment marks dropped, HTML tags and inline tags (`{`, `}`, `@code`, `@link`, ...)
removed, split into alphanumeric runs and single symbols, camelCase split, lowercased.
"""

from __future__ import annotations

import collections
import math
import re
from collections.abc import Sequence

__all__ = ["exact_match", "sentence_bleu", "corpus_metrics", "sari", "gleu", "subtokenize_comment"]

_DOC_TAGS = ("@return", "@ return", "@param", "@ param", "@throws", "@ throws")
_MARKS = ("/**", "**/", "/*", "*/", "*")
# removed in this order, as released: "@link" goes before "@linkplain", which leaves "plain"
_INLINE_TAGS = ("{", "}", "@code", "@docRoot", "@inheritDoc", "@link", "@linkplain", "@value")
_HTML = re.compile(r"<.*?>")
_PIECES = re.compile(r"[A-Za-z0-9]+|[^\sA-Za-z0-9]")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def subtokenize_comment(text: str | Sequence[str]) -> list[str]:
    """The subtokens of a comment (a string, or tokens joined by spaces): see the module docstring."""
    if not isinstance(text, str):
        text = " ".join(text)
    for tag in _DOC_TAGS:
        text = text.replace(tag, "").strip()
    for mark in _MARKS:
        text = text.replace(mark, "")
    text = _HTML.sub("", text.strip())
    for tag in _INLINE_TAGS:
        text = text.replace(tag, "")
    return [sub.lower() for piece in _PIECES.findall(text) for part in _CAMEL.split(piece)
            for sub in _PIECES.findall(part)]


def exact_match(hyp: Sequence[str], ref: Sequence[str]) -> float:
    return float(list(hyp) == list(ref))


def _ngrams(tokens: Sequence[str], n: int) -> collections.Counter:
    return collections.Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def sentence_bleu(hyp: Sequence[str], ref: Sequence[str], max_order: int = 4) -> float:
    """Sentence BLEU in [0, 1] as described in the module docstring."""
    hyp = list(hyp) or ["<EMPTY>"]
    ref = list(ref)
    order = min(max_order, len(hyp))
    logs = []
    for n in range(1, order + 1):
        h, r = _ngrams(hyp, n), _ngrams(ref, n)
        match = sum(min(c, r[g]) for g, c in h.items())
        count = max(sum(h.values()), 1)
        if n == 1:
            if match == 0:
                return 0.0
            logs.append(math.log(match / count))
        else:
            logs.append(math.log((match + 1) / (count + 1)))
    c, rl = len(hyp), len(ref)
    bp = 1.0 if c > rl else math.exp(1 - rl / c)
    return bp * math.exp(sum(logs) / order)


def _f1(p: float, r: float) -> float:
    return 0.0 if p + r == 0 else 2 * p * r / (p + r)


def _as_released(tokens: Sequence[str], lower: bool) -> list[str]:
    """Tokens as the released scripts see them: joined by spaces (a file line), then split."""
    text = " ".join(tokens)
    return text.lower().split(" ") if lower else text.split()


def _ratio_mean(good: collections.Counter, base: collections.Counter) -> float:
    """Mean over the n-gram types of `base` of good[g] / base[g] (0 for an empty `base`)."""
    return sum(v / base[g] for g, v in good.items()) / len(base) if base else 0.0


def sari(source: Sequence[str], hyp: Sequence[str], ref: Sequence[str], max_order: int = 4) -> float:
    """SARI (Xu et al. 2016) with one reference, in [0, 1], as the released `SARIsent` computes it.

    The three sequences are joined by spaces, lowercased and split on single spaces. For each
    order n = 1..4, with S, C, R the n-gram multisets of source, hypothesis and reference:

    * keep: K = S & C, G = K & R, A = S & R; precision = mean over the types g of K of
      G[g] / K[g], recall = mean over the types of A of G[g] / A[g]; their F1;
    * deletion: D = S - C, E = D - R; precision = mean over the types of D of E[g] / D[g]
      (precision only);
    * addition, on n-gram sets: F1 of (C - S) & R against C - S and against R - S.

    SARI is the mean of the three scores, each averaged over the four orders.
    """
    s, c, r = (_as_released(x, lower=True) for x in (source, hyp, ref))
    keep_scores, del_scores, add_scores = [], [], []
    for n in range(1, max_order + 1):
        sg, cg, rg = _ngrams(s, n), _ngrams(c, n), _ngrams(r, n)
        kept = sg & cg
        kept_good = kept & rg
        keep_scores.append(_f1(_ratio_mean(kept_good, kept), _ratio_mean(kept_good, sg & rg)))
        deleted = sg - cg
        del_scores.append(_ratio_mean(deleted - rg, deleted))
        added = set(cg) - set(sg)
        added_good = added & set(rg)
        to_add = set(rg) - set(sg)
        add_scores.append(_f1(len(added_good) / len(added) if added else 0.0,
                              len(added_good) / len(to_add) if to_add else 0.0))
    k = sum(keep_scores) / max_order
    d = sum(del_scores) / max_order
    a = sum(add_scores) / max_order
    return (k + d + a) / 3


def gleu(source: Sequence[str], hyp: Sequence[str], ref: Sequence[str], max_order: int = 4) -> float:
    """Sentence GLEU (Napoles et al. 2016, "GLEU without tuning") with one reference, in [0, 1].

    The sequences are joined by spaces and split on whitespace (as the released script reads its
    files). With H, S, R the n-gram multisets of hypothesis, source and reference, and S \\ R the
    source n-grams whose type never occurs in the reference::

        m_n  = max(|H & R| - |H & (S \\ R)|, 0)      d_n = max(len(h) + 1 - n, 0)
        GLEU = exp(min(0, 1 - len(r) / len(h)) + mean_n log(m_n / d_n))

    with every zero among (len(h), len(r), m_n, d_n) replaced by 1 (the sentence-level smoothing;
    it lets a one-token or empty hypothesis with no match score exp(min(0, 1 - len(r))), as in
    the released script).
    A hypothesis that copies n-grams the reference changed is penalised, one that keeps what the
    reference keeps is not.
    """
    s, h, r = (_as_released(x, lower=False) for x in (source, hyp, ref))
    stats = [len(h), len(r)]
    for n in range(1, max_order + 1):
        hg, sg, rg = _ngrams(h, n), _ngrams(s, n), _ngrams(r, n)
        source_only = collections.Counter({g: v for g, v in sg.items() if g not in rg})
        matches = sum((hg & rg).values()) - sum((hg & source_only).values())
        stats += [max(matches, 0), max(len(h) + 1 - n, 0)]
    stats = [v if v != 0 else 1 for v in stats]
    c, rl = stats[:2]
    log_prec = sum(math.log(m / d) for m, d in zip(stats[2::2], stats[3::2])) / max_order
    return math.exp(min(0.0, 1 - rl / c) + log_prec)


def corpus_metrics(sources: Sequence[Sequence[str]], hyps: Sequence[Sequence[str]],
                   refs: Sequence[Sequence[str]], comment: bool = False) -> dict:
    """Averages x100: `xmatch`, `bleu`, `sari`, `gleu`, `copy` (prediction equals the source); with
    `comment`, of the subtokenised comments (`subtokenize_comment`)."""
    if comment:
        sources, hyps, refs = ([subtokenize_comment(t) for t in ts] for ts in (sources, hyps, refs))
    n = max(len(hyps), 1)
    return {
        "xmatch": 100 * sum(exact_match(h, r) for h, r in zip(hyps, refs)) / n,
        "bleu": 100 * sum(sentence_bleu(h, r) for h, r in zip(hyps, refs)) / n,
        "sari": 100 * sum(sari(s, h, r) for s, h, r in zip(sources, hyps, refs)) / n,
        "gleu": 100 * sum(gleu(s, h, r) for s, h, r in zip(sources, hyps, refs)) / n,
        "copy": 100 * sum(exact_match(h, s) for h, s in zip(hyps, sources)) / n,
        "count": len(hyps),
    }
