"""Deterministic GPU kernels: on a GPU too, the same seed trains the same bits.

On CPU torch's kernels are deterministic. On CUDA several are not by default: cuDNN may pick its
convolution algorithm by timing, some backward passes accumulate with atomic adds in whatever
order the threads arrive, and cuBLAS splits work over a workspace in ways that can differ from
call to call. A candidate trained twice then differs in the last bits of its loss, and the
engine's promises — a resumed run ends where the uninterrupted one does, the final state does not
depend on the number of workers or on the order in which results arrive — would hold on CPU
only (on an H100 two trainings of one task differ within the first few loss values; see
docs/performance.md).

:func:`use_deterministic_kernels` switches a process to deterministic kernels before it trains
on a GPU; the ops whose deterministic form torch lacks are avoided where the compiler emits
them (:func:`evograph.compile.layers.adaptive_avg_pool`). See PyTorch's notes on
reproducibility (``torch.use_deterministic_algorithms``) and NVIDIA's cuBLAS documentation on
results reproducibility (``CUBLAS_WORKSPACE_CONFIG``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch

# one of the two workspace settings under which cuBLAS promises run-to-run reproducibility;
# read when the process creates its first cuBLAS handle
CUBLAS_WORKSPACE = ":4096:8"


def use_deterministic_kernels(device: torch.device | str) -> None:
    """Before this process trains on ``device``: deterministic cuDNN and cuBLAS and torch's
    deterministic algorithms, if it is a CUDA device (a CPU device changes nothing).

    Process-wide and idempotent. An op with no deterministic CUDA kernel warns once rather than
    failing the candidate (``warn_only``). Set it before the process's first cuBLAS call (a
    worker does, in :func:`evograph.runs.execute.worker.init_worker`): the workspace setting is read
    once; a process that already used cuBLAS keeps its first setting unless it was set already.
    """
    if torch.device(device).type != "cuda":
        return
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    torch.use_deterministic_algorithms(True, warn_only=True)


@contextmanager
def seeded_cpu_rng(seed: int | None) -> Iterator[None]:
    """Inside: torch's CPU generator seeded with ``seed`` (left as it is when None), for a
    seeded initialisation; after: the generator as it was. Accelerators' generators are not
    touched — ``torch.manual_seed`` would also queue a seed for every CUDA device, changing the
    global CUDA stream of random numbers outside the block (and costing time per build)."""
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.default_generator.manual_seed(seed)
        yield
