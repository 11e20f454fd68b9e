"""A worker's weights files: writing a trained module's weights (now, or later on a pool worker's
sender thread), and reading a parent's — from memory when this process wrote them.

Reading and parsing a small weights file back, and serialising one, are a noticeable share of
the engine's own cost per candidate at digits-sized evaluations, hence the memory of recent
writes, the small-file read path and the numpy writer below.
"""

from __future__ import annotations

import dataclasses
import threading
from collections import OrderedDict
from pathlib import Path

import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import load_file

from ...files import atomic_write_bytes
from .task import TaskResult, error_fields

SMALL_WEIGHTS_BYTES = 16 * 1024 * 1024  # parent weights up to this size are read whole
RECENT_WEIGHTS_BYTES = 64 * 1024 * 1024  # weights a worker wrote, kept in memory (RecentWeights)


class RecentWeights:
    """The weights files this process wrote, kept in memory by path (least recently used
    dropped first, ``budget`` bytes in all), so that a child evaluated by the worker that
    trained its parent inherits without reading the file back: always so with one worker, and
    often with a few.

    Exact: the tensors kept are the very ones written, and a weights file is written again
    only by another attempt of the same evaluation, which trains the same values (training is
    deterministic) and, in this process, replaces the entry. A process that did not write a
    file, or was restarted since, reads it. Used by the main thread and a pool worker's sender
    thread at once, hence the lock."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self._items: OrderedDict[str, tuple[dict[str, torch.Tensor], int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def put(self, path: str, tensors: dict[str, torch.Tensor]) -> None:
        size = sum(t.numel() * t.element_size() for t in tensors.values())
        with self._lock:
            self._drop(path)
            if size > self.budget:
                return
            self._items[path] = (tensors, size)
            self._bytes += size
            while self._bytes > self.budget:
                self._drop(next(iter(self._items)))

    def get(self, path: str) -> dict[str, torch.Tensor] | None:
        with self._lock:
            item = self._items.get(path)
            if item is None:
                return None
            self._items.move_to_end(path)
            return item[0]

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0

    def _drop(self, path: str) -> None:
        item = self._items.pop(path, None)
        if item is not None:
            self._bytes -= item[1]


RECENT_WEIGHTS = RecentWeights(RECENT_WEIGHTS_BYTES)


def serialize_weights(tensors: dict[str, torch.Tensor], meta: dict[str, str] | None) -> bytes:
    """The safetensors file of ``tensors`` (contiguous, on CPU). Made by the library's numpy
    writer when every dtype has a numpy twin: the very bytes of its torch writer, for a fraction
    of the CPU time (the torch writer's own Python work, such as looking for shared storage,
    which a built module never has, is most of it), which a pool worker spends once per
    candidate. Otherwise (bfloat16) by the torch writer."""
    try:
        arrays = {name: tensor.numpy() for name, tensor in tensors.items()}
    except TypeError:  # a dtype numpy lacks
        from safetensors.torch import save
        return save(tensors, metadata=meta)
    from safetensors.numpy import save as save_arrays
    return save_arrays(arrays, metadata=meta)


def save_weights(module: torch.nn.Module, path: str, meta: dict[str, str]) -> None:
    """Write ``module``'s weights to ``path`` atomically and remember them (RecentWeights)."""
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in module.state_dict().items()}
    atomic_write_bytes(Path(path), serialize_weights(tensors, meta))
    RECENT_WEIGHTS.put(path, tensors)  # only once on disk: a failed write is not remembered


@dataclasses.dataclass
class PendingWrite:
    """A trained module's weights, still to be written durably before its result may be sent.

    A pool worker hands these to its sender thread (:mod:`evograph.runs.execute.executors`), so
    that the file write and its fsyncs overlap the next evaluation instead of preceding it; the
    result leaves the worker only once its weights are on disk, so a stored result always has
    its weights file (children inherit from it)."""

    result: TaskResult
    module: torch.nn.Module
    path: str
    meta: dict[str, str]

    def run(self) -> TaskResult:
        """Write; the result to send: as it was, or failed when the write failed (a full disk),
        as it would have been had the write happened inside the evaluation."""
        try:
            save_weights(self.module, self.path, self.meta)
        except Exception as exc:  # noqa: BLE001 - reported in the result, like any error
            return self.result.replace(**error_fields(exc), weights=None)
        return self.result


def write_pending(writes: list[PendingWrite], results: list[TaskResult]) -> list[TaskResult]:
    """Run ``writes``; ``results`` with those whose write failed marked failed."""
    written = {write.result.id: write.run() for write in writes}
    return [written.get(result.id, result) for result in results]


def parent_weights(path: str) -> dict[str, torch.Tensor] | None:
    """The tensors of the weights file at ``path``: from memory when this process wrote it
    (:class:`RecentWeights`), else from the file; None when there is no file (the parent
    failed, or is being re-evaluated)."""
    tensors = RECENT_WEIGHTS.get(path)
    if tensors is not None:
        return tensors
    file = Path(path)
    return _load_weights(file) if file.exists() else None


def _load_weights(path: Path) -> dict[str, torch.Tensor]:
    """A weights file's tensors. A small file is read whole and parsed (faster than
    ``load_file``, which maps the file); a big one is mapped, so it is never held twice in
    memory."""
    if path.stat().st_size <= SMALL_WEIGHTS_BYTES:
        return load_safetensors(path.read_bytes())
    return load_file(path)
