"""Contract test suites: every Storage / Strategy implementation joins one by subclassing it in
its own test module and providing a fixture (``storage`` or ``strategy``)."""

from tunelab.testing.storage import StorageContract
from tunelab.testing.strategies import StrategyContract

__all__ = ["StorageContract", "StrategyContract"]
