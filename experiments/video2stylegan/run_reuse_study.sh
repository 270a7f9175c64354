#!/usr/bin/env bash
# Experiment 2's trained baseline: the encoder trained per frame (encoder.reuse=false) against the
# one trained with temporal reuse, the same generator, losses and seeds; every encoder is
# evaluated per frame and with reuse (pixel loss only: no auxiliary nets needed).
#
#   bash experiments/video2stylegan/run_reuse_study.sh GEN_RUN OUT [SEEDS...]
#   python experiments/video2stylegan/encoder_table.py --cross reuse=OUT/reuse-s0,... per_frame=OUT/per_frame-s0,...
#
# GEN_RUN: a run whose generator/ was trained with the flags in $S below; OUT: a new folder.
# EXTRA_FLAGS (environment): more config flags for train-encoder.
set -euo pipefail
GEN=$1 OUT=$2
shift 2
SEEDS=("${@:-0 1 2}")
read -r -a SEEDS <<< "${SEEDS[*]}"
S="--config.gan.loop.num_steps=600 --config.gan.loop.checkpoint_every=100 ${EXTRA_FLAGS:-}"
for seed in "${SEEDS[@]}"; do
  for name in reuse per_frame; do
    wd="$OUT/$name-s$seed"
    mkdir -p "$wd"
    [ -d "$wd/generator" ] || cp -r "$GEN/generator" "$wd/generator"
    reuse=true; [ "$name" = reuse ] || reuse=false
    jaxlab video2stylegan train-encoder --config default --workdir "$wd" --config.seed="$seed" $S \
      --config.encoder.reuse="$reuse"
    jaxlab video2stylegan evaluate --workdir "$wd"
  done
done
