#!/usr/bin/env bash
# VectorNet against the baselines on procedural intersections, at the scale and budget of
# ablation.sh (3 seeds; each seed has its own scenes, shared by every model of that seed):
# the LSTM encoder-decoder and the rendering ConvNet (ResNet-18 on a 64 x 64 bird's-eye
# raster, Table 4) trained the same way, and the nearest training scene (1 and 6 guesses)
# and constant velocity that every run's summary carries. Then Table 4: parameters and
# MACs per scene of the ConvNet's network and of VectorNet.
#   bash experiments/vectornet/baselines.sh VECTORNET_RUNS [RUNS_DIR]
# VECTORNET_RUNS: a directory with the paper-default VectorNet runs of depth_width.sh
# (3x64-1x64-s{0,1,2}), so VectorNet is not trained twice.
set -euo pipefail
VN="$1"
RUNS="${2:-runs/vectornet-baselines}"
COMMON=(--config smoke --config.num_train=512 --config.num_val=128 --config.num_test=256
        --config.loop.num_steps=400 --config.loop.eval_every=200 --config.loop.checkpoint_every=200
        --config.loop.num_devices=1)
for seed in 0 1 2; do
  for name in lstm convnet; do
    jaxlab vectornet train "${COMMON[@]}" --workdir "$RUNS/$name-s$seed" --config.seed=$seed \
      --config.model.name=$name > /dev/null
  done
  # VectorNet without the auxiliary task (the better setting at this scale, see ablation.sh)
  jaxlab vectornet train "${COMMON[@]}" --workdir "$RUNS/vectornet-noaux-s$seed" --config.seed=$seed \
    --config.model.subgraph_width=64 --config.model.global_width=64 --config.model.aux=false > /dev/null
done
python - "$VN" "$RUNS" <<'PY'
import json, pathlib, sys
from jaxlab.vectornet import report
vn, r = sys.argv[1:]
dirs = {"vectornet": f"{vn}/3x64-1x64-s0", "lstm": f"{r}/lstm-s0", "convnet": f"{r}/convnet-s0"}
params = {name: json.loads((pathlib.Path(d) / "summary.json").read_text())["results"]["num_params"]
          for name, d in dirs.items()}
print(report.ablation_table({
    f"LSTM encoder-decoder ({params['lstm']:,} parameters)": [f"{r}/lstm-s{s}" for s in range(3)],
    f"ConvNet, ResNet-18 on the raster ({params['convnet']:,} parameters)": [
        f"{r}/convnet-s{s}" for s in range(3)],
    f"VectorNet, subgraph 3x64, global 1x64, aux ({params['vectornet']:,} parameters)": [
        f"{vn}/3x64-1x64-s{s}" for s in range(3)],
    "VectorNet, subgraph 3x64, global 1x64, no aux": [f"{r}/vectornet-noaux-s{s}" for s in range(3)]}))
print()
print(report.cost_table({"ConvNet (ResNet-18, 64 x 64 raster)": dirs["convnet"],
                         "VectorNet (subgraph 3x64, global 1x64)": dirs["vectornet"]}))
PY
