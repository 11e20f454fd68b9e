"""A worker process's own state: its device, its torch set-up, its resident dataset, its
training step times. Set up once by :func:`init_worker` (a pool worker, a Dask worker, the
serial executor's own process), then used by every evaluation it runs
(:mod:`evograph.runs.execute.worker`).
"""

from __future__ import annotations

import ctypes
import os
import resource
from functools import lru_cache
from pathlib import Path

import torch

from ...compile.determinism import use_deterministic_kernels
from ...compile.training.batch_rule import StepTimes
from ...compile.training.sgd import make_optimizer
from ...data.datasets import load_dataset
from ...devices import pick_device, resolve_device
from ...genome.space import OPTIMIZERS as BUILT_IN_OPTIMIZERS
from .task import DataSpec

_WORKER = {"device": "auto"}        # this process's device, set by init_worker
STEP_TIMES = StepTimes()  # this process's training step times: the batching rule's data
# glibc's mallopt parameters and a worker's settings (see keep_freed_memory)
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD_BYTES = 64 * 1024 * 1024
TRIM_THRESHOLD_BYTES = 256 * 1024 * 1024


def init_worker(threads: int = 1, device: str = "auto", memory_limit_mb: int = 0,
                preload: DataSpec | None = None) -> None:
    """Set up a worker process: one torch thread (two intra-op threads stall badly on small
    kernels), its device, torch's one-time initialisation paid up front (:func:`warm_up`), the
    run's dataset made resident when ``preload`` names it (loaded while the driver asks for the
    first batch, not inside the first evaluation), and an address-space limit of
    ``memory_limit_mb`` MiB *beyond what the process already maps* (a CUDA build of torch alone
    maps a few GiB of address space). A GPU worker trains with deterministic kernels
    (:mod:`evograph.compile.determinism`)."""
    torch.set_num_threads(threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    keep_freed_memory()
    _WORKER["device"] = device or "auto"
    use_deterministic_kernels(pick_device(_WORKER["device"]))  # before cuBLAS starts up
    warm_up(pick_device(_WORKER["device"]))
    if preload:
        try:
            dataset_for(preload, device_for(preload.device))
        except Exception:  # noqa: BLE001,S110 - the first task meets the same error, reports it
            pass
    if memory_limit_mb > 0 and not str(device).startswith("cuda"):  # CUDA reserves huge VM
        mapped = _mapped_bytes()
        hard = resource.getrlimit(resource.RLIMIT_AS)[1]
        soft = mapped + memory_limit_mb * 1024 * 1024
        if hard != resource.RLIM_INFINITY:
            soft = min(soft, hard)
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def keep_freed_memory() -> bool:
    """Ask the C allocator (glibc's ``mallopt``) to keep the memory this process frees for its
    next candidate rather than hand it back to the kernel: blocks up to
    :data:`MMAP_THRESHOLD_BYTES` come from the heap instead of fresh mappings, and up to
    :data:`TRIM_THRESHOLD_BYTES` of free heap stay mapped. By default glibc reuses freed blocks
    only up to a much smaller size, and an evaluation pass over a thousand images allocates
    layers larger than that: those were mapped anew and page-faulted in for every candidate.
    Returns whether the allocator took the settings (False off glibc, where nothing changes)."""
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and \
        bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))


def warm_up(device: torch.device) -> None:
    """One training step of a tiny network with every built-in optimizer gene, on ``device``.

    The first ``step``/``zero_grad`` of a ``torch.optim`` optimizer in a process imports
    ``torch._dynamo`` (and sympy with it), which would otherwise be charged to the first
    candidate's training time (a skewed ``train_time`` objective) and to the engine's overhead.
    On a GPU this also creates the CUDA context before the first task's clock starts.
    """
    model = torch.nn.Linear(4, 2).to(device)
    x = torch.zeros(3, 4, device=device)
    for name in BUILT_IN_OPTIMIZERS:  # not a plug-in's (``learned`` needs its file)
        optimizer = make_optimizer({"optimizer": name, "learning_rate": 1e-3}, model.parameters())
        optimizer.zero_grad(set_to_none=True)
        model(x).sum().backward()
        optimizer.step()


def _mapped_bytes() -> int:
    """Virtual memory this process maps now (Linux /proc; 0 elsewhere)."""
    try:
        return int(Path("/proc/self/statm").read_text().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


@lru_cache(maxsize=4)
def _dataset(name: str, seed: int, root: str, download: bool, val_fraction: float,
             test_fraction: float, limit: int):
    return load_dataset(name, seed=seed, root=root or None, download=download,
                        val_fraction=val_fraction, test_fraction=test_fraction,
                        limit=limit or None)


@lru_cache(maxsize=4)
def _resident(key: tuple, device: str):
    """The dataset with every split moved to ``device`` once (pinned host memory, one copy)."""
    return _dataset(*key).to(device, pinned=True)


def dataset_for(spec: DataSpec, device: torch.device | str | None = None):
    """The dataset ``spec`` names, resident on ``device`` (kept for the life of the process)."""
    d = spec.dataset
    key = (d["name"], int(spec.data_seed), d.get("root", ""), bool(d.get("download", False)),
           float(d["val_fraction"]), float(d["test_fraction"]), int(d.get("limit", 0)))
    return _resident(key, str(device or "cpu"))


def device_for(asked: str | None) -> torch.device:
    """The device a task asking for ``asked`` ("": none) runs on in this process."""
    return pick_device(resolve_device(asked, _WORKER["device"]))
