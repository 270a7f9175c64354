"""Process-level settings that matter for speed on CPU hosts.

XLA's CPU runtime allocates the temporaries of a compiled program as one block with the
C library's `malloc` on every call, from the thread that runs it. glibc serves
allocations above its mmap threshold (128 KiB, adjusted dynamically up to 32 MiB) with
fresh `mmap`s, and a thread other than the main one allocates from its own arena,
whose heaps are at most 64 MiB, so anything larger is mmapped whatever the threshold.
Either way the memory goes back to the kernel when freed and every call pays a page
fault per 4 KiB page: a full-batch GAT step on a 10k-node graph (70 MiB of
temporaries) took 17,900 minor faults per call, and about twice its compute time.
`tune_host_allocator` keeps one arena and raises the thresholds so that freed
temporaries stay in the heap and are reused (0 faults per call after the first); the
same applies to PyTorch in the same process.

The `jaxlab` command line calls it, and so do the benchmarks except `bench_core`,
`bench_mhui`, `bench_scalenet` and `bench_lidarfirst` (their published figures were
taken with glibc's defaults); library code never does, since it changes the whole
process. Accelerator memory is not affected.

**Why a second core gives XLA:CPU little on small programs** (the 2-core virtual machines
these benchmarks ran on; short scripts, medians of 60-200 calls, one core -> two cores). An
operation that XLA splits across the thread pool pays a fixed cost to do so that is about as
large as a small operation itself: a row sum of `[1024, 384]` took 31 -> 91 us, a `tanh` of
it 130 -> 160 us, while `[16384, 384]` gained 2-3x. Matrix products gain only from about
3,000 rows: `[1024, 96] x [96, 384]` 401 -> 490 us (Eigen) and 443 -> 415 us (YNNPACK),
`[4096, 96] x [96, 384]` 1.61 -> 1.05 ms, `[2048, 1024] x [1024, 1024]` 2x; PyTorch's
OpenMP splits the first of these 391 -> 199 us. Inside one program a chain of such products
does better (the same shapes, 20 in a row: 463 -> 293 us each). The virtual machines halt an
idle core at once (`haltpoll` with `guest_halt_poll_ns=0`), but keeping the second core busy
with a low-priority loop did not remove the cost (the row sum: 80 us), and neither did
synchronous dispatch (`jax_cpu_enable_async_dispatch=False`: 61 us). The training steps of
the methods' small CPU configurations are hundreds of such operations: a second core speeds up
jaxlab's VectorNet step 1.38x against PyG's 1.55x, its CoditT5 step 1.1x and 1.5x against
PyTorch's 1.2x and 1.7x (small and experiments' batch), its StyleGAN2 generator step 1.46x
against PyTorch's 1.68x (call by call, the figures in those experiments' READMEs).

`cpu_compiler_options` is the per-program counterpart: XLA options that jaxlab's own
jitted steps pass to `jax.jit(compiler_options=...)` on the CPU backend. XLA:CPU hands
dots, reductions and elementwise fusions to the YNNPACK library; for reductions over a
short minor axis (a softmax over 5 classes, a dot over a 16-wide attention head, on
[100k, 4, 16] arrays) that path was 5-50x slower than XLA's own loops here, so jaxlab
keeps YNNPACK for dots only by default. `make_train_step` and MH-UI's attack loops apply these
options by default.

XLA's own reductions have two slow cases of their own, and `cpu_compiler_options(
reductions=True)` hands reductions to YNNPACK for the steps that meet them (one core,
medians, quiet machine; XLA's loops -> YNNPACK):

- sums over every axis but a short last one, as the gradients of a bias or a LayerNorm
  scale over `[B, P, V, 64]` activations are: 12.7 -> 0.32 ms on `[32, 48, 20, 64]`
  (XLA rewrites it into reduce-windows over the leading axes, 32 x 32 x 20 x 1 there,
  and runs them at about 6 ns per element);
- maxima along a long row, which XLA keeps NaN-propagating and does not vectorise: the
  row max of `[1024, 4000]` logits 4.8 -> 0.60 ms, its log-sum-exp 8.8 -> 2.7 ms, an
  attention softmax over 64 keys 0.93 -> 0.41 ms.

It is slower for a softmax over 5 classes (0.46 -> 1.19 ms on `[100k, 5]`) and a sum over
a 16-wide head (1.37 -> 1.64 ms), which is why it is a choice per method: VectorNet (its
training step 199 -> 96 ms at batch 32), CoditT5 (117 -> 102 ms at batch 32 x 64 tokens),
the Video2StyleGAN GAN step (0.49 -> 0.44 s) and the ViTAS supernet step (23 -> 17 ms on a
sampled architecture) take it; the other methods keep dots only, unmeasured. VectorNet's
training step has since left it: its hand-written VJP writes those reductions for XLA's own
loops (sums over rows as matrix products, means over at most 32 entries, which XLA does not
rewrite into element-by-element reduce-windows), where YNNPACK's reduction fusions had
materialised broadcasts (`jaxlab.vectornet.training.compiler_options`).

Kernel gradients of dense layers, `x^T g` over the rows of `x` and `g`: XLA:CPU gives that
contraction (both operands contracted along their major axis) to a generic Eigen kernel, well
behind PyTorch's; `jaxlab.nn.linear`, which every dense layer of jaxlab uses, copies `x^T`
first so that it is an ordinary matrix product (the figures are in its docstring).

`cpu_compiler_options(dots="eigen")` leaves the dots to XLA's own thunks (Eigen) and keeps
YNNPACK for reductions only if asked: faster for programs made of many small matrix products,
as Video2StyleGAN's ViT encoder is (16 frames through encoder + generator: 27.7 -> 24.9 ms on
two cores, 39.5 -> 37.1 ms on one); slower for its GAN generator's training step (63 -> 72 ms).

One known fault of this jaxlib's YNNPACK dot fusion: the gradient of
`concatenate([x[a:b] @ w0, x[b:c] @ w1])` with respect to `x` (two or more row blocks of one
array, from about 512 rows) crashes the process with a segmentation fault at run time;
autodiff writes that gradient as zero-padded blocks added together, which XLA fuses with
the dots. Writing the backward pass as one concatenation (`jaxlab.coral.models.
grouped_matmul`) avoids it; `make_train_step(..., compiler_options=None)` turns YNNPACK off
for a step that still meets it.

Convolutions (profiled with `jaxlab.core.profiling.op_times`; `python
scripts/profile_conv.py` prints the tables). XLA:CPU runs each convolution and each of
its gradients as one Eigen library call; no YNNPACK or oneDNN option of this jaxlib
helps (`LIBRARY_FUSION_TYPE_INDIVIDUAL_CONVOLUTION` and `xla_cpu_use_onednn` measured
equal or slower). Eigen is close to PyTorch on ordinary 3x3 layers, but three cases are
far off:

- gradients on output maps of 2x2 pixels or fewer, which XLA's simplifier rewrites into
  batch-minor layouts (`01fb_o01i->f01b`) that Eigen runs at a few percent of peak: in
  MH-UI's PGD-20 on its default CNN (8x8 digits, stages 32-64-128) the input gradient
  of one 2x2 layer took half of the attack, and convolutions 86% (491 ms per attack;
  224 ms with `jaxlab.nn.conv`, quiet machine);
- depthwise convolutions, 2-17x slower than a sum of shifted views: they made the
  train step of a ScaleNet subnet (MobileNet blocks, 32x32 images) 3-4x slower than
  PyTorch's (interleaved runs on a loaded machine); with shifted sums it is 1.4-1.8x
  faster than PyTorch's (resolution 8, quiet machine);
- inputs with one channel (2x slower than patches).

`jaxlab.nn.conv` computes those as patches times the kernel (one matrix product on the
dot path) or, depthwise, as fused shifted sums, and leaves ordinary layers to Eigen
(there patches cost memory traffic).

Fusion across the shifted views. XLA:CPU fuses the elementwise producers of an array
into each consumer; a depthwise convolution as kh * kw shifted views (and its kernel
gradient as kh * kw reductions) thus recomputed the producers of its input (masked
batch normalisation, activation, channel masks) once per tap: in the masked ScaleNet
supernet, 125 per-tap reductions each re-ran the whole chain and took 44% of the step.
`optimization_barrier` does not stop it (XLA:CPU removes barriers before fusion); a
conditional whose predicate XLA cannot fold does, since fusion does not cross
computations. `jaxlab.nn.conv` puts the depthwise inputs, outputs and cotangents behind
one (`_materialize`; transparent to differentiation, and kept under `vmap`): the masked
supernet train step went from 121 to 34 ms (smoke space, batch 32, one core), and its
depthwise layers now take the same path as every other model's. The same boundary in
front of ordinary patches made them slower (the recomputation was not their cost), so
it is used for depthwise convolutions only. The figures are in the experiments READMEs
of mhui and scalenet and in `scripts/bench_core.py`'s output.

What is left against PyTorch on this CPU, and why (quiet machine, load average 0.7-0.9
on 2 cores; jax 0.10.2, torch 2.13.0). Convolution kernels alone, value and both
gradients at batch 64, jaxlab's choice against `torch.nn.functional.conv2d` (oneDNN), in
turns of 10 calls (`python scripts/profile_conv.py --torch`): summed over the ten
layers of the table 38.0 against 33.8 ms on one core (0.89x) and 31.9 against 25.5 ms on
two (0.80x). jaxlab is ahead where `jaxlab.nn.conv` takes patches (one input channel
2.3x, 2x2 maps 1.25x, stride 2 onto 2x2 1.8x), level on ordinary 3x3 layers at 4x4-8x8
(0.91-1.06x), and behind on three-channel 32x32 inputs (0.73x; patches are no faster)
and on stride-1 depthwise layers at 16x16 (0.47x). Alternating call by call instead of
in turns made jaxlab's two-core column 52% slower (PyTorch's OpenMP workers still spin
when XLA starts), so the per-layer tables use turns.

The classifier's train step per operation (`python scripts/profile_conv.py --threads 1`,
batch 64): 8.57 ms wall, of which the operations take 7.42 ms: convolutions 4.08 ms
(55%), layout transposes around their gradients 0.81 ms, YNNPACK dots 0.49 ms, pooling
0.39 ms, the rest reductions and elementwise fusions; the other 1.15 ms is the runtime
between operations. On two cores the same step's operations sum to 5.08 ms but its wall
time is 10.3 ms: for a step of ~60 small operations, handing each to the thread pool
costs as much as the work, which is why two cores give it nothing over one. The issue's
1.5x on one core would need this step at 7.3 ms against PyTorch's 11.0: with the
convolutions and their transposes at 4.9 ms, and their kernels at 0.89x of oneDNN's,
that leaves 2.4 ms for everything else, which takes 3.7 ms today, most of it in code
that XLA emits. No option of this jaxlib moved it (classifier step, 2 cores, median of
200 steps: default 8.40 ms; YNNPACK also for convolutions 9.67; XNNPACK graph fusion,
greedy or bypassing its cost model, compiles to the same program; the concurrency-
optimised scheduler off 8.12, within noise; `xla_cpu_use_xnnpack` 8.32). The levers
left are XLA:CPU's: its convolution kernels (Eigen) and its per-operation dispatch. On an
accelerator both frameworks run convolutions in cuDNN; what differs there is that the
jitted step is one program with normalisation, activations and the optimizer fused,
against one kernel launch per operation in eager PyTorch (not measured: no accelerator
was lent to this work).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os

__all__ = ["cpu_compiler_options", "tune_host_allocator", "enable_compilation_cache"]

# mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8


_YNN_OPTION = "xla_cpu_experimental_ynn_fusion_type"


@functools.cache
def _cpu_options_supported(fusion_types: str) -> bool:
    import jax
    import jax.numpy as jnp

    try:
        options = {_YNN_OPTION: fusion_types}
        jax.jit(jnp.sum, compiler_options=options).lower(jnp.ones(2)).compile()
    except Exception:  # an XLA without the option: run with its defaults
        return False
    return True


def cpu_compiler_options(reductions: bool = False, dots: str = "ynnpack") -> dict | None:
    """`compiler_options` for `jax.jit` of jaxlab's steps on the CPU backend.

    Args:
      reductions: hand reductions to YNNPACK too (see the module docstring for when that pays).
      dots: 'ynnpack' (YNNPACK's dot fusions, the default) or 'eigen' (XLA's own dot thunks,
        which call Eigen): the latter for programs of many small matrix products, as a
        3-block ViT over 64 tokens is (see `jaxlab.video2stylegan.encoder.make_encode_fn`).

    Returns None elsewhere than on the CPU backend, where the XLA build lacks the option, or
    when the environment sets `JAXLAB_CPU_COMPILER_OPTIONS=0`.
    """
    import jax

    if dots not in ("ynnpack", "eigen"):
        raise ValueError(f"cpu_compiler_options: dots must be 'ynnpack' or 'eigen', got {dots!r}")
    if os.environ.get("JAXLAB_CPU_COMPILER_OPTIONS", "1") == "0" or jax.default_backend() != "cpu":
        return None
    kinds = (["LIBRARY_FUSION_TYPE_DOT"] if dots == "ynnpack" else []) + (
        ["LIBRARY_FUSION_TYPE_REDUCE"] if reductions else [])
    fusion_types = ",".join(kinds)
    return {_YNN_OPTION: fusion_types} if _cpu_options_supported(fusion_types) else None


@functools.cache
def _libc():
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        lib = ctypes.CDLL(name)
        lib.mallopt  # noqa: B018 - absent outside glibc
    except (OSError, AttributeError):
        return None
    return lib


def tune_host_allocator(mmap_threshold: int = 512 << 20, trim_threshold: int = 1 << 30,
                        top_pad: int = 64 << 20, arena_max: int = 1) -> bool:
    """Keeps freed host memory for reuse instead of returning it to the kernel (glibc).

    Args:
      mmap_threshold: allocations at least this large still get their own mapping. XLA
        allocates all temporaries of a program as one block, so this should exceed a
        step's temporary memory. glibc versions that refuse a value above 32 MiB get
        32 MiB.
      trim_threshold: free memory at the top of the heap kept before trimming.
      top_pad: extra memory requested from the kernel when the heap grows.
      arena_max: number of malloc arenas (1: all threads share the main heap, which can
        grow past 64 MiB). Takes effect for threads that have not allocated yet, so
        call this before JAX starts its backend.

    Returns:
      True if all settings took effect; False where the C library is not glibc
      (then nothing changes).
    """
    for name, v in (("mmap_threshold", mmap_threshold), ("trim_threshold", trim_threshold),
                    ("top_pad", top_pad), ("arena_max", arena_max)):
        if not 0 <= int(v) < 2 ** 31:
            raise ValueError(f"{name} must be in [0, 2**31) bytes (a C int), got {v}")
    lib = _libc()
    if lib is None:
        return False
    ok = lib.mallopt(_M_MMAP_THRESHOLD, int(mmap_threshold)) == 1
    if not ok and mmap_threshold > 32 << 20:
        ok = lib.mallopt(_M_MMAP_THRESHOLD, 32 << 20) == 1
    ok &= lib.mallopt(_M_TRIM_THRESHOLD, int(trim_threshold)) == 1
    ok &= lib.mallopt(_M_TOP_PAD, int(top_pad)) == 1
    if arena_max:
        ok &= lib.mallopt(_M_ARENA_MAX, int(arena_max)) == 1
    return bool(ok)


def enable_compilation_cache(path: str | None = None) -> str | None:
    """Turns on JAX's persistent compilation cache, so a rerun of a command (a resumed
    run, the next action of a pipeline) loads its compiled programs instead of compiling
    them again.

    The directory is `path`, else `$JAXLAB_COMPILATION_CACHE`, else
    `~/.cache/jaxlab/jax`; `JAXLAB_COMPILATION_CACHE=0` turns the cache off. Programs that
    compile in under half a second are not stored. The `jaxlab` command line calls this;
    library code does not (it changes the process's JAX configuration). The cache is
    trusted code: keep it private to the user. Returns the directory used, or None.
    """
    import jax

    path = path or os.environ.get("JAXLAB_COMPILATION_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "jaxlab", "jax")
    if path == "0":
        return None
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    return path
