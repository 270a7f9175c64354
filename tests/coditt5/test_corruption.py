"""Pretraining corruption statistics against the spec's recipe (budgets, layout, edit-type frequencies)."""

import collections

import numpy as np
import pytest
from scipy import stats

from jaxlab.coditt5 import corruption


@pytest.mark.parametrize("noise,budget,spans", [(corruption.CODE_NOISE, 12, 2), (corruption.NL_NOISE, 4, 1)])
def test_budget_layout_and_edit_type_frequencies(noise, budget, spans):
    rng = np.random.default_rng(0)
    counts = collections.Counter()
    for i in range(10_000):
        length = 20 + i % 30
        seq = [f"t{j}" for j in range(length)]
        corrupted, record = corruption.edit_corrupt(seq, noise, rng)
        assert len(record) == spans
        assert sum(e - s for _, s, e in record) == budget
        assert record[0][1] >= 1 and record[-1][2] == length  # first token kept, last span ends the sequence
        lost = sum(e - s for k, s, e in record if k in ("insert", "replace"))
        added = sum(1 for k, _, _ in record if k in ("replace", "delete"))
        assert len(corrupted) == length - lost + added
        counts.update(k for k, _, _ in record)
    observed = np.array([counts[k] for k in corruption.EDIT_TYPES])
    expected = noise.probs * observed.sum()
    assert stats.chisquare(observed, expected).pvalue > 1e-3
    # and a wrong recipe is detected
    wrong = np.array([1 / 3, 1 / 3, 1 / 3]) * observed.sum()
    assert stats.chisquare(observed, wrong).pvalue < 1e-6


def test_short_sequences_are_skipped_like_the_reference_sampler():
    rng = np.random.default_rng(1)
    for length in (11, 12, 13):  # budget 10..12 leaves fewer non-noise tokens than the 2 spans
        assert corruption.edit_corrupt(list(range(length)), corruption.CODE_NOISE, rng) is None
    assert corruption.edit_corrupt(list(range(14)), corruption.CODE_NOISE, rng) is not None


def test_each_edit_type_corrupts_as_specified():
    seq = list("abcdefghij")
    for kind, p in (("replace", (0, 0, 1)), ("insert", (0, 1, 0)), ("delete", (1, 0, 0))):
        noise = corruption.EditNoise(1.0, 3.0, *p)
        corrupted, record = corruption.edit_corrupt(seq, noise, np.random.default_rng(3))
        (_, s, e), = record
        if kind == "replace":
            assert corrupted == seq[:s] + ["<extra_id_0>"] + seq[e:]
        elif kind == "insert":
            assert corrupted == seq[:s] + seq[e:]
        else:
            assert corrupted == seq[:s] + ["<extra_id_0>"] + seq[s:]


def test_len1_delete_quirk_drops_the_token():
    noise = corruption.EditNoise(1.0, 1.0, 1, 0, 0)
    seq = list("abcdef")
    c, ((_, s, e),) = corruption.edit_corrupt(seq, noise, np.random.default_rng(0), quirk_len1_delete=True)
    assert e - s == 1 and c == seq[:s] + ["<extra_id_0>"] + seq[e:]


def test_t5_span_corruption_interleaves_back_to_the_original():
    rng = np.random.default_rng(2)
    for n in range(2, 60):
        seq = [f"w{j}" for j in range(n)]
        inputs, targets = corruption.t5_span_corrupt(seq, rng)
        spans, cur = {}, None
        for t in targets:
            if t.startswith("<extra_id_"):
                cur = t
                spans[cur] = []
            else:
                spans[cur].append(t)
        rebuilt = [x for t in inputs for x in (spans[t] if t in spans else [t])]
        assert rebuilt == seq
        assert sum(len(v) for v in spans.values()) == min(max(round(n * 0.15), 1), n - 1)
