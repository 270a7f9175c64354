#!/usr/bin/env bash
# Experiments 2 and 3: the encoder trained with the pixel + identity loss ("l2id") and with the
# landmark and mesh terms added ("lmk"), three seeds each, against one frozen generator; every
# encoder is evaluated per frame and with reuse, scored by auxiliary nets of another seed.
#
#   bash experiments/video2stylegan/run_encoder_study.sh GEN_RUN AUX_RUN JUDGE_RUN OUT [SEEDS...]
#
# GEN_RUN: a run whose generator/ was trained with the flags in $S below; AUX_RUN: the
# train-aux run the losses use; JUDGE_RUN: a train-aux run of another seed; OUT: a new folder.
# EXTRA_FLAGS (environment): more config flags for train-encoder, the generator's among them.
set -euo pipefail
GEN=$1 AUX=$2 JUDGE=$3 OUT=$4
shift 4
SEEDS=("${@:-0 1 2}")
read -r -a SEEDS <<< "${SEEDS[*]}"
S="--config.gan.loop.num_steps=600 --config.gan.loop.checkpoint_every=100 ${EXTRA_FLAGS:-}"
# reconstruction: weights chosen so that each term starts near the pixel loss (landmark ~0.005,
# mesh ~0.025, identity ~0.8 against MSE ~0.016 after 60 steps)
declare -A LOSS=(
  [l2id]="--config.encoder.identity=0.1"
  [lmk]="--config.encoder.identity=0.1 --config.encoder.landmark=2 --config.encoder.mesh=0.5"
)
for seed in "${SEEDS[@]}"; do
  for name in l2id lmk; do
    wd="$OUT/$name-s$seed"
    mkdir -p "$wd"
    [ -d "$wd/generator" ] || cp -r "$GEN/generator" "$wd/generator"
    jaxlab video2stylegan train-encoder --config default --workdir "$wd" --config.seed="$seed" $S \
      --config.encoder.aux_from="$AUX" ${LOSS[$name]}
    jaxlab video2stylegan evaluate --workdir "$wd" --judge "$JUDGE"
  done
done
