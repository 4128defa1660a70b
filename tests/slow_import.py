"""An objective whose module takes 2 s to import, as one that imports torch can on a busy machine:
a worker process spends that long before its first trial starts."""

import time

time.sleep(2.0)


def quick(trial):
    trial.report(1, value=trial.params["x"])
    return trial.params["x"]
