import platform

import numpy as np
import pytest

from jaxlab import cli
from jaxlab.core import runtime


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                    reason="mallopt is glibc's")
def test_tune_host_allocator_takes_effect_and_keeps_memory_usable():
    assert runtime.tune_host_allocator() is True
    with pytest.raises(ValueError, match="mmap_threshold"):
        runtime.tune_host_allocator(mmap_threshold=1 << 40)
    # Allocations of the sizes the setting is about still work and hold their data.
    for mib in (1, 8, 24):
        a = np.full(mib << 18, 3.0, np.float32)
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
