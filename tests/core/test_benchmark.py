import itertools
import os
import subprocess
import sys
import textwrap

import pytest

from jaxlab.core import benchmark


def _lines(load_before, load_after, monkeypatch, cores=2):
    loads = iter([load_before, load_after])
    monkeypatch.setattr(benchmark, "load_average", lambda: next(loads))
    monkeypatch.setattr(benchmark, "num_cores", lambda: cores)
    out = []
    with benchmark.load_watch(out.append):
        out.append("body")
    return out


def test_warning_is_the_first_line_when_load_exceeds_half_the_cores(monkeypatch):
    out = _lines(1.5, 0.5, monkeypatch)
    assert out[0].startswith("WARNING: load average 1.50") and "2 cores" in out[0]
    assert out[1] == "body"
    assert out[-1] == "load average before 1.50, after 0.50 (2 cores)"


def test_no_warning_at_or_below_half_the_cores(monkeypatch):
    out = _lines(1.0, 0.2, monkeypatch)
    assert out == ["body", "load average before 1.00, after 0.20 (2 cores)"]
    out = _lines(3.9, 0.2, monkeypatch, cores=8)
    assert not any("WARNING" in line for line in out)


def test_load_rising_during_the_run_is_flagged(monkeypatch):
    out = _lines(0.1, 4.0, monkeypatch)
    assert out[0] == "body" and "WARNING" in out[-1] and "after 4.00" in out[-1]


def test_load_average_reads_proc_or_falls_back(monkeypatch):
    real = open

    def fake_open(path, *a, **k):
        if path == "/proc/loadavg":
            raise FileNotFoundError(path)
        return real(path, *a, **k)

    monkeypatch.setattr("builtins.open", fake_open)
    monkeypatch.setattr(os, "getloadavg", lambda: (7.25, 1.0, 1.0))
    assert benchmark.load_average() == 7.25


def test_alternate_runs_peers_round_robin_and_times_each_call():
    calls = []
    ticks = itertools.count()
    peers = {name: (lambda n=name: calls.append(n)) for name in ["jax", "torch-1", "torch-all"]}
    times = benchmark.alternate(peers, repeats=3, warmup=1, clock=lambda: float(next(ticks)))
    assert calls == ["jax", "torch-1", "torch-all"] * 4  # one warm-up round, then 3 rounds in turn
    assert {k: len(v) for k, v in times.items()} == {"jax": 3, "torch-1": 3, "torch-all": 3}
    assert all(t == 1.0 for v in times.values() for t in v)  # each timing spans exactly its own call
    with pytest.raises(ValueError):
        benchmark.alternate(peers, repeats=0)


def test_alternate_in_blocks_runs_each_peer_consecutively():
    calls = []
    peers = {name: (lambda n=name: calls.append(n)) for name in ["a", "b"]}
    times = benchmark.alternate(peers, repeats=5, warmup=0, block=2)
    assert "".join(calls) == "aabbaabbab"  # turns of 2, the last turn shorter
    assert {k: len(v) for k, v in times.items()} == {"a": 5, "b": 5}
    with pytest.raises(ValueError, match="block"):
        benchmark.alternate(peers, repeats=2, block=0)


def test_median_and_ratio():
    assert benchmark.median([3.0, 1.0, 2.0, 100.0]) == 2.5
    assert benchmark.ratio(3.0, 2.0) == "1.50x"
    assert benchmark.ratio(None, 2.0) == "-" and benchmark.ratio(1.0, 0.0) == "-"
    with pytest.raises(ValueError):
        benchmark.median([])


def _header(markdown):
    return [c.strip() for c in markdown.splitlines()[2].strip("|").split("|")]


def test_table_columns_and_ratios():
    t = benchmark.Table("step", ["jaxlab", "PyTorch"], unit="ms", extras=["compile (s)"])
    t.add("train step", {"jaxlab": [0.010, 0.012, 0.011], "PyTorch": [0.030]}, **{"compile (s)": "1.2"})
    t.add("jaxlab only", {"jaxlab": 0.5})
    md = t.markdown()
    assert _header(md) == ["measurement", "jaxlab (ms)", "PyTorch (ms)", "PyTorch / jaxlab", "compile (s)"]
    rows = md.splitlines()[4:]
    assert rows[0] == "| train step | 11 | 30 | 2.73x | 1.2 |"
    assert rows[1] == "| jaxlab only | 500 | - | - |  |"
    with pytest.raises(KeyError):
        t.add("x", {"numpy": 1.0})


def test_merged_table_has_a_1_thread_and_an_all_threads_column_per_peer():
    one, every = benchmark.Results(), benchmark.Results()
    for res, (j, p, c) in [(one, (0.02, 0.04, "1.0")), (every, (0.01, 0.005, "0.8"))]:
        res.table("step", ["jaxlab", "PyTorch"], unit="ms", extras=["compile (s)"]).add(
            "train step", {"jaxlab": [j], "PyTorch": [p]}, **{"compile (s)": c})
    back = benchmark.Results.from_json(one.to_json())  # what the child hands to the parent
    md = benchmark.merged_markdown(back, every)
    assert _header(md) == ["measurement", "jaxlab 1 thread (ms)", "jaxlab all threads (ms)",
                           "PyTorch 1 thread (ms)", "PyTorch all threads (ms)",
                           "PyTorch / jaxlab 1 thread", "PyTorch / jaxlab all threads", "compile (s)"]
    assert md.splitlines()[4] == "| train step | 20 | 10 | 40 | 5 | 2.00x | 0.50x | 1.0 / 0.8 |"


def test_torch_threads_sets_and_restores():
    torch = pytest.importorskip("torch")
    old = torch.get_num_threads()
    target = 1 if old != 1 else 2
    with benchmark.torch_threads(target) as n:
        assert n == torch.get_num_threads() == target
    assert torch.get_num_threads() == old
    with pytest.raises(RuntimeError):
        with benchmark.torch_threads(target):
            raise RuntimeError("boom")
    assert torch.get_num_threads() == old
    with benchmark.torch_threads(0) as n:
        assert n == len(os.sched_getaffinity(0))


def test_thread_setting_parsing():
    assert benchmark.thread_setting([]) == "both"
    assert benchmark.thread_setting(["--x", "3", "--threads", "1"]) == "1"
    assert benchmark.thread_setting(["--threads=all"]) == "all"
    assert benchmark.thread_setting(["--threads", "0"]) == "all"
    with pytest.raises(SystemExit):
        benchmark.thread_setting(["--threads", "4"])
    assert benchmark._child_argv(["--a", "1", "--threads", "both", "--b"], "1") == ["--a", "1", "--b", "--threads", "1"]


@pytest.mark.slow  # two child interpreters: ~3 s idle; the pieces are tested above
@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs sched_setaffinity")
def test_run_both_reexecutes_per_setting_and_merges(tmp_path):
    script = tmp_path / "bench_fake.py"
    script.write_text(textwrap.dedent("""
        import os, sys
        from jaxlab.core import benchmark
        SETTING = benchmark.configure_threads()

        def main():
            res = benchmark.Results()
            cores = len(os.sched_getaffinity(0))
            flags = os.environ.get("XLA_FLAGS", "")
            res.table("t", ["jaxlab", "peer"], unit="s").add("row", {"jaxlab": [float(cores)], "peer": [2.0 * cores]})
            res.note(f"setting {SETTING} eigen-off {'multi_thread_eigen=false' in flags}")
            return res

        benchmark.run(main)
    """))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, check=True).stdout
    all_cores = len(os.sched_getaffinity(0))
    assert "setting 1 eigen-off True" in out and "setting all eigen-off False" in out
    merged = out.split("## merged")[1]
    assert f"| row | 1 | {all_cores} | 2 | {2 * all_cores} | 2.00x | 2.00x |" in merged
    first = out.splitlines()[0]
    assert first.startswith("WARNING") or first.startswith("running once")
