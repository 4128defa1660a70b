"""Fixtures every test folder may use."""

from __future__ import annotations

import pytest

from tunelab.nn import torch_threads


def pytest_collection_modifyitems(items):
    """Tests that take a node out of the shared Ray cluster for good run after every other."""
    items.sort(key=lambda item: item.get_closest_marker("takes_a_ray_node") is not None)


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny networks: a second intra-op thread only adds synchronisation, and on a busy machine
    OpenMP's spinning threads make each step many times slower. Use it with
    ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    with torch_threads(1):
        yield


@pytest.fixture
def log_lines(caplog):
    """The tunelab logger's lines (it does not propagate to the root logger by default)."""
    import logging

    from tunelab.events import logger

    logger.propagate = True
    with caplog.at_level(logging.INFO, logger="tunelab"):
        yield caplog
    logger.propagate = False
