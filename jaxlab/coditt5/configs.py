"""Configs of CoditT5: `get_config("smoke" | "default" | "paper")`."""

from __future__ import annotations

import dataclasses
from typing import Literal

from jaxlab.core.config import (
    LoopConfig,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    Probability,
    variants,
)


@dataclasses.dataclass
class ModelConfig:
    """T5 shape (see `models.T5Shape`; `vocab_size` is the tokenizer's budget)."""

    vocab_size: PositiveInt = 4000
    d_model: PositiveInt = 128
    num_heads: PositiveInt = 4
    d_kv: PositiveInt = 32
    d_ff: PositiveInt = 512
    num_encoder_layers: PositiveInt = 3
    num_decoder_layers: PositiveInt = 3
    feed_forward: Literal["relu", "gated-gelu"] = "relu"
    tie_embeddings: bool = True
    dropout_rate: Probability = 0.1
    num_buckets: PositiveInt = 32
    max_distance: PositiveInt = 128
    attention_scale: Literal["none", "sqrt"] = "sqrt"
    dtype: Literal["float32", "bfloat16"] = "float32"
    attention_vjp: Literal["hand", "autodiff"] = "hand"


@dataclasses.dataclass
class StageConfig:
    """One training stage (pretraining or fine-tuning): AdamW with linear warm-up and decay."""

    lr: PositiveFloat = 1e-3
    weight_decay: NonNegativeFloat = 0.01
    warmup_steps: NonNegativeInt = 50
    clip_norm: PositiveFloat = 1.0
    batch_size: PositiveInt = 32
    loop: LoopConfig = dataclasses.field(default_factory=lambda: LoopConfig(
        num_steps=1000, log_every=50, checkpoint_every=250, num_devices=1))


@dataclasses.dataclass
class CoditConfig:
    """Everything a CoditT5 run depends on.

    Attributes:
      seed: initialisation, data and dropout seed.
      task: the fine-tuning task (bugfix | comment | review).
      formats: output formats fine-tuned: 'plan' (edit plan <s> target, CoditT5) and/or 'plain'
        (the target only, a CodeT5-style generation model); both are needed for reranking.
      pretrain_objective: 'edit' (CoditT5's edit-aware noise), 'span' (T5 span corruption) or
        'none' (fine-tune from random initialisation).
      corpus: 'stdlib' (this interpreter's standard library) or 'jsonl' (`corpus_path`:
        CodeSearchNet jsonl(.gz) for pretraining).
      task_path: optional JSON-lines {source, context, target} files `train|valid|test` prefix
        (`<task_path>.train.jsonl` ...); empty: the task built from the corpus.
      tokenizer: 'word' (word-level with a character fallback) or 'sentencepiece' (BPE trained in
        memory with `sentencepiece`, byte fallback); both reserve the same separator, edit and
        sentinel ids (see `tokenizer.py`). `model.vocab_size` is the budget of either.
      example_store: 'tfds' (the training pairs of each stage prepared once as a TFDS array_record
        dataset keyed by a fingerprint of what they depend on, then read by random access; see
        `builder.py`) or 'memory' (built in memory by every action, no TFDS).
      data_dir: TFDS data directory ("": $JAXLAB_DATA_DIR or ~/.cache/jaxlab/tfds).
      max_files: stdlib files read (0: all); max_code_tokens: longest function kept.
      buckets: (source length, target length) pairs the batches are padded to.
      max_examples: cap on pretraining sequences (code + comments) and task training examples.
      eval_examples: test examples decoded by `evaluate`.
      quirk_len1_delete: reproduce the reference sampler's dropping of length-1 delete spans.
      beam_size / num_return: beam width at test (paper: 20) and hypotheses kept for reranking.
      alpha: length normalisation exponent of beam scores (1: mean log-likelihood).
      select: which checkpoint of each fine-tuned model `evaluate` and `generate` use: the one of
        lowest validation loss among the kept checkpoints (evaluated at each; see
        `core.train.restore_best`), of highest validation BLEU (the paper's early-stopping
        criterion: each kept checkpoint beam-searches up to `eval_examples` validation examples
        with `valid_beam` beams when selected), or the last.
      valid_beam: beam width of the validation decoding of `select="valid_bleu"` (paper: 5).
      init_from: a run directory: `finetune` starts from its `pretrain/` stage ("": this workdir's),
        `generate` uses its fine-tuned models.
      input: a JSON-lines {source, context} file for `generate`.
    """

    seed: int = 0
    task: Literal["bugfix", "comment", "review"] = "bugfix"
    formats: tuple[Literal["plan", "plain"], ...] = ("plan", "plain")
    pretrain_objective: Literal["edit", "span", "none"] = "edit"
    corpus: Literal["stdlib", "jsonl"] = "stdlib"
    corpus_path: str = ""
    task_path: str = ""
    tokenizer: Literal["word", "sentencepiece"] = "word"
    example_store: Literal["tfds", "memory"] = "tfds"
    data_dir: str = ""
    max_files: NonNegativeInt = 0
    max_code_tokens: PositiveInt = 64
    buckets: tuple[tuple[PositiveInt, PositiveInt], ...] = ((48, 48), (96, 128), (160, 224))
    max_examples: PositiveInt = 20000
    eval_examples: PositiveInt = 200
    eval_batch_size: PositiveInt = 50
    quirk_len1_delete: bool = False
    beam_size: PositiveInt = 5
    num_return: PositiveInt = 5
    alpha: NonNegativeFloat = 1.0
    select: Literal["valid_loss", "valid_bleu", "last"] = "valid_loss"
    valid_beam: PositiveInt = 5
    init_from: str = ""
    input: str = ""
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    pretrain: StageConfig = dataclasses.field(default_factory=StageConfig)
    finetune: StageConfig = dataclasses.field(default_factory=lambda: StageConfig(lr=5e-4))

    def validate(self) -> None:
        from jaxlab.core.config import ConfigError

        if not self.formats:
            raise ConfigError("config field 'formats' needs 'plan' and/or 'plain'")
        if self.num_return > self.beam_size:
            raise ConfigError(f"config field 'num_return' ({self.num_return}) exceeds 'beam_size' ({self.beam_size})")
        if self.corpus == "jsonl" and not self.corpus_path:
            raise ConfigError("config field 'corpus_path' is needed with corpus='jsonl'")
        if not self.buckets:
            raise ConfigError("config field 'buckets' needs at least one (source, target) length pair")


def _stage(steps: int, lr: float, batch: int, ckpt: int, warmup: int) -> StageConfig:
    # validation at every checkpoint, all kept: `select="valid_loss"` can take the argmin
    return StageConfig(lr=lr, batch_size=batch, warmup_steps=warmup, loop=LoopConfig(
        num_steps=steps, log_every=min(25, steps), checkpoint_every=ckpt, eval_every=ckpt,
        keep=-(-steps // ckpt), num_devices=1))


def _default() -> CoditConfig:
    return CoditConfig(pretrain=_stage(1500, 1e-3, 32, 250, 100), finetune=_stage(1500, 5e-4, 32, 250, 100))


def _smoke() -> CoditConfig:
    return CoditConfig(
        max_files=120, max_code_tokens=40, buckets=((96, 112),), max_examples=400, eval_examples=16,
        eval_batch_size=16, beam_size=3, num_return=3,
        model=ModelConfig(vocab_size=1500, d_model=32, num_heads=2, d_kv=16, d_ff=64, num_encoder_layers=1,
                          num_decoder_layers=1, dropout_rate=0.0),
        pretrain=_stage(12, 2e-3, 8, 6, 2), finetune=_stage(8, 2e-3, 8, 4, 2))


def _paper() -> CoditConfig:
    # CodeT5-base shapes (d 768, 12 + 12 layers, 12 heads, d_ff 3072, ReLU FF, 32,100 ids); the
    # paper's lr (2e-4 pretraining, 5e-5 fine-tuning), weight decay 0.01 and test beam 20; a BPE
    # vocabulary (SentencePiece) in place of CodeT5's byte-level BPE.
    return CoditConfig(
        tokenizer="sentencepiece", max_code_tokens=256, buckets=((128, 128), (256, 384), (512, 512)),
        max_examples=10 ** 6, eval_examples=10 ** 5, beam_size=20, num_return=20,
        model=ModelConfig(vocab_size=32100, d_model=768, num_heads=12, d_kv=64, d_ff=3072, num_encoder_layers=12,
                          num_decoder_layers=12, dtype="bfloat16"),
        pretrain=StageConfig(lr=2e-4, batch_size=64, warmup_steps=1000, loop=LoopConfig(
            num_steps=100000, log_every=100, checkpoint_every=2000)),
        finetune=StageConfig(lr=5e-5, batch_size=48, warmup_steps=500, loop=LoopConfig(
            num_steps=20000, log_every=100, checkpoint_every=2000)))


def get_config(variant: str = "default") -> CoditConfig:
    """CoditT5's config for `variant` in {"smoke", "default", "paper"}."""
    return variants({"smoke": _smoke, "default": _default, "paper": _paper}, variant)
