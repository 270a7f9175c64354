"""`sentence_bleu` and the BLEU of `corpus_metrics` against NLTK's `sentence_bleu` (smoothing method2,
`auto_reweigh`) on seeded random token sequences: empty, one to three tokens (re-weighted orders),
small vocabularies (many repeated n-grams, clipping) and near-copies of the reference.

`corpus_metrics["bleu"]` is the mean of sentence BLEU (the CodeT5 evaluation), not corpus-level
BLEU with pooled n-gram counts (sacrebleu, NLTK `corpus_bleu`), so the oracle is NLTK's mean."""

import warnings

import numpy as np
import pytest
from nltk.translate.bleu_score import SmoothingFunction
from nltk.translate.bleu_score import sentence_bleu as nltk_sentence_bleu

from jaxlab.coditt5 import metrics

SMOOTH = SmoothingFunction().method2


def nltk_bleu(hyp, ref):
    with warnings.catch_warnings():  # NLTK warns when an order has no match
        warnings.simplefilter("ignore")
        return nltk_sentence_bleu([ref], hyp, smoothing_function=SMOOTH, auto_reweigh=True)


def _tokens(rng, vocab, length):
    return [f"t{i}" for i in rng.integers(0, vocab, length)]


def _edit(rng, ref, vocab):
    """A near-copy of `ref`: a few substitutions, deletions and insertions."""
    out = list(ref)
    for _ in range(rng.integers(1, 4)):
        op = rng.integers(0, 3)
        if op == 0 and out:
            out[rng.integers(0, len(out))] = f"t{rng.integers(0, vocab)}"
        elif op == 1 and out:
            del out[rng.integers(0, len(out))]
        else:
            out.insert(rng.integers(0, len(out) + 1), f"t{rng.integers(0, vocab)}")
    return out


def random_pairs(seed, count=400):
    """`count` (hypothesis, reference) pairs: lengths 0-20 with a quarter of them 0-3 tokens long,
    vocabularies of 2-12 tokens, every fourth hypothesis an edit of its reference."""
    rng = np.random.default_rng(seed)
    pairs = []
    for k in range(count):
        vocab = int(rng.integers(2, 13))
        short = k % 4 == 0
        ref = _tokens(rng, vocab, rng.integers(0, 4 if short else 21))
        if k % 4 == 3:
            hyp = _edit(rng, ref, vocab)
        else:
            hyp = _tokens(rng, vocab, rng.integers(0, 4 if short else 21))
        pairs.append((hyp, ref))
    return pairs


@pytest.mark.parametrize("seed", [0, 1])
def test_sentence_bleu_equals_nltk_method2_auto_reweigh(seed):
    pairs = random_pairs(seed)
    ours = np.array([metrics.sentence_bleu(h, r) for h, r in pairs])
    theirs = np.array([nltk_bleu(h, r) for h, r in pairs])
    bad = np.flatnonzero(~np.isclose(ours, theirs, rtol=1e-12, atol=1e-15))
    assert bad.size == 0, [(pairs[i], ours[i], theirs[i]) for i in bad[:5]]
    # the sample reaches every branch: zero, perfect, partial, re-weighted short hypotheses, brevity penalty
    assert (theirs == 0).any() and np.isclose(theirs, 1).any() and ((theirs > 0) & (theirs < 1)).sum() > 100
    assert sum(1 <= len(h) < 4 and b > 0 for (h, _), b in zip(pairs, theirs)) > 10
    assert sum(0 < len(h) < len(r) and b > 0 for (h, r), b in zip(pairs, theirs)) > 20


def test_sentence_bleu_edge_cases_equal_nltk():
    cases = [([], []), ([], ["a"]), (["a"], []), (["a"], ["a"]), (["a", "a"], ["a"]), (["a", "b"], ["b", "a"]),
             (["a", "b", "c"], ["a", "b", "c"]), (["a", "a", "a", "a", "a"], ["a", "a"]),
             (["a", "b", "c", "d"], ["a", "b", "c", "d", "e", "f", "g", "h"])]
    for hyp, ref in cases:
        assert metrics.sentence_bleu(hyp, ref) == pytest.approx(nltk_bleu(hyp, ref), rel=1e-12, abs=1e-15), (hyp, ref)


def test_corpus_bleu_is_the_mean_of_nltk_sentence_bleu():
    pairs = random_pairs(2, count=200)
    hyps, refs = [h for h, _ in pairs], [r for _, r in pairs]
    got = metrics.corpus_metrics(refs, hyps, refs)["bleu"]
    assert got == pytest.approx(100 * np.mean([nltk_bleu(h, r) for h, r in pairs]), rel=1e-12)
