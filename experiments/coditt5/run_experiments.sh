#!/usr/bin/env bash
# Experiments 1-3 of experiments/coditt5/README.md at a CPU scale: edit-aware (CoditT5) vs span
# (T5) pretraining, each followed by edit-plan and plain fine-tuning on one task (review by
# default; TASK=bugfix|comment picks another), then beam search, metrics and reranking; 3 seeds,
# paired by seed (same task split, same test set).
#
#   bash experiments/coditt5/run_experiments.sh OUT [SEEDS...]     # default seeds: 0 1 2
#   TASK=bugfix bash experiments/coditt5/run_experiments.sh OUT    # runs OUT/bugfix-<objective>-s<seed>
#
# MAX_CODE_TOKENS=N (default 24) keeps functions of at most N code tokens;
# OBJECTIVES="edit" runs one pretraining objective only; PRETRAINED=OUT/bugfix fine-tunes from the
# pretraining (and tokenizer) of the runs PRETRAINED-<objective>-s<seed> instead of pretraining again.
#   python experiments/coditt5/report.py OUT                       # tables with 95% intervals
#
# A finished stage is not rerun (the actions resume from their checkpoints).
set -euo pipefail
OUT="${1:?usage: run_experiments.sh OUT [SEEDS...]}"; shift
SEEDS=("${@:-0 1 2}"); SEEDS=(${SEEDS[*]})
TASK="${TASK:-review}"
MAX_CODE_TOKENS="${MAX_CODE_TOKENS:-24}"
OBJECTIVES=(${OBJECTIVES:-edit span})
PRETRAINED="${PRETRAINED:-}"
SCALE=(
  --config default --config.task=$TASK --config.max_code_tokens=$MAX_CODE_TOKENS
  "--config.buckets=((48,64),(80,112))"
  --config.model.vocab_size=2000 --config.model.d_model=64 --config.model.num_heads=4
  --config.model.d_kv=16 --config.model.d_ff=256
  --config.model.num_encoder_layers=2 --config.model.num_decoder_layers=2
  --config.pretrain.lr=2e-3 --config.pretrain.loop.num_steps=1500
  --config.finetune.lr=1e-3 --config.finetune.loop.num_steps=1000
  --config.pretrain.loop.eval_every=250 --config.finetune.loop.eval_every=250
  --config.pretrain.loop.checkpoint_every=250 --config.finetune.loop.checkpoint_every=250
  --config.finetune.loop.keep=8 --config.eval_examples=1000
)
for seed in "${SEEDS[@]}"; do
  for obj in "${OBJECTIVES[@]}"; do
    W="$OUT/$TASK-$obj-s$seed"
    echo "== $W"
    INIT=()
    if [ -n "$PRETRAINED" ]; then
      INIT=(--config.init_from="$PRETRAINED-$obj-s$seed")
    else
      jaxlab coditt5 pretrain "${SCALE[@]}" --config.pretrain_objective=$obj --config.seed=$seed --workdir "$W"
    fi
    jaxlab coditt5 finetune "${SCALE[@]}" --config.pretrain_objective=$obj --config.seed=$seed "${INIT[@]}" \
      --workdir "$W"
    jaxlab coditt5 evaluate --workdir "$W"
  done
done
