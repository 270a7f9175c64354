"""Keep the CPU LAPACK calls (SVD, eigvalsh) of jaxlab.dmf single-threaded.

jax's CPU SVD and eigendecompositions call LAPACK through SciPy's OpenBLAS. On a busy
machine (more runnable threads than cores) OpenBLAS's spinning worker threads slow a
100x100 float64 SVD down from ~1 ms to 100-200 ms (measured on the 2-core CI machine), and
DMF logs an SVD every `log_every` steps. `single_threaded_lapack()` limits those BLAS
pools to one thread (via threadpoolctl, at run time) for the duration of a block; the CLI
actions, the benchmark and the tests use it. Set `JAXLAB_BLAS_THREADS=N` to choose N.
"""

from __future__ import annotations

import contextlib
import functools
import os

__all__ = ["single_threaded_lapack", "float64_action"]


@contextlib.contextmanager
def single_threaded_lapack():
    try:
        import scipy.linalg  # noqa: F401  (loads the OpenBLAS that jax's LAPACK kernels use)
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield
        return
    with threadpool_limits(int(os.environ.get("JAXLAB_BLAS_THREADS", "1")), user_api="blas"):
        yield


def float64_action(fn):
    """Runs an action `fn(config, workdir)` in float64 with single-threaded CPU LAPACK."""
    import jax

    @functools.wraps(fn)
    def wrapped(config, workdir):
        with jax.enable_x64(True), single_threaded_lapack():
            return fn(config, workdir)

    return wrapped
