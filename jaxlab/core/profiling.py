"""Where a compiled step spends its time, per XLA operation.

`op_times(fn, *args)` runs `fn` under the JAX profiler and sums the durations of the
operations XLA's runtime reports (fusions, convolutions, library calls, copies), per
call. The names are those of the optimized HLO (`fn.lower(*args).compile().as_text()`),
so each row can be looked up there. On the CPU, operations of one program may run
concurrently on the thread pool, so the per-op times can add up to more than the wall
time of a call.

    times = profiling.op_times(step, state, batch, key, calls=30)
    print(profiling.format_table(times))
"""

from __future__ import annotations

import collections
import glob
import gzip
import json
import os
import re
import tempfile
import time
from collections.abc import Callable

import jax

__all__ = ["OpTimes", "op_times", "format_table"]

_SUFFIX = re.compile(r"\.\d+$")
_HLO_NAME = re.compile(r"^[a-z][a-z0-9_.\-]*$")  # runtime events (ParseArguments, ...) are CamelCase


class OpTimes(collections.namedtuple("OpTimes", ["per_op", "wall"])):
    """`per_op`: {HLO instruction name: seconds per call}; `wall`: median seconds per call."""

    def by_kind(self) -> dict[str, float]:
        """Seconds per call summed by kind of operation: the instruction name without its
        numeric suffix (`convolution`, `transpose_copy_fusion`, `ynn_fusion`, ...)."""
        out: collections.Counter = collections.Counter()
        for name, s in self.per_op.items():
            out[_SUFFIX.sub("", name)] += s
        return dict(out.most_common())


def op_times(fn: Callable, *args, calls: int = 20, warmup: int = 2, feed_back: bool = False) -> OpTimes:
    """Profiles `calls` calls of `fn(*args)` after `warmup` calls (which include the
    compilation). With `feed_back`, the first output replaces the first argument
    between calls: a train step `(state, batch, key) -> (state, metrics)` that donates
    its state. Returns per-op seconds per call and the median wall time per call."""

    def call(a):
        out = fn(*a)
        jax.block_until_ready(out)
        return (out[0], *a[1:]) if feed_back else a

    for _ in range(warmup):
        args = call(args)
    walls = []
    with tempfile.TemporaryDirectory() as d:
        with jax.profiler.trace(d, create_perfetto_trace=True):
            for _ in range(calls):
                t0 = time.perf_counter()
                args = call(args)
                walls.append(time.perf_counter() - t0)
        files = glob.glob(os.path.join(d, "**", "*.trace.json.gz"), recursive=True)
        if not files:
            raise RuntimeError(f"the JAX profiler wrote no perfetto trace under {d}")
        with gzip.open(files[0]) as f:
            trace = json.load(f)
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    total: collections.Counter = collections.Counter()
    count: collections.Counter = collections.Counter()
    for e in events:
        if e.get("ph") == "X" and _HLO_NAME.match(e.get("name", "")):
            total[e["name"]] += e.get("dur", 0) * 1e-6
            count[e["name"]] += 1
    # Operations of the program run once (or a fixed number of times) per call; host
    # events (Python frames, dispatch, argument parsing) are filtered by name above.
    per_op = {k: v / calls for k, v in total.most_common() if count[k] >= calls}
    walls.sort()
    return OpTimes(per_op, walls[len(walls) // 2])


def format_table(times: OpTimes, top: int = 15) -> str:
    """A markdown table: per kind of operation, then the `top` single operations."""
    total = sum(times.per_op.values())
    rows = [f"wall {times.wall * 1e3:.2f} ms per call; operations sum to {total * 1e3:.2f} ms",
            "", "| kind | ms per call | share |", "|---|---|---|"]
    rows += [f"| {k} | {v * 1e3:.3f} | {v / total:.0%} |" for k, v in list(times.by_kind().items())[:top]]
    rows += ["", "| operation | ms per call |", "|---|---|"]
    rows += [f"| {k} | {v * 1e3:.3f} |" for k, v in list(times.per_op.items())[:top]]
    return "\n".join(rows)
