#!/usr/bin/env bash
# The search protocol of experiments/scalenet/README.md ("Search protocol", issue 19):
# one super-supernet of the cpu_search space, then
#   * joint MCEA and its random-search baseline, 3 search seeds each (same evaluations);
#   * the decoupled (base-then-scale) and one-shot-per-budget searches;
#   * every family retrained from scratch with 3 seeds: the joint family S0-S3, its
#     extrapolated S4 and its searched S4 ("above"), compound scaling matched to its
#     MACs, and the random, decoupled and per-budget families S0-S3.
# Workdirs go under $RUNS (default runs/scalenet_protocol); two chains use the two cores.
# Then: python experiments/scalenet/report.py --protocol $RUNS
set -euo pipefail
RUNS=${RUNS:-runs/scalenet_protocol}
CFG=experiments/scalenet/configs/cpu_search.py
J="python -m jaxlab scalenet"
S="--config.search.supernet_dir=$RUNS/hier"
$J train-supernet --config $CFG:joint --workdir $RUNS/hier
( for seed in 0 1 2; do $J search --config $CFG:joint  --workdir $RUNS/joint_$seed  $S --config.seed=$seed; done
  $J search --config $CFG:decoupled --workdir $RUNS/decoupled $S ) &
( for seed in 0 1 2; do $J search --config $CFG:random --workdir $RUNS/random_$seed $S --config.seed=$seed; done
  $J search --config $CFG:joint --workdir $RUNS/per_budget $S --config.search.mode=per_budget ) &
wait
retrain() {  # family-dir stages compound seed
  $J retrain --config $CFG:joint --workdir $RUNS/rt_$1_$4 --config.retrain.search_dir=$RUNS/$1 \
    --config.retrain.stages=$2 --config.retrain.compound=$3 --config.seed=$4
}
( for seed in 0 1 2; do retrain joint_0 0,1,2,3,4 true $seed; done ) &
( for seed in 0 1 2; do
    retrain random_0 0,1,2,3 false $seed; retrain decoupled 0,1,2,3 false $seed; retrain per_budget 0,1,2,3 false $seed
  done ) &
wait
