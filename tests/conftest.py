"""Fixtures every test folder may use."""

from __future__ import annotations

import pytest

from tunelab.nn import torch_threads


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny networks: a second intra-op thread only adds synchronisation, and on a busy machine
    OpenMP's spinning threads make each step many times slower. Use it with
    ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    with torch_threads(1):
        yield
