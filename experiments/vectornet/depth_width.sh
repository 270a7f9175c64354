#!/usr/bin/env bash
# Depth/width of the polyline subgraph and the global graph (the rows of the paper's Table 3)
# on procedural intersections, at the CPU scale and budget of ablation.sh: 3 seeds per row,
# every run 400 steps, map + agents context with the auxiliary task.
#   bash experiments/vectornet/depth_width.sh [RUNS_DIR]
set -euo pipefail
RUNS="${1:-runs/vectornet-depth-width}"
COMMON=(--config smoke --config.num_train=512 --config.num_val=128 --config.num_test=256
        --config.loop.num_steps=400 --config.loop.eval_every=200 --config.loop.checkpoint_every=200
        --config.loop.num_devices=1)
ROWS=(1x64-1x64 3x64-1x64 3x128-1x64 3x64-2x64 3x64-2x256)   # subgraph depth x width - global depth x width
for seed in 0 1 2; do
  for row in "${ROWS[@]}"; do
    sub="${row%%-*}"; glob="${row##*-}"
    jaxlab vectornet train "${COMMON[@]}" --workdir "$RUNS/$row-s$seed" --config.seed=$seed \
      --config.model.subgraph_depth="${sub%%x*}" --config.model.subgraph_width="${sub##*x}" \
      --config.model.global_depth="${glob%%x*}" --config.model.global_width="${glob##*x}" > /dev/null
  done
done
python - "$RUNS" "${ROWS[@]}" <<'PY'
import json, pathlib, sys
from jaxlab.vectornet import report
r, rows = sys.argv[1], sys.argv[2:]
groups = {}
for row in rows:
    sub, glob = row.split("-")
    params = json.loads((pathlib.Path(r) / f"{row}-s0" / "summary.json").read_text())["results"].get("num_params")
    groups[f"subgraph {sub}, global {glob} ({params:,} parameters)" if params else row] = [
        f"{r}/{row}-s{s}" for s in range(3)]
print(report.ablation_table(groups))
PY
