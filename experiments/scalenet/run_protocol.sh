#!/usr/bin/env bash
# The search protocol of experiments/scalenet/README.md ("Search protocol", issue 19):
# one super-supernet of the cpu_search space, then
#   * joint MCEA (seed 0) and the one-shot-per-budget search;
#   * the decoupled (base-then-scale) search with the GA and with random search of the
#     same number of evaluations, 3 search seeds each;
#   * families retrained from scratch with 3 seeds: the joint family S0-S3, its
#     extrapolated S4 and its searched S4 ("above"), compound scaling matched to its
#     MACs, and the decoupled (GA) and per-budget families S0-S3.
# Workdirs go under $RUNS (default runs/scalenet_protocol); two chains use the two cores.
# Then: python experiments/scalenet/report.py --protocol $RUNS
set -euo pipefail
RUNS=${RUNS:-runs/scalenet_protocol}
CFG=experiments/scalenet/configs/cpu_search.py
J="python -m jaxlab scalenet"
S="--config.search.supernet_dir=$RUNS/hier"
$J train-supernet --config $CFG:supernet --workdir $RUNS/hier
( $J search --config $CFG:joint --workdir $RUNS/joint_0 $S
  $J search --config $CFG:joint --workdir $RUNS/per_budget $S --config.search.mode=per_budget ) &
( for seed in 0 1 2; do
    $J search --config $CFG:decoupled --workdir $RUNS/decoupled_$seed $S --config.seed=$seed
    $J search --config $CFG:decoupled --workdir $RUNS/random_$seed $S --config.seed=$seed \
      --config.search.proposal=random
  done ) &
wait
retrain() {  # family-dir stages compound seed
  $J retrain --config $CFG:joint --workdir $RUNS/rt_$1_$4 --config.retrain.search_dir=$RUNS/$1 \
    --config.retrain.stages=$2 --config.retrain.compound=$3 --config.seed=$4
}
( for seed in 0 1 2; do retrain joint_0 0,1,2,3,4 true $seed; done ) &
( for seed in 0 1 2; do retrain decoupled_0 0,1,2,3 false $seed; retrain per_budget 0,1,2,3 false $seed; done ) &
wait
