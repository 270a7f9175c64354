#!/usr/bin/env bash
# The README's experiments at CPU scale (experiments/vitas/configs/cpu_tiny.py), 3 seeds each.
#   bash experiments/vitas/run_all.sh [RUNS]      (default runs/vitas)
# Compiled steps are shared across seeds through JAX's persistent compilation cache
# ($JAXLAB_COMPILATION_CACHE, default ~/.cache/jaxlab/jax).
set -euo pipefail
R="${1:-runs/vitas}"
C=experiments/vitas/configs/cpu_tiny.py
export JAXLAB_PROGRESS=0
for v in cyclic noshift prefix bilateral weak strong; do
  for s in 0 1 2; do
    jaxlab vitas train-supernet --config "$C:$v" --workdir "$R/${v}_s$s" --config.seed=$s
    if [ "$v" = cyclic ] || [ "$v" = noshift ]; then
      jaxlab vitas search --config "$C:$v" --workdir "$R/${v}_s$s" --config.seed=$s
    fi
  done
done
python -m jaxlab.vitas.studies --config "$C:cyclic" "$R"   # probes, rank correlation, retraining
python -m jaxlab.vitas.report "$R" experiments/vitas       # tables (stdout) and figures
