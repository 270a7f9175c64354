"""The TFDS store of training pairs: records equal the in-memory pairs (and so do the bucketed
batches), the fingerprint follows exactly the fields that shape the data, a second build reads
the cache, and empty splits are kept."""

import dataclasses

import numpy as np
import pytest

from jaxlab import coditt5
from jaxlab.coditt5 import builder, data, training
from jaxlab.coditt5.tokenizer import train_tokenizer


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    cfg = dataclasses.replace(coditt5.get_config("smoke"), max_files=60, max_examples=200)
    functions = training.load_functions(cfg)
    tok = training.get_tokenizer(cfg, functions, tmp_path_factory.mktemp("tok"))
    return cfg, functions, tok


def _as_lists(pairs):
    return [(np.asarray(s).tolist(), np.asarray(t).tolist()) for s, t in pairs]


def test_stored_pairs_equal_the_in_memory_ones_and_a_second_build_reads_them(setup, tmp_path):
    cfg, functions, tok = setup
    calls = []

    def make(split):
        calls.append(split)
        return training.pretrain_pairs(cfg, functions, tok, split)

    stored = builder.stage_pairs(cfg, "pretrain", tok, make, tmp_path)
    assert sorted(calls) == ["train", "valid"]
    for split in ("train", "valid"):
        want = training.pretrain_pairs(cfg, functions, tok, split)
        assert len(want) > 0 and _as_lists(stored[split]) == want
        assert _as_lists(stored[split][:3]) == want[:3] and stored[split][1][0].dtype == np.int32
    mem = data.Buckets(training.pretrain_pairs(cfg, functions, tok, "train"), cfg.buckets, 8)
    disk = data.Buckets(stored["train"], cfg.buckets, 8)
    assert mem.members == disk.members and mem.dropped == disk.dropped
    for step in range(5):
        a, b = mem.batch(step, cfg.seed), disk.batch(step, cfg.seed)
        assert all(np.array_equal(a[k], b[k]) for k in a)

    def fail(split):
        raise AssertionError("a prepared fingerprint must be read, not built again")

    again = builder.stage_pairs(cfg, "pretrain", tok, fail, tmp_path)
    assert _as_lists(again["train"]) == _as_lists(stored["train"])
    # the task stages go through the same store; 'memory' bypasses it
    fine = training.stage_pairs(dataclasses.replace(cfg, data_dir=str(tmp_path)), "finetune-plan", tok,
                                lambda s: training.task_pairs(training.task_examples(cfg, functions, s), tok, "plan"))
    assert _as_lists(fine["valid"]) == training.task_pairs(training.task_examples(cfg, functions, "valid"), tok, "plan")
    assert training.stage_pairs(dataclasses.replace(cfg, example_store="memory"), "pretrain", tok,
                                lambda s: [([s == "train"], [1])])["valid"] == [([False], [1])]


def test_fingerprint_follows_the_fields_that_shape_the_data(setup, tmp_path):
    cfg, _, tok = setup
    fp = builder.fingerprint(cfg, "pretrain", tok)
    assert fp == builder.fingerprint(dataclasses.replace(cfg), "pretrain", tok)
    for change in (dict(seed=1), dict(max_examples=199), dict(pretrain_objective="span"), dict(max_files=61),
                   dict(quirk_len1_delete=True), dict(max_code_tokens=41)):
        assert builder.fingerprint(dataclasses.replace(cfg, **change), "pretrain", tok) != fp, change
    for same in (dict(task="review"), dict(beam_size=2), dict(data_dir="x"), dict(example_store="memory"),
                 dict(pretrain=dataclasses.replace(cfg.pretrain, lr=0.5))):
        assert builder.fingerprint(dataclasses.replace(cfg, **same), "pretrain", tok) == fp, same
    other_tok = train_tokenizer([["a", "b"]], 100)
    assert builder.fingerprint(cfg, "pretrain", other_tok) != fp
    ft = builder.fingerprint(cfg, "finetune-plan", tok)
    assert ft != builder.fingerprint(cfg, "finetune-plain", tok)
    assert ft != builder.fingerprint(dataclasses.replace(cfg, task="review"), "finetune-plan", tok)
    # a user's task files: their content (size, mtime) is part of the key
    prefix = tmp_path / "edits"
    path = tmp_path / "edits.train.jsonl"
    path.write_text('{"source": "a b", "target": "a c"}\n')
    with_task = dataclasses.replace(cfg, task_path=str(prefix))
    before = builder.fingerprint(with_task, "finetune-plan", tok)
    path.write_text('{"source": "a b", "target": "a c d"}\n')
    assert builder.fingerprint(with_task, "finetune-plan", tok) != before


def test_empty_split_is_kept(setup, tmp_path):
    cfg, _, tok = setup
    pairs = {"train": [([5, 6], [7, 1]), ([], [1])], "valid": []}
    stored = builder.stage_pairs(dataclasses.replace(cfg, seed=123), "pretrain", tok, pairs.__getitem__, tmp_path)
    assert _as_lists(stored["train"]) == pairs["train"] and len(stored["valid"]) == 0 and not stored["valid"]
