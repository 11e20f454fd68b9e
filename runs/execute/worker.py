"""One evaluation, as run inside a worker process: plain data in, plain data out.

A task is a JSON-able dict (genome JSON, seed, dataset and fitness sections, parent-weights path,
where to write the weights); the result is a JSON-able dict. Nothing else crosses a process
boundary, so the same function runs in-process, in a spawned pool worker or on a Dask worker.

A *unit* is what an executor hands a worker: one task, or a group of tasks sharing an
architecture that :func:`evaluate_group` may train together (:mod:`evograph.compile.training.batched`).
Each worker process keeps its dataset resident on its device, loaded once.

For tests, :mod:`evograph.runs.execute.faults` can make chosen evaluations crash, hang, run out of memory
or diverge (only when ``EVOGRAPH_FAULT_INJECTION=1``).
"""

from __future__ import annotations

import ctypes
import dataclasses
import math
import os
import resource
import threading
import time
import traceback
from collections import OrderedDict
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import load_file

from ... import meta as _meta  # noqa: F401  (registers the meta-learners' fitness generators)
from ...compile.builder import build
from ...compile.determinism import use_deterministic_kernels
from ...compile.inherit import inherit_weights
from ...compile.training.batch_rule import BatchRule, StepTimes, cost_class
from ...compile.training.batched import batch_problem, score_batched
from ...compile.training.fitness import Score, make_fitness
from ...compile.training.sgd import make_optimizer
from ...data.datasets import load_dataset
from ...devices import pick_device, resolve_device
from ...errors import InvalidGenome
from ...genome.core import Genome
from ...genome.io import from_dict
from ...genome.space import OPTIMIZERS as SPACE_OPTIMIZERS
from ...genome.validate import analyze
from ..store import atomic_write_bytes
from .faults import apply_module_fault, trigger_process_fault, with_fault

Task = dict[str, Any]
Result = dict[str, Any]

_WORKER = {"device": "auto"}        # this process's device, set by init_worker
_STEP_TIMES = StepTimes()  # this process's training step times: the batching rule's data
SMALL_WEIGHTS_BYTES = 16 * 1024 * 1024  # parent weights up to this size are read whole
RECENT_WEIGHTS_BYTES = 64 * 1024 * 1024  # weights a worker wrote, kept in memory (RecentWeights)
# glibc's mallopt parameters and a worker's settings (see keep_freed_memory)
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD_BYTES = 64 * 1024 * 1024
TRIM_THRESHOLD_BYTES = 256 * 1024 * 1024


def init_worker(threads: int = 1, device: str = "auto", memory_limit_mb: int = 0,
                preload: Task | None = None) -> None:
    """Set up a worker process: one torch thread (two intra-op threads stall badly on small
    kernels), its device, torch's one-time initialisation paid up front (:func:`warm_up`), the
    run's dataset made resident when ``preload`` names it (a task's ``dataset`` and
    ``data_seed``: loaded while the driver asks for the first batch, not inside the first
    evaluation), and an address-space limit of ``memory_limit_mb`` MiB *beyond what the
    process already maps* (a CUDA build of torch alone maps a few GiB of address space). A GPU
    worker trains with deterministic kernels (:mod:`evograph.compile.determinism`)."""
    torch.set_num_threads(threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    keep_freed_memory()
    _WORKER["device"] = device or "auto"
    use_deterministic_kernels(pick_device(_WORKER["device"]))  # before cuBLAS starts up
    warm_up(pick_device(_WORKER["device"]))
    if preload:
        try:
            dataset_for(preload, _device_of(preload))
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
    only up to 32 MB, and an evaluation pass over 1,024 images needs 33.5 MB per layer of 128
    channels of 8x8: those were mapped anew and page-faulted in for every candidate (10,240
    faults per 40 MB; 0.4-0.5 ms of a digits evaluation in a pool worker). Returns whether the
    allocator took the settings (False off glibc, where nothing changes)."""
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
    ``torch._dynamo`` (and sympy with it): about 1.5 s, which would otherwise be charged to the
    first candidate's training time (a skewed ``train_time`` objective) and to the engine's
    overhead. On a GPU this also creates the CUDA context before the first task's clock starts.
    """
    model = torch.nn.Linear(4, 2).to(device)
    x = torch.zeros(3, 4, device=device)
    for name in SPACE_OPTIMIZERS:
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


def dataset_for(task: Task, device: torch.device | str | None = None):
    """The task's dataset, resident on ``device`` (kept for the life of the process)."""
    d = task["dataset"]
    key = (d["name"], int(task["data_seed"]), d.get("root", ""), bool(d.get("download", False)),
           float(d["val_fraction"]), float(d["test_fraction"]), int(d.get("limit", 0)))
    return _resident(key, str(device or "cpu"))


def blank_result(task: Task, status: str = "failed", error: str | None = None,
                 worker: str = "") -> Result:
    return {"id": task["id"], "status": status, "fitness": None, "metrics": {}, "error": error,
            "inherited": None, "weights": None, "worker": worker or f"pid{os.getpid()}",
            "wall_time": None}


def failed_result(task: Task, reason: str, worker: str = "") -> Result:
    """The result of an evaluation that never reported (its worker died or timed out)."""
    return blank_result(task, "failed", reason, worker)


class RecentWeights:
    """The weights files this process wrote, kept in memory by path (least recently used
    dropped first, ``budget`` bytes in all), so that a child evaluated by the worker that
    trained its parent inherits without reading the file back: always so with one worker, and
    often with a few. Reading a small file back and parsing it took 0.2-0.4 ms of a pool
    worker's time per candidate (its page-cache copy included), a quarter of the engine's own
    cost at digits-sized evaluations.

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
    writer when every dtype has a numpy twin: the very bytes of its torch writer, for 40% of
    the CPU time (90 against 230 us for 110k parameters; the torch writer's own Python work,
    such as looking for shared storage, which a built module never has, is most of it), which
    a pool worker spends once per candidate. Otherwise (bfloat16) by the torch writer."""
    try:
        arrays = {name: tensor.numpy() for name, tensor in tensors.items()}
    except TypeError:  # a dtype numpy lacks
        from safetensors.torch import save
        return save(tensors, metadata=meta)
    from safetensors.numpy import save as save_arrays
    return save_arrays(arrays, metadata=meta)


def _save_weights(module: torch.nn.Module, path: str, meta: dict[str, str]) -> None:
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in module.state_dict().items()}
    atomic_write_bytes(Path(path), serialize_weights(tensors, meta))
    RECENT_WEIGHTS.put(path, tensors)  # only once on disk: a failed write is not remembered


@dataclasses.dataclass
class PendingWrite:
    """A trained module's weights, still to be written durably before its result may be sent.

    A pool worker hands these to its sender thread (:mod:`evograph.runs.execute.executors`), so that
    the file write and its fsyncs overlap the next evaluation instead of preceding it; the
    result leaves the worker only once its weights are on disk, so a stored result always has
    its weights file (children inherit from it)."""

    result: Result
    module: torch.nn.Module
    path: str
    meta: dict[str, str]

    def run(self) -> None:
        """Write; a failure (a full disk) turns the result into a failed one, as it would have
        been had the write happened inside the evaluation."""
        try:
            _save_weights(self.module, self.path, self.meta)
        except Exception as exc:  # noqa: BLE001 - reported in the result, like any error
            self.result.update(_error(exc), weights=None)


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
    """A weights file's tensors. A small file is read whole and parsed: a third of the time of
    ``load_file``, which maps the file (70 against 195 us for 30k parameters); a big one is
    mapped, so it is never held twice in memory."""
    if path.stat().st_size <= SMALL_WEIGHTS_BYTES:
        return load_safetensors(path.read_bytes())
    return load_file(path)


def _prepare(task: Task, device: torch.device, genome: Genome | None = None):
    """Build the task's genome (``genome``, when the caller has parsed it already) on
    ``device`` and inherit its parent's weights; also the seconds the build took (analysis
    included, as a plain ``build`` call does it)."""
    genome = from_dict(task["genome"]) if genome is None else genome
    start = time.perf_counter()
    module = build(genome, seed=int(task["seed"]), device=device, info=analyze(genome))
    build_time = time.perf_counter() - start
    inherited = None
    parent = task.get("parent_weights")
    tensors = parent_weights(parent) if parent else None
    if tensors is not None:
        inherited = inherit_weights(module, tensors, bool(task.get("inherit", True))).to_dict()
    apply_module_fault(task, module)
    return genome, module, inherited, build_time


def _complete(result: Result, task: Task, genome, module, score: Score, build_time: float,
              deferred: list[PendingWrite] | None = None) -> None:
    """Fill in ``result`` from ``score`` (and the ``build_time`` metric) and save the weights
    of a completed candidate: now, or appended to ``deferred`` for the caller to write before
    sending the result."""
    result.update(status=score.status, fitness=score.fitness,
                  metrics={**score.metrics, "build_time": build_time})
    if score.status == "completed" and task.get("weights_out"):
        write = PendingWrite(result, module, task["weights_out"],
                             {"individual": str(task["id"]), "genome_hash": genome.hash})
        if deferred is None:  # a failure raises before the result names a weights file
            _save_weights(write.module, write.path, write.meta)
        else:
            deferred.append(write)
        result["weights"] = task["weights_out"]


def _error(exc: BaseException) -> dict[str, Any]:
    """Status and reason for an exception escaping an evaluation."""
    if isinstance(exc, InvalidGenome):
        return {"status": "infeasible", "error": str(exc)}
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, (MemoryError, torch.cuda.OutOfMemoryError)) or \
            "can't allocate memory" in str(exc) or "out of memory" in str(exc).lower():
        return {"status": "failed", "error": f"out of memory: {text}"[:500]}
    tail = traceback.format_exc().strip().splitlines()[-3:]
    return {"status": "failed", "error": f"{text} | {' / '.join(tail)}"[:2000]}


def _device_of(task: Task) -> torch.device:
    return pick_device(resolve_device(task.get("device"), _WORKER["device"]))


def evaluate_task(task: Task, deferred: list[PendingWrite] | None = None,
                  on_train_start: Callable[[], None] | None = None) -> Result:
    """Build, inherit, score and save one candidate. Never raises: errors become statuses.
    With ``deferred``, the weights are not written here but appended to it (see
    :class:`PendingWrite`); the result then must not leave the process before they are.
    ``on_train_start`` is called once the candidate is built, as its scoring begins (a pool
    worker's sender thread writes the previous unit's weights from then on)."""
    start = time.perf_counter()
    task = with_fault(task)
    result = blank_result(task)
    try:
        trigger_process_fault(task)
        device = _device_of(task)
        use_deterministic_kernels(device)
        genome, module, result["inherited"], build_time = _prepare(task, device)
        data = dataset_for(task, device)
        fitness = make_fitness(task["fitness"]["name"], task["fitness"]["params"])
        if on_train_start is not None:
            on_train_start()
        score = fitness.score(module, genome, data, seed=int(task["seed"]), device=device)
        if task["fitness"]["name"] == "sgd" and _ran_every_step(score):
            _STEP_TIMES.observe_alone(cost_class(genome, device), score.metrics["train_time"]
                                      / fitness.schedule(genome, data)[1])
        _complete(result, task, genome, module, score, build_time, deferred)
    except Exception as exc:  # noqa: BLE001 - one bad candidate never stops a run
        result.update(_error(exc))
    result["wall_time"] = time.perf_counter() - start
    return result


def evaluate_group(tasks: list[Task], mode: str = "auto",
                   deferred: list[PendingWrite] | None = None,
                   on_train_start: Callable[[], None] | None = None) -> list[Result]:
    """Evaluate tasks that share an architecture, optimizer, batch size, fitness and dataset,
    training them together when ``mode`` (a :class:`~evograph.compile.training.batch_rule.BatchRule`
    mode) says so, else one by one. Never raises; results come back in the order of ``tasks``;
    ``deferred`` and ``on_train_start`` as in :func:`evaluate_task`."""
    tasks = [with_fault(task) for task in tasks]
    start = time.perf_counter()
    together: list[PendingWrite] = []  # kept only if the batched path succeeds
    try:
        for task in tasks:
            trigger_process_fault(task)  # a crash takes the group along; the executor splits it
        results = _train_together(tasks, mode, None if deferred is None else together,
                                  on_train_start)
    except Exception:  # noqa: BLE001 - anything odd in the batched path: fall back, one by one
        results = None
    if results is None:
        return [evaluate_task(task, deferred, on_train_start) for task in tasks]
    if deferred is not None:
        deferred.extend(together)
    share = (time.perf_counter() - start) / len(tasks)
    for result in results:
        result["wall_time"] = share
    return results


def _train_together(tasks: list[Task], mode: str, deferred: list[PendingWrite] | None,
                    on_train_start: Callable[[], None] | None) -> list[Result] | None:
    """The batched path of :func:`evaluate_group`; None when the group should go one by one
    (decided before anything is built). Its training time joins this process's step times."""
    if tasks[0]["fitness"]["name"] != "sgd":
        return None
    genomes = [from_dict(task["genome"]) for task in tasks]
    if batch_problem(genomes) is not None:
        return None
    device = _device_of(tasks[0])
    batched, speedup = BatchRule(mode, times=_STEP_TIMES).decide(genomes, device)
    if not batched:
        return None
    use_deterministic_kernels(device)
    prepared = [_prepare(task, device, genome) for task, genome in zip(tasks, genomes)]
    data = dataset_for(tasks[0], device)
    modules = [p[1] for p in prepared]
    fitness = make_fitness("sgd", tasks[0]["fitness"]["params"])
    if on_train_start is not None:
        on_train_start()
    scores = score_batched(fitness, modules, genomes, data, [int(t["seed"]) for t in tasks],
                           device)
    if any(_ran_every_step(score) for score in scores):   # the batched loop ran to its end
        seconds = sum(score.metrics["train_time"] for score in scores)
        _STEP_TIMES.observe_batched(cost_class(genomes[0], device), len(tasks),
                                    seconds / fitness.schedule(genomes[0], data)[1])
    results = []
    for task, (genome, module, inherited, build_time), score in zip(tasks, prepared, scores):
        result = blank_result(task)
        result["inherited"] = inherited
        score.metrics["batched"] = {"size": len(tasks), "speedup": speedup}
        _complete(result, task, genome, module, score, build_time, deferred)
        results.append(result)
    return results


def _ran_every_step(score: Score) -> bool:
    """Whether training ran all its steps (a non-finite loss stops it early): only then is
    its time a measure of its steps for the batching rule."""
    curve = score.metrics.get("loss_curve")
    return bool(curve) and math.isfinite(curve[-1])


def evaluate_unit(unit: list[Task], mode: str = "never",
                  deferred: list[PendingWrite] | None = None,
                  on_train_start: Callable[[], None] | None = None) -> list[Result]:
    """One unit of work: a single task, or a group (see :func:`evaluate_group`); ``deferred``
    and ``on_train_start`` as in :func:`evaluate_task`."""
    if len(unit) == 1:
        return [evaluate_task(unit[0], deferred, on_train_start)]
    return evaluate_group(unit, mode, deferred, on_train_start)
