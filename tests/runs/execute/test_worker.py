"""The evaluation a worker runs: weight inheritance through the weights files or the weights the
worker kept, how weights are serialised, and the memory a worker keeps between candidates."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import torch
from evograph.runs.execute import weights as worker
from evograph.runs.execute.worker import evaluate_task
from safetensors.torch import load_file

from tests.runs.execute.executor_tasks import mixed_tasks


def test_a_child_inherits_the_same_weights_whether_the_parent_file_is_read_or_mapped(
        tmp_path, monkeypatch):
    """Small parent files are read whole, big ones mapped: the child trains from the same
    weights either way, and inherits all of them (IDENTITY child: same genome)."""
    parent = mixed_tasks(1)[0].replace(weights_out=str(tmp_path / "parent.safetensors"))
    assert evaluate_task(parent).status == "completed"
    worker.RECENT_WEIGHTS.clear()  # this process wrote the file: read it, not the memory
    child = parent.replace(id=1, seed=7, parent_weights=parent.weights_out, weights_out=None)
    read = evaluate_task(child)
    monkeypatch.setattr(worker, "SMALL_WEIGHTS_BYTES", 0)  # every file counts as big
    mapped = evaluate_task(child)
    assert read.status == mapped.status == "completed"
    assert read.inherited == mapped.inherited
    assert read.inherited["copied"] and not read.inherited["fresh"]
    assert read.fitness == mapped.fitness
    assert read.metrics["loss_curve"] == mapped.metrics["loss_curve"]
    fresh = evaluate_task(child.replace(parent_weights=None))
    assert fresh.metrics["loss_curve"] != read.metrics["loss_curve"]  # it did inherit


def test_a_weights_write_that_fails_leaves_a_failed_result_naming_no_weights(tmp_path):
    """Written in the evaluation (serial, Dask) or later by a pool worker's sender thread, a
    write that fails (here: its folder is missing) makes the result failed, without a file."""
    task = mixed_tasks(1)[0].replace(weights_out=str(tmp_path / "missing" / "w.safetensors"))
    inline = evaluate_task(task)
    deferred: list = []
    pending = evaluate_task(task, deferred)
    assert pending.status == "completed" and len(deferred) == 1  # not written yet
    later = deferred[0].run()
    for result in (inline, later):
        assert result.status == "failed" and "FileNotFoundError" in result.error
        assert result.weights is None
    assert worker.RECENT_WEIGHTS.get(task.weights_out) is None  # nothing to inherit from


def test_a_child_inherits_from_memory_what_it_would_read_from_its_parents_file(tmp_path):
    """The worker that wrote a parent's weights keeps them (RecentWeights): its child trains
    from exactly the weights in the file, and a process without them reads the file."""
    parent = mixed_tasks(1)[0].replace(weights_out=str(tmp_path / "parent.safetensors"))
    worker.RECENT_WEIGHTS.clear()
    assert evaluate_task(parent).status == "completed"
    kept = worker.RECENT_WEIGHTS.get(parent.weights_out)
    on_disk = load_file(parent.weights_out)
    assert kept is not None and kept.keys() == on_disk.keys()
    assert all(torch.equal(kept[name], on_disk[name]) for name in on_disk)
    child = parent.replace(id=1, seed=7, parent_weights=parent.weights_out, weights_out=None)
    from_memory = evaluate_task(child)
    worker.RECENT_WEIGHTS.clear()
    from_file = evaluate_task(child)
    assert from_memory.inherited == from_file.inherited
    assert from_memory.inherited["copied"] and not from_memory.inherited["fresh"]
    assert from_memory.metrics["loss_curve"] == from_file.metrics["loss_curve"]
    assert from_memory.fitness == from_file.fitness
    for key in ("build_time", "train_time", "eval_time"):  # where an evaluation's time went
        assert 0 < from_memory.metrics[key] < from_memory.wall_time
    gone = child.replace(parent_weights=str(tmp_path / "never-written.safetensors"))
    assert evaluate_task(gone).inherited is None  # no file, nothing kept: a fresh start


def test_recent_weights_keep_the_most_recently_used_within_their_budget():
    tensors = {name: {"w": torch.full((4,), float(i))} for i, name in enumerate("abcd")}  # 16 B
    recent = worker.RecentWeights(budget=40)
    recent.put("a", tensors["a"])
    recent.put("b", tensors["b"])
    assert recent.get("a") is tensors["a"]     # a is now the most recently used
    recent.put("c", tensors["c"])              # 48 B > 40: the least recently used (b) goes
    assert recent.get("b") is None
    assert recent.get("a") is tensors["a"] and recent.get("c") is tensors["c"]
    recent.put("a", tensors["d"])              # the same path again: replaced, not added
    assert recent.get("a") is tensors["d"] and recent.get("c") is tensors["c"]
    recent.put("big", {"w": torch.zeros(11)})  # 44 B: more than the whole budget, not kept
    assert recent.get("big") is None and recent.get("a") is tensors["d"]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_weights_are_serialised_as_safetensors_own_torch_writer_would(dtype):
    """Same bytes as ``safetensors.torch.save`` (numpy writer where numpy has the dtype, the
    torch writer for bfloat16), batch-norm counters and 0-d tensors included; with metadata,
    the same tensors and metadata (the writers order metadata keys as a hash map does: not the
    same from one process to the next, for either)."""
    from safetensors.torch import load, save
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4),
                                 torch.nn.Flatten(), torch.nn.LazyLinear(2)).to(dtype)
    module(torch.zeros(1, 3, 5, 5, dtype=dtype))
    tensors = {k: v.detach().contiguous() for k, v in module.state_dict().items()}
    assert tensors["1.num_batches_tracked"].dtype == torch.int64
    assert worker.serialize_weights(tensors, None) == save(tensors)
    meta = {"individual": "3", "genome_hash": "abc"}
    written = worker.serialize_weights(tensors, meta)
    back = load(written)
    assert back.keys() == tensors.keys()
    assert all(torch.equal(back[k], tensors[k]) and back[k].dtype == tensors[k].dtype
               for k in tensors)
    header = json.loads(written[8:8 + int.from_bytes(written[:8], "little")])
    assert header["__metadata__"] == meta


def test_a_worker_keeps_freed_memory_for_its_next_candidate():
    """After ``init_worker``, allocating and freeing an evaluation-sized block again and again
    no longer maps and faults in fresh pages each time (glibc; a fresh process, since the
    setting is process-wide). 40 MB: above the 32 MB up to which glibc's own adaptive threshold
    moves blocks to the heap (an evaluation pass over 1,024 images of 128 channels of 8x8 needs
    33.5 MB per layer)."""
    code = textwrap.dedent("""
        import resource, sys, torch
        from evograph.runs.execute.process import init_worker, keep_freed_memory

        def faults_per_block(times=20):
            before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            for _ in range(times):
                block = torch.empty(10 * 1024 * 1024)  # 40 MB
                block.fill_(1.0)
                del block
            return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / times

        fresh = faults_per_block()
        init_worker(1)
        faults_per_block(2)  # the heap grows once
        print(fresh, faults_per_block(), keep_freed_memory())
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True).stdout.split()
    fresh, kept, applied = float(out[0]), float(out[1]), out[2] == "True"
    assert applied  # glibc, as on every machine this project supports
    assert fresh > 5000 and kept < 10  # 40 MB is 10,240 pages
