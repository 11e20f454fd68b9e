"""The user's plug-ins on Dask workers (:mod:`evograph.runs.execute.plugins`): the same
payload as a ``local`` pool's, registered by a Dask worker plugin, which Dask runs on every
worker of the cluster before it takes a task, and again on every worker that (re)starts later.
Imported only with the ``dask`` executor.
"""

from __future__ import annotations

from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin

from .plugins import Payload, PluginError, pack


class PluginShipper(WorkerPlugin):
    """Registers the user's plug-ins on each Dask worker as it is set up."""

    def __init__(self, payload: Payload):
        self.payload = payload

    def setup(self, worker: Any) -> None:
        from evograph.runs.execute.plugins import install
        install(self.payload)


def ship_plugins(executor: Any) -> None:
    """Send the user's plug-ins to the workers of ``executor`` (a Dask executor, its ``client``
    connected). A plug-in that a worker cannot load closes the executor and is one
    :class:`PluginError` line."""
    payload = pack()
    if not payload:
        return
    try:
        executor.client.register_plugin(PluginShipper(payload), name="evograph-plugins")
    except Exception as exc:  # noqa: BLE001 - the worker's error, re-raised by the client
        executor.close()
        if isinstance(exc, PluginError):
            raise PluginError(str(exc)) from None
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else "no detail"
        raise PluginError(f"the user's plug-ins could not be registered on the Dask workers: "
                          f"{type(exc).__name__}: {text}") from None
