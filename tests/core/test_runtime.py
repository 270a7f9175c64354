import platform
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from jaxlab import cli
from jaxlab.core import runtime

glibc_only = pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                                reason="mallopt is glibc's")

# mallocs, writes and frees a 96 MiB block 5 times from a worker thread (as XLA's CPU
# runtime does with a program's temporaries) and prints the minor page faults of the last 4.
_FAULTS = textwrap.dedent("""
    import ctypes, sys, threading
    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    if sys.argv[1] == "tuned":
        from jaxlab.core import runtime
        assert runtime.tune_host_allocator()
    def minflt():
        return int(open("/proc/self/stat").read().split(")")[1].split()[7])
    out = []
    def work():
        for i in range(5):
            if i == 1:
                start = minflt()
            p = libc.malloc(96 << 20)
            ctypes.memset(p, 1, 96 << 20)
            libc.free(p)
        out.append(minflt() - start)
    t = threading.Thread(target=work)
    t.start()
    t.join()
    print(out[0])
""")


def _faults(mode):
    r = subprocess.run([sys.executable, "-c", _FAULTS, mode], capture_output=True, text=True, check=True)
    return int(r.stdout.strip())


@glibc_only
def test_tuned_allocator_reuses_freed_blocks_instead_of_faulting_them_in_again():
    pages = (96 << 20) // 4096
    default, tuned = _faults("default"), _faults("tuned")
    assert default > 2 * pages  # every reallocation is faulted in again
    assert tuned < pages // 20  # the freed block is reused


@glibc_only
def test_tune_host_allocator_validates_and_reports():
    assert runtime.tune_host_allocator() is True
    with pytest.raises(ValueError, match="mmap_threshold"):
        runtime.tune_host_allocator(mmap_threshold=1 << 40)
    a = np.full(24 << 18, 3.0, np.float32)
    assert float(a.sum()) == 3.0 * a.size


def test_cli_tunes_the_allocator_unless_told_not_to(monkeypatch):
    calls = []
    monkeypatch.setattr(runtime, "tune_host_allocator", lambda: calls.append(1) or True)
    monkeypatch.setenv("JAXLAB_TUNE_ALLOCATOR", "1")
    cli.main(["classifier", "train", "--config", "smoke", "--print-config"])
    assert calls == [1]
    monkeypatch.setenv("JAXLAB_TUNE_ALLOCATOR", "0")
    cli.main(["classifier", "train", "--config", "smoke", "--print-config"])
    assert calls == [1]


def test_cpu_compiler_options_compile_and_keep_results(monkeypatch):
    import jax
    import jax.numpy as jnp

    opts = runtime.cpu_compiler_options()
    assert opts is None or "xla_cpu_experimental_ynn_fusion_type" in opts
    x = jnp.asarray(np.random.default_rng(0).normal(size=(300, 4, 16)), jnp.float32)
    f = lambda x: jax.nn.log_softmax(jnp.sum(x * x[::-1], -1))
    np.testing.assert_allclose(np.asarray(jax.jit(f, compiler_options=opts)(x)),
                               np.asarray(jax.jit(f)(x)), rtol=1e-5, atol=1e-5)
    # with YNNPACK reductions: sums over leading axes (bias gradients), a long-row max and a
    # short softmax, against XLA's own loops and against NumPy in float64
    ropts = runtime.cpu_compiler_options(reductions=True)
    assert ropts is None or "LIBRARY_FUSION_TYPE_REDUCE" in ropts["xla_cpu_experimental_ynn_fusion_type"]
    y = jnp.asarray(np.random.default_rng(1).normal(size=(8, 12, 20, 64)), jnp.float32)
    g = lambda y: (jnp.sum(y, (0, 1, 2)), jnp.max(y.reshape(96, -1), -1), jax.nn.softmax(y[..., :5], -1))
    got = jax.jit(g, compiler_options=ropts)(y)
    y64 = np.asarray(y, np.float64)
    e = np.exp(y64[..., :5] - y64[..., :5].max(-1, keepdims=True))
    for a, b, ref in zip(got, jax.jit(g)(y), (y64.sum((0, 1, 2)), y64.reshape(96, -1).max(-1),
                                             e / e.sum(-1, keepdims=True))):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(np.asarray(a), ref, rtol=1e-4, atol=1e-4)
    # dots left to XLA's own thunks (Eigen), reductions to YNNPACK: a small ViT-like block
    eopts = runtime.cpu_compiler_options(reductions=True, dots="eigen")
    if eopts is not None:
        assert eopts["xla_cpu_experimental_ynn_fusion_type"] == "LIBRARY_FUSION_TYPE_REDUCE"
        assert runtime.cpu_compiler_options(dots="eigen")["xla_cpu_experimental_ynn_fusion_type"] == ""
    w = jnp.asarray(np.random.default_rng(2).normal(size=(64, 96)), jnp.float32) / 8
    h = lambda y: jax.nn.softmax(jnp.einsum("bqd,bkd->bqk", y.reshape(8, 240, 64) @ w, y.reshape(8, 240, 64) @ w), -1)
    want = np.asarray(h(y))
    for opts in (eopts, runtime.cpu_compiler_options(dots="eigen")):
        np.testing.assert_allclose(np.asarray(jax.jit(h, compiler_options=opts)(y)), want, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="dots must be 'ynnpack' or 'eigen'"):
        runtime.cpu_compiler_options(dots="onednn")
    monkeypatch.setenv("JAXLAB_CPU_COMPILER_OPTIONS", "0")
    assert runtime.cpu_compiler_options() is None
    assert runtime.cpu_compiler_options(reductions=True) is None
    assert runtime.cpu_compiler_options(dots="eigen") is None
