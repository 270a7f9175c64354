#!/usr/bin/env bash
# Every experiment of experiments/scalenet/README.md (about an hour on a shared 2-core
# CPU). Workdirs go under $RUNS (default runs/scalenet). Chains A and B are independent.
set -euo pipefail
RUNS=${RUNS:-runs/scalenet}
CFG=experiments/scalenet/configs/cpu_tiny.py
J="python -m jaxlab scalenet"
S="--config.search.eval_batch=100 --config.search.supernet_dir=$RUNS/hier"
# hierarchical-sampling super-supernet
$J train-supernet --config $CFG:hierarchical --workdir $RUNS/hier
# chain A: joint search (MCEA), retraining of the searched and compound families, decoupled search
( $J search  --config $CFG:hierarchical --workdir $RUNS/joint $S
  $J retrain --config $CFG:hierarchical --workdir $RUNS/joint $S
  $J search  --config $CFG:decoupled    --workdir $RUNS/decoupled $S ) &
# chain B: the uniform-sampling ablation, then the rank study (Kendall tau) on the hierarchical supernet
( $J train-supernet --config $CFG:uniform --workdir $RUNS/unif
  $J rank --config $CFG:hierarchical --workdir $RUNS/rank --config.search.supernet_dir=$RUNS/hier \
    --config.data.num_val=1200 --config.data.num_test=1200 --config.search.eval_batch=1200 \
    --config.rank.num_archs=16 ) &
wait
