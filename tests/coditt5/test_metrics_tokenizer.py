"""Metrics against hand-worked values; the tokenizer's round trip and reserved ids."""

import math

import pytest

from jaxlab.coditt5 import editplan, metrics
from jaxlab.coditt5.tokenizer import EOS, Tokenizer, train_tokenizer


def test_bleu_hand_worked():
    # p1 = 3/4; p2 = (2+1)/(3+1); p3 = (1+1)/(2+1); p4 = (0+1)/(1+1); BP = 1
    want = (3 / 4 * 3 / 4 * 2 / 3 * 1 / 2) ** 0.25
    assert metrics.sentence_bleu("a b c d".split(), "a b c e".split()) == pytest.approx(want)
    # auto_reweigh: 2-token hypothesis uses orders 1, 2; BP = exp(1 - 4/2)
    assert metrics.sentence_bleu("a b".split(), "a b c d".split()) == pytest.approx(math.exp(-1))
    assert metrics.sentence_bleu("x y".split(), "a b".split()) == 0.0
    assert metrics.sentence_bleu([], "a".split()) == 0.0
    assert metrics.sentence_bleu("a b c d e".split(), "a b c d e".split()) == pytest.approx(1.0)


def test_sari_hand_worked():
    # n=1: keep 1, del 1, add 1; n=2: keep 0 (nothing kept), del 1, add 1; n=3,4: 0
    assert metrics.sari("a b".split(), "a c".split(), "a c".split()) == pytest.approx((0.25 + 0.5 + 0.5) / 3)


def test_sari_counts_per_type_as_released():
    # Deletion precision is E[g] / D[g] per type, E = (S - C) - R: "x" deleted twice, once
    # rightly (the reference keeps one x): 1/2 at n = 1, 1 at n = 2, 3, 4; keep 1, 1, 0, 0; add 0.
    got = metrics.sari("x x x y".split(), "x y".split(), "x y".split())
    assert got == pytest.approx(((1 + 1) / 4 + (0.5 + 3) / 4) / 3)
    # Keep precision is G[g] / K[g] averaged over types: "a" kept twice, the reference has one:
    # n = 1: p = (1/2 + 1) / 2, r = 1, F1 = 6/7; n = 2: p = 1/2, r = 1, F1 = 2/3; n = 3: 0.
    got = metrics.sari("a a b".split(), "a a b".split(), "a b".split())
    assert got == pytest.approx((6 / 7 + 2 / 3) / 4 / 3)
    # Lowercased and split on spaces, as the released script reads its lines.
    assert metrics.sari(["A b"], ["a", "B"], ["a", "b"]) == pytest.approx(metrics.sari("a b".split(), "a b".split(),
                                                                                      "a b".split()))


def test_gleu_hand_worked():
    # The fix "c" -> "e" at position 3. A copy of the source: m = (3 - 1, 1 - 2, 0 - 2, 0 - 1)
    # clipped to (2, 0, 0, 0) and smoothed to (2, 1, 1, 1) over d = (4, 3, 2, 1); BP = 1.
    src, ref = "a b c d".split(), "a b e d".split()
    assert metrics.gleu(src, src, ref) == pytest.approx((2 / 4 * 1 / 3 * 1 / 2 * 1 / 1) ** 0.25)
    assert metrics.gleu(src, ref, ref) == pytest.approx(1.0)
    # Without source n-grams to avoid it is smoothed sentence BLEU without clipping to orders:
    # h = "a b", r = "a b c d": m = (2, 1, 0 -> 1, 0 -> 1), d = (2, 1, 1 -> smoothed from 0, 1 -> from -1 clipped)
    got = metrics.gleu(["z"], "a b".split(), "a b c d".split())
    assert got == pytest.approx(math.exp(1 - 4 / 2) * (2 / 2 * 1 / 1 * 1 / 1 * 1 / 1) ** 0.25)
    # The released smoothing turns every zero statistic into 1, so an empty hypothesis against a
    # one-token reference scores 1 (a property of the metric, kept).
    assert metrics.gleu(["z"], [], "a".split()) == pytest.approx(1.0)
    assert metrics.gleu(["z"], ["y"], "a b".split()) == pytest.approx(math.exp(1 - 2 / 1))


def test_corpus_metrics_copy_and_xmatch():
    src = [["a", "b"], ["c"]]
    r = metrics.corpus_metrics(src, [["a", "b"], ["d"]], [["a", "x"], ["d"]])
    assert r["copy"] == 50.0 and r["xmatch"] == 50.0 and r["count"] == 2


@pytest.mark.parametrize("text, want", [
    # tags, comment marks, HTML and inline tags gone; alphanumeric runs and symbols; camelCase split; lowercase
    ("/** Returns the {@link FooBar} <b>value</b> @param maxSize_2 */",
     "returns the foo bar value max size _ 2"),
    # as released, "@link" is removed before "@linkplain" (leaving "plain"); runs of capitals stay whole
    ("Use {@linkplain HTTPServer#getURL} instead", "use plain httpserver # get url instead"),
    ("@return the @ throws x2Y value", "the x2 y value"),
])
def test_subtokenize_comment_hand_worked(text, want):
    assert metrics.subtokenize_comment(text) == want.split()


def test_comment_metrics_compare_subtokens():
    src, ref = "returns the old size".split(), "@return the new {@code maxSize}".split()
    hyp = "the New maxSize".split()  # equal to the reference once subtokenised
    plain = metrics.corpus_metrics([src], [hyp], [ref])
    sub = metrics.corpus_metrics([src], [hyp], [ref], comment=True)
    assert plain["xmatch"] == 0 and sub["xmatch"] == 100 and sub["bleu"] == pytest.approx(100)
    assert metrics.corpus_metrics([ref], [hyp], [ref], comment=True)["copy"] == 100


def test_tokenizer_round_trip_and_reserved_ids():
    corpus = [["def", "foo", "(", "x", ")", ":"], ["return", "foo_bar", "+", "1", "<=", "a>b", "INSERT_TEXT0s"]] * 3
    tok = train_tokenizer(corpus, 200, num_sentinels=4)
    text = ["def", "fox", "(", "bar_foo", ")", "<s>", "<INSERT>", "<TEXT_0>"]
    ids = tok.encode(text)  # corpus text: reserved-looking strings are spelled, never reserved ids
    assert not set(ids) & tok.reserved
    assert tok.decode(ids) == text
    ids = tok.encode(["<INSERT>", "x", "<INSERT_END>", "<s>", "x"], tok.specials)
    assert ids[0] in tok.edit_ids and ids[3] == 2 and ids[2] in tok.edit_ids
    assert tok.decode(ids + [EOS, 5]) == ["<INSERT>", "x", "<INSERT_END>", "<s>", "x"]
    assert tok.pieces[tok.sentinel(3)] == "<extra_id_3>"
    assert set(editplan.EDIT_TOKENS) <= set(tok.pieces[:tok.first_sentinel])


def test_tokenizer_save_load(tmp_path):
    tok = train_tokenizer([["a", "bb", "bb"]], 100, num_sentinels=2)
    tok.save(tmp_path / "t.json")
    back = Tokenizer.load(tmp_path / "t.json")
    assert back.pieces == tok.pieces and back.encode(["bb", "ab"]) == tok.encode(["bb", "ab"])
