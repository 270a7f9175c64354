#!/usr/bin/env bash
# Every experiment of experiments/scalenet/README.md, in order (about an hour on a
# shared 2-core CPU). Workdirs go under $RUNS (default runs/scalenet).
set -euo pipefail
RUNS=${RUNS:-runs/scalenet}
CFG=experiments/scalenet/configs/cpu_tiny.py
J="python -m jaxlab scalenet"
$J train-supernet --config $CFG:hierarchical --workdir $RUNS/hier
$J search         --config $CFG:hierarchical --workdir $RUNS/hier
$J retrain        --config $CFG:hierarchical --workdir $RUNS/hier
$J train-supernet --config $CFG:uniform      --workdir $RUNS/unif
$J search         --config $CFG:uniform      --workdir $RUNS/unif
$J search         --config $CFG:decoupled    --workdir $RUNS/decoupled --config.search.supernet_dir=$RUNS/hier
