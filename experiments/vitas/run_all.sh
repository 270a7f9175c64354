#!/usr/bin/env bash
# The README's experiments at CPU scale (experiments/vitas/configs/cpu_tiny.py), 3 seeds each.
#   bash experiments/vitas/run_all.sh [RUNS [VARIANT ...]]   (default runs/vitas, every variant)
# Compiled steps are shared across seeds through JAX's persistent compilation cache
# ($JAXLAB_COMPILATION_CACHE, default ~/.cache/jaxlab/jax).
set -euo pipefail
R="${1:-runs/vitas}"
shift || true
VARIANTS=("$@")
[ ${#VARIANTS[@]} -gt 0 ] || VARIANTS=(cyclic noshift prefix bilateral weak strong)
C=experiments/vitas/configs/cpu_tiny.py
export JAXLAB_PROGRESS=0
for v in "${VARIANTS[@]}"; do
  for s in 0 1 2; do
    jaxlab vitas train-supernet --config "$C:$v" --workdir "$R/${v}_s$s" --config.seed=$s
    if [ "$v" = cyclic ] || [ "$v" = noshift ]; then
      jaxlab vitas search --config "$C:$v" --workdir "$R/${v}_s$s" --config.seed=$s
    fi
  done
done
python -m jaxlab.vitas.studies --config "$C:cyclic" "$R"   # probes, rank correlation, retraining
python -m jaxlab.vitas.report "$R" experiments/vitas       # tables (stdout) and figures
