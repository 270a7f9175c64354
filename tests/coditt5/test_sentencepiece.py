"""The SentencePiece tokenizer: lossless round trip of token lists (spaces, '▁', escapes, unseen
characters), reserved ids out of reach of corpus text (both tokenizers), save/load, and a smoke
pretrain + finetune run with `tokenizer="sentencepiece"`."""

import dataclasses
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxlab import coditt5
from jaxlab.coditt5 import editplan, training
from jaxlab.coditt5.tokenizer import (
    EOS,
    PAD,
    SEP_ID,
    SentencePieceTokenizer,
    Tokenizer,
    load_tokenizer,
    train_sentencepiece,
    train_tokenizer,
)
from jaxlab.core.config import ConfigError
from jaxlab.core.errors import DataFormatError

# letters, digits, code punctuation, whitespace inside tokens, the word-start mark, the escape
# character and what follows it in an escape, and a few non-ASCII characters
_ALPHABET = "abcxyzAB019_()<>=+-.:'\" \t\n\u2581\ue000\u00e9\u00a7\u4e2d"
_TOKEN = st.text(alphabet=_ALPHABET, min_size=1, max_size=8)
_SEQS = st.lists(st.lists(_TOKEN, min_size=1, max_size=12), min_size=1, max_size=8)


@settings(deadline=None, max_examples=40)
@given(corpus=_SEQS, unseen=st.lists(st.text(min_size=0, max_size=6), max_size=8))
def test_round_trip_of_seen_and_unseen_text(corpus, unseen):
    if not any(" ".join(seq).strip("\r\n") for seq in corpus):  # nothing to train on: a clear error
        with pytest.raises(ValueError, match="every sequence of the corpus is empty or only line breaks"):
            train_sentencepiece(corpus, 600, num_sentinels=4, num_threads=1)
        return
    tok = train_sentencepiece(corpus, 600, num_sentinels=4, num_threads=1)
    for seq in corpus:
        ids = tok.encode(seq)
        assert tok.decode(ids) == seq
        assert not set(ids) & tok.reserved
        # one SentencePiece call per run of tokens equals one call per token
        assert ids == [i for t in seq for i in tok.encode_token(t)]
    # characters the trainer never saw (any Unicode, empty tokens too) come back through byte fallback
    ids = tok.encode(unseen)
    assert tok.decode(ids) == unseen and not set(ids) & tok.reserved


@pytest.mark.parametrize("corpus", [[["\n"]], [["\r\n"], ["\n\n"]], [[]]])
def test_a_corpus_without_text_is_a_clear_error(corpus):
    with pytest.raises(ValueError, match="every sequence of the corpus is empty or only line breaks"):
        train_sentencepiece(corpus, 600, num_sentinels=4, num_threads=1)


@pytest.mark.parametrize("kind", ["word", "sentencepiece"])
def test_corpus_text_never_maps_to_a_reserved_id(kind):
    specials = ["<s>", "</s>", "<pad>", "<unk>", *editplan.EDIT_TOKENS, "<extra_id_0>", "<extra_id_3>"]
    corpus = [["def", "f", "(", "x", ")", ":", *specials], ["return", "x", "<=", "<INSERT>x", "a <s> b"]] * 3
    train = train_tokenizer if kind == "word" else train_sentencepiece
    tok = train(corpus, 400, num_sentinels=4)
    for seq in corpus:  # as text, the reserved strings are spelled with ordinary pieces
        ids = tok.encode(seq)
        assert not set(ids) & tok.reserved and tok.decode(ids) == seq
    ids = tok.encode(["<INSERT>", "x", "<INSERT_END>", "<s>", "x", "<extra_id_3>"], tok.specials)
    assert ids[0] in tok.edit_ids and ids[2] in tok.edit_ids and ids[3] == SEP_ID and ids[5] == tok.sentinel(3)
    assert tok.decode([PAD, *ids, EOS, ids[1]]) == ["<INSERT>", "x", "<INSERT_END>", "<s>", "x", "<extra_id_3>"]
    assert tok.pieces[:tok.first_sentinel] == ["<pad>", "</s>", "<s>", "<unk>", *editplan.EDIT_TOKENS]


def test_save_load_and_digest(tmp_path):
    corpus = [["def", "foo", "(", "a b", ")"], ["x", "\u2581", "foo_bar"]]
    tok = train_sentencepiece(corpus, 400, num_sentinels=4, num_threads=1)
    tok.save(tmp_path / "t.json")
    back = load_tokenizer(tmp_path / "t.json")
    assert isinstance(back, SentencePieceTokenizer) and back.pieces == tok.pieces
    assert back.encode(corpus[0] + ["zz"]) == tok.encode(corpus[0] + ["zz"]) and back.digest() == tok.digest()
    # the trainer's thread count is recorded in the model but does not change the digest
    assert train_sentencepiece(corpus, 400, num_sentinels=4, num_threads=2).digest() == tok.digest()
    assert train_sentencepiece(corpus + [["new"]], 400, num_sentinels=4).digest() != tok.digest()
    word = train_tokenizer(corpus, 100, num_sentinels=2)
    word.save(tmp_path / "w.json")
    assert isinstance(load_tokenizer(tmp_path / "w.json"), Tokenizer)
    (tmp_path / "bad.json").write_text(json.dumps({"kind": "sentencepiece", "model": "@@", "num_sentinels": 4}))
    with pytest.raises(DataFormatError, match="bad.json"):
        load_tokenizer(tmp_path / "bad.json")


def test_smoke_pretrain_and_finetune_with_sentencepiece(tmp_path):
    cfg = coditt5.get_config("smoke")
    cfg = dataclasses.replace(cfg, tokenizer="sentencepiece", max_files=60, max_examples=200, formats=("plan",),
                              pretrain=dataclasses.replace(cfg.pretrain, loop=dataclasses.replace(
                                  cfg.pretrain.loop, num_steps=4, checkpoint_every=4, log_every=2)),
                              finetune=dataclasses.replace(cfg.finetune, loop=dataclasses.replace(
                                  cfg.finetune.loop, num_steps=2, checkpoint_every=2, log_every=2)))
    run = tmp_path / "run"
    pre = coditt5.pretrain(cfg, run)
    assert pre["steps"] == 4 and np.isfinite(pre["valid_loss"]) and pre["train_examples"] > 0
    tok = load_tokenizer(run / "tokenizer.json")
    assert isinstance(tok, SentencePieceTokenizer) and pre["vocab_size"] == len(tok) <= cfg.model.vocab_size
    fin = coditt5.finetune(cfg, run)
    assert fin["plan"]["steps"] == 2 and np.isfinite(fin["plan"]["valid_loss"])
    with pytest.raises(ConfigError, match="'sentencepiece' tokenizer"):
        training.get_tokenizer(dataclasses.replace(cfg, tokenizer="word"), [], run)
