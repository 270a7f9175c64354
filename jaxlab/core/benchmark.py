"""Helpers every `scripts/bench_*.py` uses, so that each benchmark is honest about the machine.

Machine load. `load_average()` reads the 1-minute load (`/proc/loadavg`, `os.getloadavg`
as a fallback). `load_watch()` prints, as the first line of a run, a warning when that
load exceeds half the cores (`os.cpu_count()`), and at the end
`load average before X, after Y (N cores)`: a loaded machine slows a thread pool that
waits on its slowest thread (PyTorch's intra-op pool) far more than single-threaded code,
so a ratio measured under load can be off several-fold.

Peers alternate. `alternate({name: fn}, repeats)` warms every peer up, then times them
round-robin (jaxlab, peer, jaxlab, peer, ...) so that drift in the machine's load hits
all peers alike; `median` and `ratio` summarise. `torch_threads(n)` sets and restores
PyTorch's intra-op threads (`n` = 0 or None: every core the process may use).

Thread settings: what "1 thread" and "all threads" mean. XLA:CPU sizes its thread pools
once, when the backend starts, so jaxlab cannot switch between one and all cores inside
one process the way `torch.set_num_threads` does. Every benchmark therefore takes
`--threads 1|all|both`:

* `--threads 1`: before jax (or torch) is imported, `configure_threads()` pins the whole
  process to its first allowed core (`os.sched_setaffinity`), sets
  `XLA_FLAGS=--xla_cpu_multi_thread_eigen=false` (Eigen's intra-op parallelism off) and
  `OMP_NUM_THREADS=1`, and the scripts run PyTorch with one thread: every peer, jaxlab
  included, computes on one core.
* `--threads all`: nothing is restricted; jaxlab runs with XLA:CPU's defaults over every
  core the process may use, PyTorch with `torch.set_num_threads(<those cores>)`.
* `--threads both` (the default): the script re-executes itself once per setting (in
  `run`), each child writes its tables to a JSON file, and the parent prints one table
  per measurement with a 1-thread and an all-threads column for every peer and the ratio
  in each setting. Each child's own output (device, checks, its single-setting tables)
  is printed as it runs.

Ratios are `peer time / first peer's time` (the first peer is jaxlab): above 1 means
jaxlab is faster. Compile time is never in a median: the warm-up call in `alternate`
absorbs it, and scripts report it in an extra column.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

SETTINGS = ("1", "all", "both")
ALIASES = {"0": "all"}  # the older scripts' `--threads 0` (each framework's default on all cores)
RESULTS_ENV = "JAXLAB_BENCH_RESULTS"  # where a child run writes its tables (set by `run`)


# ----------------------------------------------------------------------------- load


def load_average() -> float:
    """The 1-minute load average: `/proc/loadavg`, else `os.getloadavg()`."""
    try:
        with open("/proc/loadavg") as f:
            return float(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return float(os.getloadavg()[0])


def num_cores() -> int:
    return os.cpu_count() or 1


def load_warning(load: float, cores: int) -> str | None:
    """The warning line when `load` exceeds half of `cores`, else None."""
    if load > cores / 2:
        return (f"WARNING: load average {load:.2f} is above half of the {cores} cores: "
                "timings are from a loaded machine and ratios can be far off")
    return None


@contextlib.contextmanager
def load_watch(out: Callable[[str], Any] = print) -> Iterator[None]:
    """Prints the load warning (if any) on entry -- call it before anything else prints --
    and `load average before X, after Y (N cores)` on exit."""
    cores = num_cores()
    before = load_average()
    warning = load_warning(before, cores)
    if warning:
        out(warning)
    try:
        yield
    finally:
        after = load_average()
        line = f"load average before {before:.2f}, after {after:.2f} ({cores} cores)"
        if load_warning(after, cores) and not warning:
            line += " WARNING: the machine became loaded during the run"
        out(line)


# ----------------------------------------------------------------------------- threads


def _usable_cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return num_cores()


def thread_setting(argv: Sequence[str] | None = None) -> str:
    """The `--threads` value in `argv` (default: sys.argv); "both" when absent."""
    argv = list(sys.argv[1:] if argv is None else argv)
    value = "both"
    for i, a in enumerate(argv):
        if a == "--threads" and i + 1 < len(argv):
            value = argv[i + 1]
        elif a.startswith("--threads="):
            value = a.split("=", 1)[1]
    value = ALIASES.get(value, value)
    if value not in SETTINGS:
        raise SystemExit(f"--threads: expected one of {', '.join(SETTINGS)}, got {value!r}")
    return value


def configure_threads(argv: Sequence[str] | None = None) -> str:
    """Applies the `--threads` setting to this process; call it before importing jax or torch.
    Returns the setting ("1", "all" or "both")."""
    setting = thread_setting(argv)
    if setting == "1":
        if "jax" in sys.modules and "jaxlib" in sys.modules:
            import jax

            if jax._src.xla_bridge.backends_are_initialized():  # too late to restrict XLA:CPU
                raise RuntimeError("configure_threads() must run before jax starts its backend")
        flags = os.environ.get("XLA_FLAGS", "")
        if "xla_cpu_multi_thread_eigen" not in flags:
            os.environ["XLA_FLAGS"] = (flags + " --xla_cpu_multi_thread_eigen=false").strip()
        os.environ["OMP_NUM_THREADS"] = "1"
        if hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    return setting


def peer_threads(setting: str) -> int:
    """Threads a peer with a thread pool gets under `setting`."""
    return 1 if setting == "1" else _usable_cores()


def add_threads_argument(parser) -> None:
    """`--threads 1|all|both` on an argparse parser (read earlier by `configure_threads`)."""
    parser.add_argument("--threads", choices=SETTINGS, default="both", type=lambda v: ALIASES.get(v, v),
                        help="1: every peer on one core; all (or 0): every core; both (default): one run per "
                             "setting, tables merged (see jaxlab.core.benchmark)")


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[int]:
    """Runs the block with `torch.set_num_threads(n)` (0/None: all usable cores), then
    restores the previous count. Yields the count in force."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(n or _usable_cores())
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(old)


def allocator_line(tuned: bool) -> str:
    """How the host allocator was set up, from `runtime.tune_host_allocator()`'s result."""
    return "host allocator: " + ("tuned as by the jaxlab command (runtime.tune_host_allocator), shared by PyTorch"
                                 if tuned else "glibc defaults")


def device_line() -> str:
    """Which device jaxlab runs on (and torch's version/threads when torch is loaded)."""
    import platform

    import jax

    d = jax.devices()
    line = (f"device: jax {jax.__version__} {d[0].device_kind} ({jax.default_backend()}, {len(d)} device(s)), "
            f"{platform.machine()}, {_usable_cores()} usable of {num_cores()} cores")
    if "torch" in sys.modules:
        torch = sys.modules["torch"]
        line += f"; torch {torch.__version__} ({torch.get_num_threads()} threads)"
    return line


# ----------------------------------------------------------------------------- timing


def time_call(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def alternate(peers: dict[str, Callable[[], Any]], repeats: int, warmup: int = 1,
              clock: Callable[[], float] = time.perf_counter, block: int = 1) -> dict[str, list[float]]:
    """Seconds per call of each peer, timed round-robin: after `warmup` untimed calls of
    each, `repeats` calls of every peer in turns of `block` consecutive calls (the last
    turn shorter if `block` does not divide `repeats`). Each `fn` must block until its
    result is ready (`jax.block_until_ready`).

    `block=1` alternates call by call, which spreads a changing machine load evenly over
    the peers; a larger `block` lets each peer run as it would in a training loop, with
    its thread pool warm and the other peer's threads idle (OpenMP and Eigen workers spin
    for a while after a parallel region and take cores from whatever runs next)."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    if block < 1:
        raise ValueError(f"block must be >= 1, got {block}")
    for fn in peers.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in peers}
    for start in range(0, repeats, block):
        for name, fn in peers.items():
            for _ in range(min(block, repeats - start)):
                t0 = clock()
                fn()
                times[name].append(clock() - t0)
    return times


def median(xs: Sequence[float]) -> float:
    if not len(xs):
        raise ValueError("median of no timings")
    return float(statistics.median(xs))


def ratio(num: float | None, den: float | None) -> str:
    """`num / den` as "1.23x"; "-" when either is missing or den is 0."""
    if num is None or den is None or den == 0:
        return "-"
    return f"{num / den:.2f}x"


# ----------------------------------------------------------------------------- tables

_UNITS = {"s": 1.0, "ms": 1e3, "us": 1e6}


def _fmt(seconds: float | None, unit: str) -> str:
    if seconds is None:
        return "-"
    v = seconds * _UNITS[unit]
    return f"{v:.3g}" if v < 100 else f"{v:.0f}"


@dataclasses.dataclass
class Table:
    """A markdown table of median times: one column per peer (the first is jaxlab), the
    ratio of every other peer to the first, then free-text extra columns."""

    title: str
    peers: list[str]
    unit: str = "ms"
    extras: list[str] = dataclasses.field(default_factory=list)
    rows: list[dict] = dataclasses.field(default_factory=list)

    def __post_init__(self):
        if self.unit not in _UNITS:
            raise ValueError(f"unit must be one of {sorted(_UNITS)}, got {self.unit!r}")

    def add(self, label: str, times: dict[str, Sequence[float] | float], **extras: str) -> None:
        """A row: `times` maps peers to their timings (a list -> its median) in seconds."""
        unknown = set(times) - set(self.peers) or set(extras) - set(self.extras)
        if unknown:
            raise KeyError(f"row {label!r}: unknown peers/columns {sorted(unknown)}")
        meds = {k: (median(v) if isinstance(v, Sequence) else float(v)) for k, v in times.items()}
        self.rows.append({"label": label, "median": meds, "extras": {k: str(v) for k, v in extras.items()}})

    def markdown(self) -> str:
        first, others = self.peers[0], self.peers[1:]
        head = (["measurement"] + [f"{p} ({self.unit})" for p in self.peers]
                + [f"{p} / {first}" for p in others] + self.extras)
        lines = [f"### {self.title}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for r in self.rows:
            m = r["median"]
            cells = ([r["label"]] + [_fmt(m.get(p), self.unit) for p in self.peers]
                     + [ratio(m.get(p), m.get(first)) for p in others]
                     + [r["extras"].get(e, "") for e in self.extras])
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)


def merge(one: Table, every: Table) -> str:
    """One markdown table from the `--threads 1` and `--threads all` runs of the same table:
    a 1-thread and an all-threads column per peer, the ratios in each setting, extras as
    "1-thread value / all-threads value" where they differ."""
    first, others = every.peers[0], every.peers[1:]
    head = ["measurement"]
    for p in every.peers:
        head += [f"{p} 1 thread ({every.unit})", f"{p} all threads ({every.unit})"]
    for p in others:
        head += [f"{p} / {first} 1 thread", f"{p} / {first} all threads"]
    head += every.extras
    rows_one = {r["label"]: r for r in one.rows}
    lines = [f"### {every.title}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in every.rows:
        r1 = rows_one.get(r["label"], {"median": {}, "extras": {}})
        m1, ma = r1["median"], r["median"]
        cells = [r["label"]]
        for p in every.peers:
            cells += [_fmt(m1.get(p), every.unit), _fmt(ma.get(p), every.unit)]
        for p in others:
            cells += [ratio(m1.get(p), m1.get(first)), ratio(ma.get(p), ma.get(first))]
        for e in every.extras:
            a, b = r1["extras"].get(e, ""), r["extras"].get(e, "")
            cells.append(b if a in ("", b) else f"{a} / {b}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


class Results:
    """The tables of one run, printed at its end (and handed to the parent in `--threads both`)."""

    def __init__(self):
        self.tables: list[Table] = []
        self.notes: list[str] = []

    def table(self, title: str, peers: list[str], unit: str = "ms", extras: Sequence[str] = ()) -> Table:
        t = Table(title, list(peers), unit, list(extras))
        self.tables.append(t)
        return t

    def note(self, text: str) -> None:
        """A line printed under the tables (sizes, checks, what a column means)."""
        self.notes.append(text)

    def print(self, out: Callable[[str], Any] = print) -> None:
        for t in self.tables:
            out("\n" + t.markdown())
        for n in self.notes:
            out(n)

    def to_json(self) -> dict:
        return {"tables": [dataclasses.asdict(t) for t in self.tables], "notes": self.notes}

    @classmethod
    def from_json(cls, obj: dict) -> Results:
        r = cls()
        r.tables = [Table(**t) for t in obj["tables"]]
        r.notes = list(obj["notes"])
        return r


def merged_markdown(one: Results, every: Results) -> str:
    by_title = {t.title: t for t in one.tables}
    parts = []
    for t in every.tables:
        parts.append(merge(by_title.get(t.title, Table(t.title, t.peers, t.unit, t.extras)), t))
    return "\n\n".join(parts)


def _child_argv(argv: Sequence[str], setting: str) -> list[str]:
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        if a == "--threads":
            skip = True
            continue
        if a.startswith("--threads="):
            continue
        out.append(a)
    return out + ["--threads", setting]


def run(main: Callable[[], Results | None], argv: Sequence[str] | None = None) -> None:
    """Entry point of a benchmark script. `main()` parses the arguments, measures, and
    returns its `Results`. With `--threads 1` or `all` it runs here between the load
    lines; with `both` the script runs once per setting in child processes and the
    tables are merged."""
    argv = list(sys.argv[1:] if argv is None else argv)
    setting = thread_setting(argv)
    if setting != "both" or "-h" in argv or "--help" in argv:
        with load_watch():
            results = main()
            if results is not None:
                results.print()
                path = os.environ.get(RESULTS_ENV)
                if path:
                    from jaxlab.core import workdir

                    workdir.write_json(path, results.to_json())
        return
    with load_watch():
        print("running once with every peer on 1 core (--threads 1), once on all cores (--threads all)",
              flush=True)
        got = {}
        with tempfile.TemporaryDirectory() as tmp:
            for s in ("1", "all"):
                path = os.path.join(tmp, f"results_{s}.json")
                print(f"\n## --threads {s}\n", flush=True)
                proc = subprocess.run([sys.executable, sys.argv[0], *_child_argv(argv, s)],
                                      env={**os.environ, RESULTS_ENV: path})
                if proc.returncode != 0:
                    raise SystemExit(f"the --threads {s} run failed (exit status {proc.returncode})")
                with open(path) as f:
                    got[s] = Results.from_json(json.load(f))
        print("\n## merged: 1 thread = process pinned to one core; all threads = every core\n")
        print(merged_markdown(got["1"], got["all"]))
        for n in got["all"].notes:
            print(n)
