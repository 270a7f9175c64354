"""Building the data of a run, the T5 train state, the loss, and the validation loss.

Pretraining pairs (spec 2.2): from every training function, its code (code noise) and its
docstring (comment noise): `edit` -> (corrupted, `plan(corrupted -> original) <s> original`),
`span` -> T5's (inputs with sentinels, sentinel + span targets). Fine-tuning pairs:
`source </s> context` -> `plan <s> target` ('plan') or `target` ('plain').
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxlab.coditt5 import corruption, data, editplan
from jaxlab.coditt5.configs import CoditConfig
from jaxlab.coditt5.models import T5, T5Shape, shifted_right
from jaxlab.coditt5.tokenizer import (
    PAD,
    SentencePieceTokenizer,
    Tokenizer,
    load_tokenizer,
    train_sentencepiece,
    train_tokenizer,
)
from jaxlab.core import optim, runtime
from jaxlab.core import train as train_lib

__all__ = ["load_functions", "get_tokenizer", "pretrain_pairs", "task_examples", "task_pairs", "stage_pairs",
           "make_shape",
           "init_state", "token_loss", "head_token_loss", "compiler_options", "make_loss_fn", "make_eval_fn",
           "NUM_SENTINELS"]

PRETRAIN_STREAM, INIT_STREAM = 201, 202
NUM_SENTINELS = 32


def load_functions(config: CoditConfig) -> list[dict]:
    """The corpus of functions: the standard library, or CodeSearchNet lines from `corpus_path`."""
    if config.corpus == "jsonl":
        return [f for f in data.read_codesearchnet(config.corpus_path) if len(f["code"]) <= config.max_code_tokens]
    return list(_stdlib_functions(config.max_files, config.max_code_tokens))


@functools.lru_cache(maxsize=4)
def _stdlib_functions(max_files: int, max_code_tokens: int) -> tuple[dict, ...]:
    """The parsed standard library, once per process and setting (the dicts are shared: read only)."""
    return tuple(data.stdlib_functions(max_files, max_code_tokens=max_code_tokens))


def get_tokenizer(config: CoditConfig, functions: list[dict] | Callable[[], list[dict]], workdir: pathlib.Path
                  ) -> Tokenizer | SentencePieceTokenizer:
    """The run's tokenizer: read from `workdir/tokenizer.json` (or `init_from`'s), else trained on the
    training functions (code and docstrings) and the task's training examples, and saved
    (`functions` may be a function returning them, called only then).

    `config.tokenizer` picks the kind ('word' or 'sentencepiece'); a saved tokenizer of the other
    kind is an error naming the file.
    """
    from jaxlab.core.config import ConfigError

    for d in ([pathlib.Path(config.init_from)] if config.init_from else []) + [workdir]:
        if (d / "tokenizer.json").exists():
            tok = load_tokenizer(d / "tokenizer.json")
            if tok.kind != config.tokenizer:
                raise ConfigError(f"{d / 'tokenizer.json'} holds a {tok.kind!r} tokenizer but config field "
                                  f"'tokenizer' is {config.tokenizer!r}")
            return tok
    if callable(functions):  # a lazy corpus: loaded only when a tokenizer has to be trained
        functions = functions()
    seqs = [f["code"] for f in functions if f["split"] == "train"] + [f["doc"] for f in functions
                                                                       if f["split"] == "train"]
    for ex in task_examples(config, functions, "train"):
        seqs += [ex["source"], ex["context"], ex["target"]]
    train = train_sentencepiece if config.tokenizer == "sentencepiece" else train_tokenizer
    tok = train(seqs, config.model.vocab_size, num_sentinels=NUM_SENTINELS)
    tok.save(workdir / "tokenizer.json")
    return tok


def pretrain_pairs(config: CoditConfig, functions: list[dict], tok: Tokenizer, split: str = "train") -> list:
    """Encoded pretraining (source ids, target ids) pairs of one split (see module docstring)."""
    rng = np.random.default_rng([config.seed, PRETRAIN_STREAM, ("train", "valid", "test").index(split)])
    sentinel = lambda i: tok.pieces[tok.sentinel(i)]
    pairs = []
    for f in functions:
        if f["split"] != split:
            continue
        for seq, noise in ((f["code"], corruption.CODE_NOISE), (f["doc"], corruption.NL_NOISE)):
            if len(seq) < 2:
                continue
            if config.pretrain_objective == "edit":
                out = corruption.edit_corrupt(seq, noise, rng, sentinel=sentinel,
                                              quirk_len1_delete=config.quirk_len1_delete)
                if out is None:
                    continue
                src, tgt = out[0], editplan.build_output(out[0], seq)
            else:
                out = corruption.t5_span_corrupt(seq, rng, sentinel=sentinel)
                if out is None:
                    continue
                src, tgt = out
            pairs.append(data.encode_example(tok, src, [], tgt))
            if len(pairs) >= config.max_examples:
                return pairs
    return pairs


def task_examples(config: CoditConfig, functions: list[dict], split: str) -> list[dict]:
    """Task examples of a split: from `task_path` JSON lines when given, else built from the corpus."""
    if config.task_path:
        return data.read_jsonl_examples(f"{config.task_path}.{split}.jsonl")
    exs = data.make_task(functions, config.task, split, config.seed)
    return exs[:config.max_examples] if split == "train" else exs


def task_pairs(examples: list[dict], tok: Tokenizer, fmt: str) -> list:
    """Encoded fine-tuning pairs: outputs `plan <s> target` ('plan') or `target` ('plain')."""
    out = []
    for ex in examples:
        y = editplan.build_output(ex["source"], ex["target"]) if fmt == "plan" else ex["target"]
        out.append(data.encode_example(tok, ex["source"], ex["context"], y))
    return out


def stage_pairs(config: CoditConfig, stage: str, tok, make: Callable[[str], list]) -> dict[str, Sequence]:
    """`{"train", "valid"}` pairs of a stage ('pretrain', 'finetune-plan', 'finetune-plain'), `make(split)`
    building one split: through the fingerprinted TFDS store (`builder.stage_pairs`, built once) or,
    with `example_store='memory'`, in memory."""
    if config.example_store == "memory":
        return {s: make(s) for s in ("train", "valid")}
    from jaxlab.coditt5 import builder

    return builder.stage_pairs(config, stage, tok, make, config.data_dir or None)


def make_shape(config: CoditConfig, vocab_size: int | None = None) -> T5Shape:
    m = config.model
    fields = {f.name: getattr(m, f.name) for f in dataclasses.fields(m)}
    if vocab_size is not None:
        fields["vocab_size"] = vocab_size
    return T5Shape(**fields)


@functools.lru_cache(maxsize=8)
def _init_fn(shape: T5Shape, src_len: int, tgt_len: int):
    """`key -> params` of `shape`, compiled once per shape (eager `init` compiles op by op)."""
    return jax.jit(lambda key: T5(shape).init(key, jnp.ones((1, src_len), jnp.int32),
                                              jnp.ones((1, tgt_len), jnp.int32))["params"])


def init_state(config: CoditConfig, shape: T5Shape, stage) -> train_lib.TrainState:
    """A fresh train state of `shape` with AdamW (warm-up + cosine decay) for `stage` (a StageConfig)."""
    ls, lt = config.buckets[0]
    params = _init_fn(shape, ls, lt)(jax.random.fold_in(jax.random.key(config.seed), INIT_STREAM))
    sched = optim.warmup_cosine(stage.lr, stage.warmup_steps, max(stage.loop.num_steps, stage.warmup_steps + 1))
    tx = optax.chain(optax.clip_by_global_norm(stage.clip_norm), optax.adamw(sched, weight_decay=stage.weight_decay))
    return train_lib.TrainState.create(params=params, tx=tx)


def token_loss(logits, labels):
    """`(summed cross-entropy, correct tokens, tokens)` over the labels that are not pad.

    Written for XLA:CPU, where this `[B, T, V]` head is a large part of a small T5's step:
    the label logit is picked with an iota comparison, so its gradient is one select
    instead of a scatter into a zeroed `[B, T, V]` array, and a token counts as correct
    when its label logit equals the row maximum (the max the softmax needs anyway),
    instead of an arg-max, a variadic reduction that took a fifth of the step. A label tied
    with another maximal logit counts as correct.
    """
    logits = logits.astype(jnp.float32)
    z = logits - jax.lax.stop_gradient(jnp.max(logits, -1, keepdims=True))
    hit = jax.lax.broadcasted_iota(jnp.int32, z.shape, z.ndim - 1) == labels[..., None]
    z_label = jnp.sum(jnp.where(hit, z, 0.0), -1)
    ce = jnp.log(jnp.sum(jnp.exp(z), -1)) - z_label
    valid = (labels != PAD).astype(jnp.float32)
    return jnp.sum(ce * valid), jnp.sum((z_label >= 0).astype(jnp.float32) * valid), jnp.sum(valid)


def _head_loss_values(features, head, labels):
    logits = features @ head.T
    row_max = jnp.max(logits, -1, keepdims=True)
    e = jnp.exp(logits - row_max)
    total_e = jnp.sum(e, -1)
    label_logit = jnp.take_along_axis(logits, labels[..., None], -1)[..., 0]
    valid = (labels != PAD).astype(jnp.float32)
    ce = jnp.log(total_e) + row_max[..., 0] - label_logit
    sums = (jnp.sum(ce * valid), jnp.sum((label_logit >= row_max[..., 0]).astype(jnp.float32) * valid),
            jnp.sum(valid))
    return sums, e, total_e, valid


@jax.custom_vjp
def head_token_loss(features, head, labels):
    """`token_loss(features @ head.T, labels)` with a hand-written VJP: the tied output layer
    and the cross-entropy in one function.

    `features [..., D]` (float32, the decoder output already scaled as the head takes it),
    `head [V, D]` (the embedding for tied heads). The forward pass picks the label logit with
    a gather and keeps `exp(logits - max)`; the backward pass forms the logits' gradient
    `valid (softmax - onehot)` from it in one pass (no second exponential) and multiplies it
    by `head` for the features and by the small transposed `features` for the head (XLA
    otherwise transposes the whole `[..., V]` gradient). Reverse mode only (a
    `custom_vjp`): `make_loss_fn(..., fused_head=False)` for forward mode.
    """
    return _head_loss_values(features, head, labels)[0]


def _head_fwd(features, head, labels):
    sums, e, total_e, valid = _head_loss_values(features, head, labels)
    return sums, (features, head, labels, e, total_e, valid)


def _head_bwd(res, cotangents):
    features, head, labels, e, total_e, valid = res
    scale = (cotangents[0] * valid)[..., None]
    hit = jax.lax.broadcasted_iota(jnp.int32, e.shape, e.ndim - 1) == labels[..., None]
    d_logits = scale * (e / total_e[..., None] - hit.astype(e.dtype))
    d_features = d_logits @ head
    flat_t = jax.lax.optimization_barrier(features.reshape(-1, features.shape[-1]).T)
    d_head = jax.lax.optimization_barrier(flat_t @ d_logits.reshape(-1, d_logits.shape[-1])).T
    return d_features, d_head, None


head_token_loss.defvjp(_head_fwd, _head_bwd)


def compiler_options() -> dict | None:
    """XLA options of the training and validation steps: YNNPACK also runs the reductions on
    the CPU (the row maxima and sums over the vocabulary and the attention keys; see
    `jaxlab.core.runtime`)."""
    return runtime.cpu_compiler_options(reductions=True)


def make_loss_fn(shape: T5Shape, fused_head: bool = True):
    """Teacher-forced token cross-entropy (pads ignored), with dropout. `fused_head` (tied
    heads only): the output layer and the loss through `head_token_loss`'s hand-written VJP
    (same values and gradients); False differentiates `token_loss` of the logits instead,
    which forward-mode differentiation needs."""
    model = T5(shape)
    fused = fused_head and shape.tie_embeddings

    def loss_fn(params, extra, batch, key):
        del extra
        args = (batch["src"], shifted_right(batch["labels"], PAD))
        if fused:
            features = model.apply({"params": params}, *args, deterministic=False, rngs={"dropout": key},
                                   method=T5.head_features)
            total, correct, n = head_token_loss(features, params["shared"]["embedding"], batch["labels"])
        else:
            logits = model.apply({"params": params}, *args, deterministic=False, rngs={"dropout": key})
            total, correct, n = token_loss(logits, batch["labels"])
        return total / jnp.maximum(n, 1.0), ({"token_accuracy": correct / jnp.maximum(n, 1.0)}, None)

    return loss_fn


def make_eval_fn(shape: T5Shape, buckets: data.Buckets, max_batches: int = 8):
    """`state -> {"loss", "token_accuracy"}` over up to `max_batches` fixed validation batches per bucket."""
    model = T5(shape)

    @functools.partial(jax.jit, compiler_options=compiler_options())
    def sums(params, batch):
        logits = model.apply({"params": params}, batch["src"], shifted_right(batch["labels"], PAD))
        return token_loss(logits, batch["labels"])

    fixed = []
    for b, members in enumerate(buckets.members):
        for i in range(0, min(len(members), max_batches * buckets.batch_size), buckets.batch_size):
            idx = members[i:i + buckets.batch_size]
            idx = idx + [idx[0]] * (buckets.batch_size - len(idx)) if idx else idx
            if idx:
                batch = buckets.pad(idx, b)
                if len(members[i:i + buckets.batch_size]) < buckets.batch_size:  # repeated rows: mask them
                    batch["labels"][len(members[i:i + buckets.batch_size]):] = PAD
                fixed.append(batch)

    def eval_fn(state) -> dict:
        tot = np.zeros(3)
        for batch in fixed:
            tot += np.asarray(jax.device_get(sums(state.params, batch)))
        return {"loss": tot[0] / max(tot[2], 1), "token_accuracy": tot[1] / max(tot[2], 1)}

    return eval_fn
