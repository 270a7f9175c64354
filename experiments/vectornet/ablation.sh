#!/usr/bin/env bash
# Context / auxiliary-task ablation on procedural intersections (the structure of the paper's
# Table 2 at CPU scale): 3 seeds per row, every run the same budget.
#   bash experiments/vectornet/ablation.sh [RUNS_DIR]
set -euo pipefail
RUNS="${1:-runs/vectornet-ablation}"
COMMON=(--config smoke --config.num_train=512 --config.num_val=128 --config.num_test=256
        --config.loop.num_steps=400 --config.loop.eval_every=200 --config.loop.checkpoint_every=200
        --config.loop.num_devices=1)
for seed in 0 1 2; do
  for row in none:false map_agents:false map_agents:true; do
    ctx="${row%%:*}"; aux="${row##*:}"
    jaxlab vectornet train "${COMMON[@]}" --workdir "$RUNS/$ctx-aux$aux-s$seed" --config.seed=$seed \
      --config.model.context=$ctx --config.model.aux=$aux > /dev/null
  done
done
python - "$RUNS" <<'PY'
import sys
from jaxlab.vectornet import report
r = sys.argv[1]
print(report.ablation_table({f"{c}, aux {a}": [f"{r}/{c}-aux{a}-s{s}" for s in range(3)]
                             for c, a in [("none", "false"), ("map_agents", "false"), ("map_agents", "true")]}))
PY
