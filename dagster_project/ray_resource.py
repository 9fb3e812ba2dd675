"""Where curation assets run their shards: this machine's process pool, or a Ray cluster.

An asset takes ``ray: RayBackend`` and passes ``ray.backend()`` to ``run_stage`` (or
``run_dedup``); with ``kind="local"`` (the default) nothing about Ray is imported. With
``kind="ray"`` the resource connects once per run (to ``address``, or to a Ray it starts
here with ``num_cpus`` / ``object_store_memory_mb``) and disconnects afterwards.
"""

from __future__ import annotations

from typing import Literal

import dagster as dg
from pydantic import PrivateAttr

from curate.runner import Backend


class RayBackend(dg.ConfigurableResource):
    """The runner backend for curation assets (see ``curate.ray_backend``)."""

    kind: Literal["local", "ray"] = "local"
    address: str | None = None
    """``ray://head:10001`` (Ray Client), ``head:6379`` or ``auto`` (a node of the cluster);
    none: ``RAY_ADDRESS`` if set, else a Ray started for the run on this machine."""
    num_cpus: int | None = None
    """CPUs of a Ray started here (ignored when connecting to a cluster)."""
    object_store_memory_mb: int | None = None
    """Object store of a Ray started here (ignored when connecting to a cluster)."""

    _started: bool = PrivateAttr(default=False)

    def backend(self) -> Backend:
        return Backend(self.kind, self.address)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        if self.kind != "ray":
            return
        import os

        import ray

        if ray.is_initialized():
            return
        address = self.address or os.environ.get("RAY_ADDRESS")
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            memory = (self.object_store_memory_mb * 2**20
                      if self.object_store_memory_mb else None)
            ray.init(num_cpus=self.num_cpus, object_store_memory=memory,
                     include_dashboard=False, log_to_driver=False)
        self._started = True

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._started:
            import ray

            ray.shutdown()
            self._started = False
