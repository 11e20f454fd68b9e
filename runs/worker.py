"""One evaluation, as run inside a worker process: plain data in, plain data out.

A task is a JSON-able dict (genome JSON, seed, dataset and fitness sections, parent-weights path,
where to write the weights); the result is a JSON-able dict. Nothing else crosses a process
boundary, so the same function runs in-process, in a spawned pool worker or on a Dask worker.
"""

from __future__ import annotations

import os
import time
import traceback
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from .. import meta as _meta  # noqa: F401  (registers the meta-learners' fitness generators)
from ..compile.builder import build
from ..compile.fitness import make_fitness
from ..compile.inherit import inherit_weights
from ..errors import InvalidGenome
from ..genome.io import from_dict
from ..genome.validate import analyze
from .datasets import load_dataset
from .store import atomic_write_bytes


def init_worker(threads: int = 1) -> None:
    """One torch thread per worker: two intra-op threads stall badly on small kernels."""
    torch.set_num_threads(threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))


@lru_cache(maxsize=4)
def _dataset(name: str, seed: int, root: str, download: bool, val_fraction: float,
             test_fraction: float, limit: int):
    return load_dataset(name, seed=seed, root=root or None, download=download,
                        val_fraction=val_fraction, test_fraction=test_fraction,
                        limit=limit or None)


def dataset_for(task: dict[str, Any]):
    d = task["dataset"]
    return _dataset(d["name"], int(task["data_seed"]), d.get("root", ""),
                    bool(d.get("download", False)), float(d["val_fraction"]),
                    float(d["test_fraction"]), int(d.get("limit", 0)))


def pick_device(requested: str) -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


def _save_weights(module: torch.nn.Module, path: str, meta: dict[str, str]) -> None:
    from safetensors.torch import save
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in module.state_dict().items()}
    atomic_write_bytes(Path(path), save(tensors, metadata=meta))


def evaluate_task(task: dict[str, Any]) -> dict[str, Any]:
    """Build, inherit, score and save one candidate. Never raises: errors become statuses."""
    start = time.perf_counter()
    result: dict[str, Any] = {"id": task["id"], "status": "failed", "fitness": None,
                              "metrics": {}, "error": None, "inherited": None,
                              "weights": None, "worker": f"pid{os.getpid()}"}
    try:
        device = pick_device(task.get("device", "auto"))
        genome = from_dict(task["genome"])
        info = analyze(genome)
        module = build(genome, seed=int(task["seed"]), device=device, info=info)
        parent = task.get("parent_weights")
        if parent and Path(parent).exists():
            report = inherit_weights(module, load_file(parent), bool(task.get("inherit", True)))
            result["inherited"] = report.to_dict()
        data = dataset_for(task)
        fitness = make_fitness(task["fitness"]["name"], task["fitness"]["params"])
        score = fitness.score(module, genome, data, seed=int(task["seed"]), device=device)
        result.update(status=score.status, fitness=score.fitness, metrics=score.metrics)
        if score.status == "completed" and task.get("weights_out"):
            _save_weights(module, task["weights_out"], {"individual": str(task["id"]),
                                                        "genome_hash": genome.hash})
            result["weights"] = task["weights_out"]
    except InvalidGenome as exc:
        result.update(status="infeasible", error=str(exc))
    except torch.cuda.OutOfMemoryError as exc:  # type: ignore[attr-defined]
        result.update(status="failed", error=f"out of memory: {exc}")
    except Exception as exc:  # noqa: BLE001 - one bad candidate never stops a run
        tail = traceback.format_exc().strip().splitlines()[-3:]
        result.update(status="failed", error=f"{type(exc).__name__}: {exc} | {' / '.join(tail)}")
    result["wall_time"] = time.perf_counter() - start
    return result
