#!/usr/bin/env bash
# Kill, corrupt and rerun every method's training on its smoke config, as a user would:
#
#   1. a reference run, uninterrupted;
#   2. the same command killed with SIGKILL after its first checkpoint, then rerun:
#      it must end with the reference's parameters and summary results;
#   3. the reference rerun once finished: its summary results must not change;
#   4. the latest checkpoint corrupted (400 bytes flipped): `evaluate` must name the bad
#      step and use an older one; rerunning `train` must fall back to the newest intact
#      checkpoint and end with the reference's parameters again.
#
# Usage: [JOBS=2] bash scripts/check_resume.sh [METHOD ...]   (default: every method below)
# Needs `jaxlab` on PATH (pip install -e .). Exits non-zero on the first failed check.
set -euo pipefail

# method[-part] -> "train action|evaluate action (- for none that reads one checkpoint)|overrides"
# (long enough to be killed mid-run). mhui and scalenet keep one checkpoints/ per stage
# (network, supernet): the last stage's newest step is the one corrupted. A key METHOD-PART
# checks a second training action of METHOD, whose state `jaxlab.METHOD.load_PART` reads.
declare -A PLAN=(
  [classifier]="train|evaluate|--config.loop.num_steps=200 --config.loop.checkpoint_every=20 --config.loop.eval_every=100"
  [meguide]="train|evaluate|--config.loop.num_steps=200 --config.loop.checkpoint_every=20 --config.loop.eval_every=50"
  [mhui]="train|-|--config.loop.num_steps=300 --config.loop.checkpoint_every=50"
  [lidarfirst]="train-classifier|-|--config.loop.num_steps=200 --config.loop.checkpoint_every=20 --config.train_frames=3"
  [lidarfirst-detector]="train-detector|-|--config.detector.num_steps=120 --config.loop.checkpoint_every=20 --config.train_frames=3"
  [scalenet]="train-supernet|-|--config.supernet.loop.num_steps=120 --config.supernet.loop.checkpoint_every=20"
  [vitas]="train-supernet|-|--config.supernet.loop.num_steps=120 --config.supernet.loop.checkpoint_every=20"
  [coral]="train|evaluate|--config.loop.num_steps=300 --config.loop.checkpoint_every=20 --config.loop.eval_every=100"
  [video2stylegan]="train-generator|-|--config.gan.loop.num_steps=60 --config.gan.loop.checkpoint_every=10 --config.faces.train_images=32"
  [video2stylegan-aux]="train-aux|-|--config.aux.loop.num_steps=90 --config.aux.loop.checkpoint_every=15 --config.aux.train_images=64 --config.aux.num_identities=8 --config.aux.eval_identities=4"
  [coditt5]="pretrain|-|--config.pretrain.loop.num_steps=40 --config.pretrain.loop.checkpoint_every=10 --config.max_files=40"
  [vectornet]="train|evaluate|--config.loop.num_steps=120 --config.loop.checkpoint_every=20 --config.loop.eval_every=100"
)
# dmf integrates gradient flow in one jitted scan per run and writes no checkpoints:
# only the rerun check applies to it.
declare -A RERUN_ONLY=(
  [dmf]="spe|--config.rank=2"
)

METHODS=("$@")
if [ ${#METHODS[@]} -eq 0 ]; then
  METHODS=("${!PLAN[@]}" "${!RERUN_ONLY[@]}")
fi
# Several methods run JOBS at a time (default 2), each in its own process and log, printed
# when it ends; the checks are timing-independent, so parallel load only moves the kills.
if [ ${#METHODS[@]} -gt 1 ] && [ "${JOBS:-2}" -gt 1 ]; then
  LOGS="$(mktemp -d)"
  status=0
  printf '%s\n' "${METHODS[@]}" | xargs -P "${JOBS:-2}" -I{} \
    bash -c 'bash "$0" "$1" >"$2/$1.log" 2>&1 && echo "$1: passed" || { echo "$1: FAILED"; exit 1; }' \
    "$0" {} "$LOGS" || status=1
  for m in "${METHODS[@]}"; do cat "$LOGS/$m.log"; done
  rm -rf "$LOGS"
  [ $status -eq 0 ] && echo "all resume checks passed: ${METHODS[*]}" || echo "resume checks FAILED" >&2
  exit $status
fi
ROOT="$(mktemp -d)"
trap 'rm -rf "$ROOT"' EXIT
export JAXLAB_PROGRESS=0

compare() {  # compare METHOD[-PART] DIR_A DIR_B WHAT
  python - "$@" <<'PY'
import importlib, json, sys
import jax, numpy as np
key, a, b, what = sys.argv[1:]
method, _, part = key.partition("-")
load = getattr(importlib.import_module(f"jaxlab.{method}"), f"load_{part}" if part else "load")
ra, rb = load(a), load(b)
la, lb = jax.tree.leaves(ra.state), jax.tree.leaves(rb.state)
assert len(la) == len(lb), f"{what}: states differ in structure"
bad = [i for i, (x, y) in enumerate(zip(la, lb)) if not np.array_equal(np.asarray(x), np.asarray(y))]
assert not bad, f"{what}: {len(bad)} of {len(la)} state arrays differ"
def results(d):
    r = json.load(open(f"{d}/summary.json"))["results"]
    def strip(x):
        if isinstance(x, dict):
            return {k: strip(v) for k, v in x.items()
                    if not (k.endswith("_s") or "time" in k or k in ("steps_per_sec", "segments"))}
        return x
    return strip(r)
assert results(a) == results(b), f"{what}: summary results differ:\n{results(a)}\n{results(b)}"
print(f"  ok: {what} ({len(la)} arrays equal, summary results equal)")
PY
}

flip_latest() {  # flip_latest WORKDIR -> prints the corrupted step (of the last stage's checkpoints)
  python - "$1" <<'PY'
import pathlib, sys
ck = sorted(pathlib.Path(sys.argv[1]).rglob("checkpoints"))[-1]
step = max(int(p.name) for p in ck.iterdir() if p.name.isdigit())
files = [f for f in (ck / str(step)).rglob("*") if f.is_file() and "/d/" in f.as_posix()]
f = max(files, key=lambda f: f.stat().st_size)
raw = bytearray(f.read_bytes())
lo = max(0, len(raw) // 2 - 200)
for i in range(lo, min(len(raw), lo + 400)):
    raw[i] ^= 0xFF
f.write_bytes(bytes(raw))
print(step)
PY
}

for m in "${METHODS[@]}"; do
  echo "== $m"
  if [ -n "${RERUN_ONLY[$m]:-}" ]; then
    IFS='|' read -r action overrides <<<"${RERUN_ONLY[$m]}"
    # shellcheck disable=SC2086
    jaxlab "$m" "$action" --config smoke $overrides --workdir "$ROOT/$m-ref" >/dev/null
    cp "$ROOT/$m-ref/summary.json" "$ROOT/$m-first.json"
    # shellcheck disable=SC2086
    jaxlab "$m" "$action" --config smoke $overrides --workdir "$ROOT/$m-ref" >/dev/null
    python - "$ROOT/$m-first.json" "$ROOT/$m-ref/summary.json" <<'PY'
import json, sys
a, b = (json.load(open(p))["results"] for p in sys.argv[1:])
strip = lambda r: {k: v for k, v in r.items() if not (k.endswith("_s") or "time" in k)}
assert strip(a) == strip(b), f"rerun changed the results:\n{a}\n{b}"
print("  ok: rerun of a finished run keeps its results")
PY
    continue
  fi
  IFS='|' read -r train evaluate overrides <<<"${PLAN[$m]}"
  run() {  # run WORKDIR
    # shellcheck disable=SC2086
    jaxlab "${m%%-*}" "$train" --config smoke $overrides --workdir "$1"
  }
  run "$ROOT/$m-ref" >"$ROOT/$m-ref.out"

  # 2. SIGKILL after the first checkpoint, then rerun. The run gets its own process group
  # (setsid) and the whole group is killed: killing only the background subshell would
  # leave `jaxlab` running as an orphan, racing the resumed run in the same workdir.
  # shellcheck disable=SC2086
  setsid jaxlab "${m%%-*}" "$train" --config smoke $overrides --workdir "$ROOT/$m-kill" \
    >/dev/null 2>&1 &
  pid=$!
  for _ in $(seq 1 1200); do
    if [ -n "$(find "$ROOT/$m-kill" -name jaxlab_manifest.json 2>/dev/null | head -1)" ]; then break; fi
    sleep 0.1
  done
  if ! kill -9 -- "-$pid" 2>/dev/null; then
    echo "  FAIL: the run finished before it could be killed; give it more steps" >&2
    exit 1
  fi
  wait "$pid" || true
  for _ in $(seq 1 100); do kill -0 -- "-$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 -- "-$pid" 2>/dev/null; then
    echo "  FAIL: processes of the killed run are still alive" >&2
    exit 1
  fi
  echo "  killed after checkpoint(s): $(find "$ROOT/$m-kill" -name jaxlab_manifest.json | wc -l)"
  run "$ROOT/$m-kill" >/dev/null
  compare "$m" "$ROOT/$m-ref" "$ROOT/$m-kill" "killed and resumed"

  # 3. Rerun of a finished run.
  cp "$ROOT/$m-ref/summary.json" "$ROOT/$m-ref-summary.json"
  run "$ROOT/$m-ref" >/dev/null
  python - "$ROOT/$m-ref-summary.json" "$ROOT/$m-ref/summary.json" <<'PY'
import json, sys
a, b = (json.load(open(p))["results"] for p in sys.argv[1:])
assert a == b, f"rerun of a finished run changed its results:\n{a}\n{b}"
print("  ok: rerun of a finished run keeps its results")
PY

  # 4. Corrupt the latest checkpoint: evaluate names it and uses an older one; train falls back.
  bad=$(flip_latest "$ROOT/$m-kill")
  if [ "$evaluate" != "-" ]; then
    jaxlab "${m%%-*}" "$evaluate" --workdir "$ROOT/$m-kill" >"$ROOT/$m-eval.out" 2>"$ROOT/$m-eval.err"
    grep -q "step $bad" "$ROOT/$m-eval.err" || { echo "  FAIL: evaluate did not name step $bad" >&2; exit 1; }
    python - "$ROOT/$m-eval.out" "$bad" <<'PY'
import json, sys
out, bad = json.load(open(sys.argv[1])), int(sys.argv[2])
step = out.get("step")
assert step is not None and step < bad, f"evaluate used step {step}, not one before the corrupt {bad}"
print(f"  ok: evaluate named corrupt step {bad} and used step {step}")
PY
  fi
  run "$ROOT/$m-kill" >/dev/null 2>"$ROOT/$m-fallback.err"
  grep -q "step $bad" "$ROOT/$m-fallback.err" || { echo "  FAIL: train did not name step $bad" >&2; exit 1; }
  [ -n "$(find "$ROOT/$m-kill" -type d -name corrupt-checkpoints | head -1)" ] || {
    echo "  FAIL: the corrupt step was not kept aside" >&2; exit 1; }
  compare "$m" "$ROOT/$m-ref" "$ROOT/$m-kill" "corrupt latest checkpoint, fallback"
done
echo "all resume checks passed: ${METHODS[*]}"
