"""The typed boundary between the driver and the workers: a :class:`Task` in, a
:class:`TaskResult` out.

The driver builds one frozen :class:`Task` per evaluation attempt; an executor hands it, alone or
in a unit, to a worker (:func:`evograph.runs.execute.worker.evaluate_unit`), which answers with
one frozen :class:`TaskResult`. Both hold plain data only (numbers, strings, JSON-able dicts), so
they pickle cleanly and cross process boundaries as they are: the ``local`` pool's pipes and
Dask send the dataclasses themselves (the worker imports evograph anyway to evaluate them, and a
pickled dataclass is no bigger than the dict it replaces). :meth:`Task.to_dict` /
:meth:`Task.from_dict` (and the same on :class:`TaskResult`) give and read the JSON form, for
logs, tests and anything that must not depend on the class; ``from_dict`` of a malformed dict is
one :class:`TaskFormatError` line naming the field.

Tasks are never stored: the run store keeps individuals and evaluations, and the driver makes a
fresh task from them for every attempt (a resume included).
"""

from __future__ import annotations

import dataclasses
import os
import traceback
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from ...errors import EvographError, InvalidGenome

JSONDict = dict[str, Any]


class TaskFormatError(EvographError):
    """A task or result dict that does not have the fields, or the types, the worker needs."""


class _PlainData:
    """What a task and a result share: frozen copies, and a JSON form read back with one clear
    error line naming a bad field."""

    def replace(self, **changes: Any) -> Any:
        """A copy with ``changes`` (tasks and results are frozen)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> JSONDict:
        """The JSON form: every field, by name."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: Any) -> Any:
        """The object of a JSON form; a missing field, an unknown one or a wrong type is one
        :class:`TaskFormatError` naming the field."""
        return _from_dict(cls, data)


@dataclass(frozen=True)
class Task(_PlainData):
    """One evaluation attempt, as a worker receives it. Fields:

    * ``id`` — the individual's id in the run store (results are committed by it);
    * ``genome`` — the genome's JSON form (:func:`evograph.genome.io.to_dict`);
    * ``seed`` — the evaluation's seed (initialisation, shuffling);
    * ``dataset`` — the run's ``[dataset]`` section, as ``RunConfig.to_dict`` writes it;
    * ``data_seed`` — the seed of the dataset's splits (the run's seed);
    * ``fitness`` — the name of the registered fitness generator (``[fitness] name``);
    * ``fitness_params`` — its parameters (the rest of ``[fitness]``);
    * ``arch_hash`` — the genome's architecture hash, when the driver knows it (the store has
      it): grouping tasks for batched training then never parses the genome;
    * ``parent_weights`` — the parent's weights file to inherit from (None: no parent);
    * ``inherit`` — whether to inherit at all (False: the edit asked for fresh weights);
    * ``weights_out`` — where to write the trained weights (None: do not write them);
    * ``device`` — the device the driver asks for ("": the worker's own);
    * ``flops`` — forward FLOPs per sample, when the strategy's validation already worked
      them out: the executors' cost hint for ordering units (None: from the genome);
    * ``run_dir`` — the run directory, for generators that keep files there (ENAS's shared
      weights; :func:`evograph.compile.training.fitness.bind_run`);
    * ``fault`` — test-only fault injection (:mod:`evograph.runs.execute.faults`): None until
      settled for this attempt, then a fault kind or "".
    """

    id: int
    genome: JSONDict
    seed: int
    dataset: JSONDict
    data_seed: int
    fitness: str
    fitness_params: JSONDict = field(default_factory=dict)
    arch_hash: str | None = None
    parent_weights: str | None = None
    inherit: bool = True
    weights_out: str | None = None
    device: str = ""
    flops: int | None = None
    run_dir: str = ""
    fault: str | None = None

    def data_spec(self) -> DataSpec:
        """The dataset this task is scored on."""
        return DataSpec(self.dataset, self.data_seed, self.device)



@dataclass(frozen=True)
class TaskResult(_PlainData):
    """What a worker answers for one task. Fields:

    * ``id`` — the task's id;
    * ``status`` — ``completed``, ``infeasible`` or ``failed``;
    * ``fitness`` — what selection maximises (finite when completed, else None);
    * ``metrics`` — everything else the generator reported (accuracies, loss curve, timings),
      plus ``build_time``;
    * ``error`` — why it failed or was infeasible, when an exception said so;
    * ``inherited`` — the weight inheritance's report (None: nothing inherited);
    * ``weights`` — the weights file written (None: none);
    * ``worker`` — which worker ran it (``pid123``, ``worker0@cpu``, ...);
    * ``wall_time`` — seconds the evaluation took in its worker (a group's share of its
      batched training).
    """

    id: int
    status: str = "failed"
    fitness: float | None = None
    metrics: JSONDict = field(default_factory=dict)
    error: str | None = None
    inherited: JSONDict | None = None
    weights: str | None = None
    worker: str = ""
    wall_time: float | None = None

    @classmethod
    def blank(cls, task: Task, status: str = "failed", error: str | None = None,
              worker: str = "") -> TaskResult:
        """A result with nothing measured yet (this process named as its worker)."""
        return cls(task.id, status, error=error, worker=worker or f"pid{os.getpid()}")



@dataclass(frozen=True)
class DataSpec:
    """What a worker needs to load the run's dataset: the ``[dataset]`` section, the seed of its
    splits and the device asked for ("": the worker's own). Every task of a run carries the
    same; an executor passes it to its workers as ``preload`` to load it as they start."""

    dataset: JSONDict
    data_seed: int
    device: str = ""


def failed_result(task: Task, reason: str, worker: str = "") -> TaskResult:
    """The result of an evaluation that never reported (its worker died or timed out)."""
    return TaskResult.blank(task, "failed", reason, worker)


def error_fields(exc: BaseException) -> dict[str, Any]:
    """Status and reason for an exception escaping an evaluation (for :meth:`TaskResult.replace`):
    an invalid genome is infeasible; running out of memory (host ``MemoryError``, an allocation
    refused under the address-space limit, CUDA's "out of memory") and anything else fail."""
    if isinstance(exc, InvalidGenome):
        return {"status": "infeasible", "error": str(exc)}
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, MemoryError) or "can't allocate memory" in str(exc) or \
            "out of memory" in str(exc).lower():
        return {"status": "failed", "error": f"out of memory: {text}"[:500]}
    tail = traceback.format_exc().strip().splitlines()[-3:]
    return {"status": "failed", "error": f"{text} | {' / '.join(tail)}"[:2000]}


def _from_dict(cls: type, data: Any) -> Any:
    name = cls.__name__
    if not isinstance(data, dict):
        raise TaskFormatError(f"{name}: must be a dict (got {type(data).__name__})")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise TaskFormatError(f"{name}.{unknown[0]}: unknown field "
                              f"(known: {', '.join(fields)})")
    hints = typing.get_type_hints(cls)
    for key, spec in fields.items():
        if key not in data:
            if spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING:
                raise TaskFormatError(f"{name}.{key}: missing")
            continue
        kinds = _plain_types(hints[key])
        value = data[key]
        if isinstance(value, int) and float in kinds and not isinstance(value, bool):
            continue
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            wanted = " or ".join("null" if k is type(None) else k.__name__ for k in kinds)
            raise TaskFormatError(f"{name}.{key}: must be {wanted} "
                                  f"(got {type(value).__name__} {value!r:.60})")
    return cls(**data)


def _plain_types(hint: Any) -> tuple[type, ...]:
    """The runtime classes a field's type hint allows (``dict[str, Any] | None`` -> dict,
    NoneType)."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return tuple(k for arg in typing.get_args(hint) for k in _plain_types(arg))
    return (typing.get_origin(hint) or hint,)
