"""A local Ray cluster for the tests: a head and two worker nodes, separate raylets on 127.0.0.1,
one CPU each; worker node i also has one unit of the custom resource `worker-i`, so a test can
send a trial to a node of its choosing. Run by `.ci/ray start DIR`, which waits for DIR/address;
SIGTERM shuts it down.

DIR/address holds the cluster's address; DIR/workers.json the raylet pid of each worker node,
so a test can take a node away."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from pathlib import Path

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

from ray.cluster_utils import Cluster  # noqa: E402 - after the environment it reads

folder = Path(sys.argv[1])
local = {"num_cpus": 1, "node_ip_address": "127.0.0.1"}
cluster = Cluster(initialize_head=True, head_node_args={**local, "include_dashboard": False})
workers = [cluster.add_node(**local, resources={f"worker-{i}": 1}) for i in range(2)]
cluster.wait_for_nodes()
(folder / "workers.json").write_text(
    json.dumps([node.all_processes["raylet"][0].process.pid for node in workers])
)
stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stop.set())
signal.signal(signal.SIGINT, lambda *_: stop.set())
(folder / "address").write_text(cluster.address)
stop.wait()
cluster.shutdown()
