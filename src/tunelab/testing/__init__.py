"""Contract test suites: every Storage / Strategy / Scheduler / Executor implementation joins one by
subclassing it in its own test module and providing a fixture (``storage``, ``strategy``,
``scheduler`` or ``executor``)."""

from tunelab.testing.executors import ExecutorContract
from tunelab.testing.schedulers import SchedulerContract
from tunelab.testing.storage import StorageContract
from tunelab.testing.strategies import StrategyContract

__all__ = ["ExecutorContract", "SchedulerContract", "StorageContract", "StrategyContract"]
