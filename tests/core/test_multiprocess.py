"""Several processes, one run: `jaxlab ... --distributed` as 2 processes on this machine.

Each process is a real `python -m jaxlab` with one CPU device, connected through JAX's
coordination service on localhost (CPU collectives through gloo). A 2-process run must
end with the parameters of a 1-process run on 2 devices with the same global batch,
resume after both processes are killed, and leave every file of its workdir (outside
the collectively written checkpoints) to process 0.
"""

from __future__ import annotations

import json
import os
import pathlib
import signal
import socket
import stat
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from jaxlab.classifier import run as classifier

STEPS = ["--config.loop.num_steps=40", "--config.loop.checkpoint_every=10", "--config.loop.eval_every=20"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _env(devices: int, cache: pathlib.Path) -> dict:
    env = dict(os.environ, JAX_NUM_CPU_DEVICES=str(devices), JAXLAB_PROGRESS="0", CI="1",
               JAXLAB_COMPILATION_CACHE=str(cache))
    env.pop("XLA_FLAGS", None)
    return env


def _command(workdir: pathlib.Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "jaxlab", "classifier", "train", "--config", "smoke",
            "--workdir", str(workdir), *STEPS, *extra]


def _start_processes(workdir, cache, port, count=2):
    """Starts `count` copies of one command, process 1 under umask 077 (its files would be
    private), process 0 under umask 022: a file's mode tells which process wrote it."""
    procs = []
    for pid in range(count):
        cmd = _command(workdir, "--distributed", "--coordinator", f"localhost:{port}",
                       "--num-processes", str(count), "--process-id", str(pid), "--distributed-timeout", "240")
        umask = 0o022 if pid == 0 else 0o077
        procs.append(subprocess.Popen(cmd, env=_env(1, cache), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True, preexec_fn=lambda m=umask: os.umask(m)))
    return procs


def _finish(procs, timeout=600):
    outs = [p.communicate(timeout=timeout) for p in procs]
    for p, (_out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    return outs


def _results(stdout: str) -> dict:
    """The results JSON the CLI prints last (gloo may print a line before it)."""
    return json.loads(stdout[stdout.index("{\n"):])


def _params(workdir):
    return jax.tree.map(np.asarray, classifier.load(workdir).state.params)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("jax-cache")


@pytest.fixture(scope="module")
def reference(tmp_path_factory, cache):
    """One process with two devices: the run the two processes must reproduce."""
    workdir = tmp_path_factory.mktemp("one-process") / "run"
    out = subprocess.run(_command(workdir), env=_env(2, cache), capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert _results(out.stdout)["num_devices"] == 2
    return workdir


def _written_by_process_zero(workdir: pathlib.Path) -> list[str]:
    """Files outside checkpoints/ that process 1 (umask 077) wrote."""
    bad = []
    for p in workdir.rglob("*"):
        if p.is_file() and "checkpoints" not in p.relative_to(workdir).parts[:1]:
            if stat.S_IMODE(p.stat().st_mode) & 0o044 != 0o044:
                bad.append(str(p.relative_to(workdir)))
    return bad


def test_two_processes_equal_one_process_on_two_devices(tmp_path, reference, cache):
    workdir = tmp_path / "run"
    outs = _finish(_start_processes(workdir, cache, _free_port()))
    flat = lambda t: jax.tree.leaves(t)
    for a, b in zip(flat(_params(reference)), flat(_params(workdir)), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # Process 0 alone printed the results and wrote the files: one row per logged step,
    # one segment, no file with process 1's private mode.
    assert _results(outs[0][0])["num_devices"] == 2 and "num_devices" not in outs[1][0]
    rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    train_steps = [r["step"] for r in rows if "loss" in r]
    assert train_steps == sorted(set(train_steps)) and train_steps[-1] == 40
    assert len((workdir / "segments.jsonl").read_text().splitlines()) == 1
    assert json.loads((workdir / "summary.json").read_text())["environment"]["num_processes"] == 2
    assert _written_by_process_zero(workdir) == []


def test_both_processes_killed_then_restarted_resume(tmp_path, reference, cache):
    workdir = tmp_path / "run"
    procs = _start_processes(workdir, cache, _free_port())
    deadline = time.monotonic() + 600
    first = workdir / "checkpoints" / "10" / "jaxlab_manifest.json"
    while not first.exists():
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs), "no checkpoint appeared"
        time.sleep(0.05)
    for p in procs:
        p.send_signal(signal.SIGKILL)
        p.communicate()
    killed_at = max(int(d.name) for d in (workdir / "checkpoints").iterdir() if d.name.isdigit())
    assert killed_at < 40, "the run ended before it could be killed; give it more steps"
    _finish(_start_processes(workdir, cache, _free_port()))
    for a, b in zip(jax.tree.leaves(_params(reference)), jax.tree.leaves(_params(workdir)), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    segments = [json.loads(line) for line in (workdir / "segments.jsonl").read_text().splitlines()]
    assert segments[-1]["start_step"] >= 10 and segments[-1]["end_step"] == 40
    assert _written_by_process_zero(workdir) == []


def test_unreachable_coordinator_is_a_clear_error_not_a_hang(tmp_path):
    port = _free_port()  # nobody listens there
    t0 = time.monotonic()
    out = subprocess.run(
        _command(tmp_path / "run", "--distributed", "--coordinator", f"localhost:{port}", "--num-processes", "2",
                 "--process-id", "1", "--distributed-timeout", "3"),
        env=_env(1, tmp_path / "cache"), capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    last = out.stderr.strip().splitlines()[-1]
    assert f"localhost:{port}" in last and "within 3 s" in last
    assert time.monotonic() - t0 < 60
    assert not (tmp_path / "run").exists()


def test_distributed_without_settings_is_a_one_line_error(tmp_path):
    env = {k: v for k, v in _env(1, tmp_path / "cache").items()
           if not k.startswith(("SLURM", "OMPI", "JAX_COORDINATOR", "TPU", "CLOUD_TPU"))}
    out = subprocess.run(_command(tmp_path / "run", "--distributed"), env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 2
    assert "--coordinator" in out.stderr and len(out.stderr.strip().splitlines()) == 1


def _cells(workdir: pathlib.Path) -> list[dict]:
    cells = json.loads((workdir / "cells.json").read_text())
    return [{k: v for k, v in c.items() if not k.endswith("time_s")} for c in cells]


def test_dmf_sweep_split_over_two_processes_equals_one(tmp_path, cache):
    # The sweep's runs are split over the devices of both processes (shard_map over the
    # global mesh) and gathered back: every cell must equal the one-process sweep.
    one, two = tmp_path / "one", tmp_path / "two"
    base = [sys.executable, "-m", "jaxlab", "dmf", "sweep", "--config", "smoke"]
    out = subprocess.run([*base, "--workdir", str(one)], env=_env(1, cache), capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    port = _free_port()
    procs = [subprocess.Popen([*base, "--workdir", str(two), "--distributed", "--coordinator", f"localhost:{port}",
                               "--num-processes", "2", "--process-id", str(pid), "--distributed-timeout", "240"],
                              env=_env(1, cache), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              preexec_fn=lambda m=(0o022 if pid == 0 else 0o077): os.umask(m))
             for pid in range(2)]
    _finish(procs)
    assert _cells(two) == _cells(one) and len(_cells(one)) >= 2
    assert json.loads((two / "summary.json").read_text())["environment"]["num_processes"] == 2
    assert _written_by_process_zero(two) == []
