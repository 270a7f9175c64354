#!/usr/bin/env bash
# Multi-agent prediction (scene.max_targets) against the single-target model on procedural
# intersections, at the ablation's CPU scale and budget: 3 seeds per row, test metrics of the
# focal agent (comparable across rows), map + agents context, no auxiliary task.
#   bash experiments/vectornet/multi_agent.sh [RUNS_DIR]
set -euo pipefail
RUNS="${1:-runs/vectornet-multi-agent}"
COMMON=(--config smoke --config.num_train=512 --config.num_val=128 --config.num_test=256
        --config.loop.num_steps=400 --config.loop.eval_every=200 --config.loop.checkpoint_every=200
        --config.loop.num_devices=1 --config.model.context=map_agents --config.model.aux=false)
for seed in 0 1 2; do
  for k in 1 4; do
    jaxlab vectornet train "${COMMON[@]}" --workdir "$RUNS/targets$k-s$seed" --config.seed=$seed \
      --config.scene.max_targets=$k > /dev/null
  done
done
python - "$RUNS" <<'PY'
import sys
from jaxlab.vectornet import report
r = sys.argv[1]
print(report.ablation_table({f"max_targets {k}": [f"{r}/targets{k}-s{s}" for s in range(3)] for k in (1, 4)}))
PY
