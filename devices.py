"""Which device a piece of work runs on — the one place that reads ``auto``, ``cpu``, ``cuda`` and
``cuda:N``: the device of one computation (:func:`pick_device`), of one task on a worker
(:func:`resolve_device`) and of each worker of a pool (:func:`worker_devices`)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from .errors import ConfigError

if TYPE_CHECKING:
    import torch


def cuda_devices() -> int:
    """How many CUDA devices torch sees (0 without CUDA)."""
    import torch
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def pick_device(requested: str | torch.device, key: str = "device") -> torch.device:
    """``auto`` is CUDA when present, else CPU; anything else is taken as torch spells it. A CUDA
    device asked for on a machine without one is a :class:`ConfigError` naming ``key``."""
    import torch
    requested = str(requested)
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"{key}: {requested!r} requested but CUDA is not available")
    return torch.device(requested)


def resolve_device(requested: str | None, worker_device: str) -> str:
    """The device a task runs on: the worker's own unless the task names a specific one
    (a generic ``cuda`` request keeps the worker's assigned GPU)."""
    if not requested or requested == "auto":
        return worker_device or "auto"
    if requested == "cuda" and str(worker_device).startswith("cuda"):
        return worker_device
    return requested


def worker_devices(workers: int, device: str, per_gpu: int) -> list[str]:
    """One device string per worker. GPUs (when requested, or found with ``device = "auto"``):
    ``per_gpu`` workers share each GPU, since one small network leaves a GPU mostly idle; an
    explicit ``workers`` count is spread round-robin over those slots. CPU: one worker per
    core available to this process."""
    gpus = cuda_devices() if device != "cpu" else 0
    if device.startswith("cuda") and not gpus:
        raise ConfigError(f"executor.device: {device!r} requested but torch finds no CUDA device")
    if device.startswith("cuda:"):
        if int(device.split(":", 1)[1]) >= gpus:
            raise ConfigError(f"executor.device: {device!r} does not exist ({gpus} CUDA devices)")
        slots = [device] * per_gpu
    elif gpus:
        slots = [f"cuda:{g}" for g in range(gpus) for _ in range(per_gpu)]
    else:
        slots = ["cpu"] * available_cores()
    count = workers or len(slots)
    return [slots[i % len(slots)] for i in range(count)]


def available_cores() -> int:
    """The CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:
        return os.cpu_count() or 1
