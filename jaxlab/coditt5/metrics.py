"""Metrics of edit tasks (spec section 4): xMatch, sentence BLEU-4 (NLTK's `sentence_bleu` with
smoothing method2 and `auto_reweigh`, averaged, x100), COPY% and SARI (Xu et al. 2016, one reference).

BLEU of hypothesis h and reference r (token lists), orders n = 1..N (N = 4, or len(h) when h is
shorter, the `auto_reweigh` rule), uniform weights::

    p_n  = clipped n-gram matches / n-gram count of h          (n = 1 as is; n >= 2: (m + 1) / (c + 1))
    BP   = 1 if len(h) > len(r) else exp(1 - len(r) / len(h))
    BLEU = BP * exp(mean_n log p_n)        (0 when no unigram matches; an empty h is "<EMPTY>")
"""

from __future__ import annotations

import collections
import math
from collections.abc import Sequence

__all__ = ["exact_match", "sentence_bleu", "corpus_metrics", "sari"]


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


def sari(source: Sequence[str], hyp: Sequence[str], ref: Sequence[str], max_order: int = 4) -> float:
    """SARI with one reference, a reconstruction of Xu et al. (2016): the mean over n = 1..4 of
    (keep F1 + deletion precision + addition F1) / 3 on lowercased n-grams; keep and delete use
    n-gram multisets (clipped counts), addition uses n-gram sets. Not checked against the
    reference `SARIsent` script (its fractional multi-reference weights reduce to this with one
    reference only approximately)."""
    s = [t.lower() for t in source]
    c = [t.lower() for t in hyp]
    r = [t.lower() for t in ref]
    keep_scores, del_scores, add_scores = [], [], []
    for n in range(1, max_order + 1):
        sg, cg, rg = _ngrams(s, n), _ngrams(c, n), _ngrams(r, n)
        # keep
        s_and_c = sg & cg
        s_and_r = sg & rg
        kc = sum(min(v, s_and_r[g]) for g, v in s_and_c.items())
        keep_p = kc / sum(s_and_c.values()) if s_and_c else 0.0
        keep_r = kc / sum(s_and_r.values()) if s_and_r else 0.0
        keep_scores.append(_f1(keep_p, keep_r))
        # deletion (precision only)
        del_c = sg - cg
        del_r = sg - rg
        dc = sum(min(v, del_r[g]) for g, v in del_c.items())
        del_scores.append(dc / sum(del_c.values()) if del_c else 0.0)
        # addition
        add_c = set(cg) - set(sg)
        add_r = set(rg) - set(sg)
        ac = len(add_c & add_r)
        add_p = ac / len(add_c) if add_c else 0.0
        add_r_ = ac / len(add_r) if add_r else 0.0
        add_scores.append(_f1(add_p, add_r_))
    k = sum(keep_scores) / max_order
    d = sum(del_scores) / max_order
    a = sum(add_scores) / max_order
    return (k + d + a) / 3


def corpus_metrics(sources: Sequence[Sequence[str]], hyps: Sequence[Sequence[str]],
                   refs: Sequence[Sequence[str]]) -> dict:
    """Averages x100: `xmatch`, `bleu`, `sari`, `copy` (prediction equals the source)."""
    n = max(len(hyps), 1)
    return {
        "xmatch": 100 * sum(exact_match(h, r) for h, r in zip(hyps, refs)) / n,
        "bleu": 100 * sum(sentence_bleu(h, r) for h, r in zip(hyps, refs)) / n,
        "sari": 100 * sum(sari(s, h, r) for s, h, r in zip(sources, hyps, refs)) / n,
        "copy": 100 * sum(exact_match(h, s) for h, s in zip(hyps, sources)) / n,
        "count": len(hyps),
    }
