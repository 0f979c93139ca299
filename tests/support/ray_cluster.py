"""A two-node Ray cluster on this machine for ``fusionserve score --engine ray`` tests: two
raylets (each its own object store and logical CPUs), no dashboard, on loopback only
(tests/conftest.py sets Ray's switch before Ray is imported; ``two_node_cluster`` checks
it). The second node declares one logical GPU, so that a job with ``--device auto`` schedules
its model actor as on a GPU node (ONNX Runtime's CPU build then runs it on the CPU
provider)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import ray
from ray.cluster_utils import Cluster
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

# Logical CPUs per node: enough that both stages' pools fit on the head alone once the other
# node is removed (Ray's resources are logical: more than the machine's two cores is fine).
NODE_CPUS = 2
OBJECT_STORE_BYTES = 100 * 2**20


@dataclass
class TwoNodes:
    """The cluster, its second node (the one a test may remove) and its address."""

    cluster: Cluster
    worker: Any

    @property
    def address(self) -> str:
        address: str = self.cluster.address
        return address

    def remove_worker(self) -> None:
        """Take the second node away (its raylet and its processes end)."""
        self.cluster.remove_node(self.worker)

    @contextmanager
    def head_held(self) -> Iterator[None]:
        """Every CPU of the head node held by an idle actor until the block ends: what is
        placed meanwhile goes to the second node."""
        head = NodeAffinitySchedulingStrategy(self.cluster.head_node.node_id, soft=False)
        holder = ray.remote(num_cpus=NODE_CPUS)(_Holder).options(scheduling_strategy=head).remote()
        try:
            ray.get(holder.ready.remote(), timeout=60)
            yield
        finally:
            ray.kill(holder)

    def restore_worker(self) -> None:
        """Put a second node back (after ``remove_worker``)."""
        self.worker = _add_worker(self.cluster)
        self.cluster.wait_for_nodes()


@contextmanager
def two_node_cluster() -> Iterator[TwoNodes]:
    """The cluster, with this process connected to it as a driver."""
    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": NODE_CPUS,
            "object_store_memory": OBJECT_STORE_BYTES,
            "include_dashboard": False,
        },
    )
    try:
        worker = _add_worker(cluster)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, logging_level=logging.WARNING, log_to_driver=False)
        addresses = {node["NodeManagerAddress"] for node in ray.nodes()}
        if addresses != {"127.0.0.1"}:
            ray.shutdown()
            raise RuntimeError(f"the test cluster's nodes are not on loopback: {addresses}")
        try:
            yield TwoNodes(cluster, worker)
        finally:
            ray.shutdown()
    finally:
        cluster.shutdown()  # type: ignore[no-untyped-call]


class _Holder:
    """An actor that only holds its CPUs."""

    def ready(self) -> bool:
        return True


def _add_worker(cluster: Cluster) -> Any:
    return cluster.add_node(num_cpus=NODE_CPUS, num_gpus=1, object_store_memory=OBJECT_STORE_BYTES)
