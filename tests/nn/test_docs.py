"""The examples in the nn package's docstrings run and print what they say."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "tunelab.nn",
    "tunelab.nn.callbacks",
    "tunelab.nn.config",
    "tunelab.nn.data",
    "tunelab.nn.factory",
    "tunelab.nn.initializers",
    "tunelab.nn.lr_finder",
    "tunelab.nn.metrics",
    "tunelab.nn.models",
    "tunelab.nn.objective",
    "tunelab.nn.optimizers",
    "tunelab.nn.provider",
    "tunelab.nn.runner",
    "tunelab.nn.schedules",
    "tunelab.nn.splits",
    "tunelab.nn.train",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
