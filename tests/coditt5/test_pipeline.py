"""Every smoke action from Python on a fresh workdir; kill + resume equals an uninterrupted run;
data formats: malformed lines named, CodeSearchNet jsonl.gz read; bucketed batches."""

import dataclasses
import gzip
import json

import jax
import numpy as np
import pytest

from jaxlab import coditt5
from jaxlab.coditt5 import data, rerank, training
from jaxlab.coditt5.metrics import corpus_metrics
from jaxlab.core import train as train_lib
from jaxlab.core.errors import DataFormatError


def _smoke(**kw):
    cfg = coditt5.get_config("smoke")
    cfg = dataclasses.replace(cfg, max_files=60, max_examples=200, eval_examples=4, eval_batch_size=4, **kw)
    return cfg


def test_every_action_of_the_smoke_config(tmp_path):
    cfg = _smoke()
    run = tmp_path / "run"
    pre = coditt5.pretrain(cfg, run)
    assert pre["steps"] == cfg.pretrain.loop.num_steps and np.isfinite(pre["valid_loss"])
    fin = coditt5.finetune(cfg, run)
    assert set(fin) == {"plan", "plain"}
    ev = coditt5.evaluate(None, run)
    for k in ("plan", "plain", "rerank_plan", "rerank_plain"):
        assert 0 <= ev[k]["xmatch"] <= 100 and ev[k]["count"] == ev["test_examples"] > 0
    for fmt in ("plan", "plain"):  # the checkpoint of lowest validation loss, checkpoints 4 and 8
        rows = [json.loads(line) for line in (run / f"finetune-{fmt}" / "metrics.jsonl").read_text().splitlines()]
        losses = {r["step"]: r["eval_loss"] for r in rows if "eval_loss" in r}
        assert sorted(losses) == [4, 8] and ev[fmt]["checkpoint_step"] == min(losses, key=losses.get)
    assert (run / "figures" / "training.png").exists()
    # selection on validation BLEU: every kept checkpoint beam-searches the validation examples
    by_bleu = coditt5.evaluate(None, run, select="valid_bleu")
    loaded = coditt5.load(run)
    functions = training.load_functions(cfg)
    valid = training.task_examples(cfg, functions, "valid")[:cfg.eval_examples]
    for fmt in ("plan", "plain"):
        cand = by_bleu[fmt]["selection"]["candidates"]
        assert sorted(cand) == [4, 8] and by_bleu[fmt]["checkpoint_step"] == max(sorted(cand), key=cand.get)
        # the last checkpoint's score, recomputed from the loaded run's final parameters
        h, _ = rerank.decode_examples(loaded.state[f"finetune-{fmt}"].params, loaded.extras["shape"],
                                      loaded.extras["tokenizer"], valid, fmt, src_len=cfg.buckets[-1][0],
                                      max_len=cfg.buckets[-1][1], beam_size=cfg.valid_beam, alpha=cfg.alpha,
                                      batch_size=cfg.eval_batch_size)
        want = corpus_metrics([e["source"] for e in valid], [b[0] for b in h], [e["target"] for e in valid])
        assert cand[8] == pytest.approx(want["bleu"], abs=1e-9)
    inp = tmp_path / "in.jsonl"
    inp.write_text(json.dumps({"source": "def f ( a ) : §NL §IN return a < 1 §NL", "context": ""}) + "\n")
    gen = coditt5.generate(dataclasses.replace(cfg, input=str(inp), init_from=str(run)), tmp_path / "gen")
    assert gen["count"] == 1 and len(gen["generations"][0]["outputs"]) == cfg.num_return
    loaded = coditt5.load(run)
    assert set(loaded.state) == {"pretrain", "finetune-plan", "finetune-plain"}


def test_killed_and_resumed_pretraining_equals_uninterrupted(tmp_path):
    cfg = _smoke()
    functions = training.load_functions(cfg)
    tok = training.get_tokenizer(cfg, functions, tmp_path)
    shape = training.make_shape(cfg, len(tok))
    buckets = data.Buckets(training.pretrain_pairs(cfg, functions, tok), cfg.buckets, 4)
    step_fn = train_lib.make_train_step(training.make_loss_fn(shape))
    loop = dataclasses.replace(cfg.pretrain.loop, num_steps=4, checkpoint_every=2, log_every=2)

    def fit(d, stop=None):
        state = training.init_state(cfg, shape, cfg.pretrain)
        return train_lib.fit(state, step_fn, lambda s: buckets.batch(s, cfg.seed), loop=loop, workdir=d,
                             seed=cfg.seed, stop_after=stop)[0]

    ref = fit(tmp_path / "a")
    fit(tmp_path / "b", stop=2)
    resumed = fit(tmp_path / "b")
    for x, y in zip(jax.tree.leaves(ref.params), jax.tree.leaves(resumed.params)):
        assert np.array_equal(np.asarray(x), np.asarray(y))


def test_buckets_are_pure_and_padded_to_their_lengths():
    pairs = [([5] * n, [6] * (n + 1)) for n in range(1, 30)]
    b = data.Buckets(pairs, ((8, 8), (32, 32)), 4)
    shapes = set()
    for s in range(20):
        x, y = b.batch(s, 0), b.batch(s, 0)
        assert all(np.array_equal(x[k], y[k]) for k in x)
        shapes.add((x["src"].shape, x["labels"].shape))
    assert shapes == {((4, 8), (4, 8)), ((4, 32), (4, 32))}
    assert b.dropped == 0 and len(b) == 29


def test_malformed_jsonl_names_the_line(tmp_path):
    p = tmp_path / "x.jsonl"
    p.write_text('{"source": "a b", "target": "a c"}\n\n{"source": "a", "target": 3}\n')
    with pytest.raises(DataFormatError, match=r"x.jsonl:3: field 'target'"):
        data.read_jsonl_examples(p)
    p.write_text('{"source": "a b", "target": "a c"}\nnot json\n')
    with pytest.raises(DataFormatError, match=r"x.jsonl:2: not a JSON object"):
        data.read_jsonl_examples(p)


def test_codesearchnet_jsonl_gz(tmp_path):
    rows = [{"repo": "r", "path": "A.java", "func_name": "A.f", "original_string": "int f(){return 1;}",
             "language": "java", "code": "int f(){return 1;}", "code_tokens": ["int", "f", "(", ")", "{", "return",
                                                                                 "1", ";", "}"],
             "docstring": "Returns one.", "docstring_tokens": ["Returns", "one", "."], "sha": "0", "url": "u",
             "partition": "valid"}]
    p = tmp_path / "java_valid_0.jsonl.gz"
    with gzip.open(p, "wt") as f:
        f.write("\n".join(json.dumps(r) for r in rows) + "\n")
    (fn,) = data.read_codesearchnet(p)
    assert fn["code"][:2] == ["int", "f"] and fn["doc"] == ["Returns", "one", "."] and fn["split"] == "valid"
    with gzip.open(p, "wt") as f:
        f.write(json.dumps({**rows[0], "code_tokens": "int f"}) + "\n")
    with pytest.raises(DataFormatError, match=r"java_valid_0.jsonl.gz:1: field 'code_tokens'"):
        data.read_codesearchnet(p)


def test_bugfix_mutations_restore_the_original():
    code = "def f ( a , b ) : §NL §IN x = g ( a , b ) §NL y = x + 1 §NL return y < 3 §NL".split()
    rng = np.random.default_rng(0)
    kinds = set()
    for _ in range(60):
        ex = data.make_bugfix(code, rng)
        assert ex["target"] == code and ex["source"] != code
        kinds.add(ex["kind"])
    assert kinds == {"flip", "off_by_one", "swap", "drop"}


def test_bucketed_steps_compile_once_per_bucket():
    from jaxlab.coditt5.models import SHAPES, T5Shape

    shape = T5Shape(vocab_size=20, dropout_rate=0.0, **{**SHAPES["tiny"], "num_encoder_layers": 1,
                                                        "num_decoder_layers": 1})
    traces = []
    loss_fn = training.make_loss_fn(shape)

    def counted(params, batch, key):
        traces.append(batch["src"].shape)
        return loss_fn(params, {}, batch, key)[0]

    f = jax.jit(counted)
    pairs = [([5] * n + [1], [6] * n + [1]) for n in range(1, 20)]
    b = data.Buckets(pairs, ((8, 8), (24, 24)), 2)
    from jaxlab.coditt5.models import T5

    params = jax.jit(lambda: T5(shape).init(jax.random.key(0), np.ones((1, 8), np.int32),
                                            np.ones((1, 8), np.int32))["params"])()
    for s in range(12):
        assert np.isfinite(float(f(params, b.batch(s, 0), jax.random.key(s))))
    assert len(traces) == 2
