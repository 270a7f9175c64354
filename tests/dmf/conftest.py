"""Single-threaded CPU LAPACK for the DMF tests (see jaxlab/dmf/threads.py)."""

import pytest

from jaxlab.dmf import single_threaded_lapack


@pytest.fixture(autouse=True, scope="module")
def _single_threaded_lapack():
    with single_threaded_lapack():
        yield
