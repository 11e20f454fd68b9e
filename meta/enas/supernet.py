"""ENAS weight sharing (*Efficient Neural Architecture Search via Parameter Sharing*, Pham et al.
2018) as a fitness generator: ``fitness = "enas"``.

All candidates of a space share one set of weights — a *supernet* keyed by node position, op and
params. Each evaluation copies the shared tensors its architecture uses into the freshly built
module, trains them for a few minibatch steps, writes them back and scores the candidate on the
validation split, so a candidate costs a few steps instead of a full training run. The score is a
cheap *proxy*: retrain the winners with the ``sgd`` fitness before trusting their accuracy.

* **Keys.** A node's position is ``d<k>`` (``k`` = longest path from the input) or ``out`` for
  the classifier; in a cell genome's network, its node id (the cell copy and the place in the
  cell: ENAS's micro space, :func:`cell_positions`). With ``share = "sliced"`` (default) the key holds the op and the params that
  change what a tensor means (filter size, batch-norm); widths — channels, units, the input size
  — are *prefix slices* of one tensor that grows to the largest width seen (entries never
  trained are NaN and replaced by the fresh initialisation), so a 16-channel conv uses the first
  16 filters of its position's 3x3 tensor. ``share = "exact"`` keys every param and the input
  size: no slicing, less sharing.
* **Persistence.** The tensors live in a per-process cache and in one safetensors file
  (``shared_weights``, relative to the run directory; ``""``: memory only). Writes are atomic
  and made under a file lock; each worker reloads the file when another one has replaced it.
* **Determinism.** Given the sequence of evaluations (serial executor) scores are deterministic.
  An evaluation is idempotent per seed: when the file's last update came from the same seed (an
  evaluation whose update landed but whose result was lost to a crash), it restarts from the
  version before that update (kept in ``<name>.prev.safetensors``), so a resumed run ends in the
  uninterrupted run's state.
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save as save_tensors
from torch import nn

from ...files import atomic_write_bytes
from ...genome.cells import expand, is_cell_genome
from ...genome.core import Genome
from ...genome.ops import flat_size
from ...genome.validate import GenomeInfo, analyze

try:  # POSIX advisory locks between worker processes (absent on Windows: no locking there)
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

FORMAT = "evograph-enas-supernet"
# Params that only change widths (sliced) or nothing about the tensors (strides, activations).
SLICED_AWAY = frozenset({"out_channels", "units", "stride_h", "stride_w", "relu", "activation"})


def positions(genome: Genome) -> dict[int, str]:
    """Node id -> supernet position: ``d<k>`` with ``k`` its longest path from the input, or
    ``out`` for the output node (one classifier shared by every depth)."""
    depth: dict[int, int] = {}
    for node_id in genome.topological_order():
        preds = genome.predecessors(node_id)
        depth[node_id] = 1 + max(depth[p] for p in preds) if preds else 0
    return {i: "out" if genome.node(i).op == "output" else f"d{k}" for i, k in depth.items()}


def node_keys(genome: Genome, info: GenomeInfo, share: str = "sliced") -> dict[int, str]:
    """Node id -> supernet key ``position|op|params[|in=...]`` (nodes with tensors only). A
    cell genome is keyed by its network's node ids (:func:`cell_positions`)."""
    if is_cell_genome(genome):
        network = expand(genome)
        return _keys(network, analyze(network), cell_positions(network), share)
    return _keys(genome, info, positions(genome), share)


def cell_positions(network: Genome) -> dict[int, str]:
    """Node id -> supernet position of a cell genome's network: ``n<id>``. The id names the
    copy of the cell and the place in it (a NAS-Bench-201 edge, a NASNet block's op slot), so
    every op at every place of every cell copy has one set of shared weights, whichever
    architecture puts it there — ENAS's micro search space (Pham et al. 2018, §2.3)."""
    return {node.id: f"n{node.id}" for node in network.nodes}


def _keys(genome: Genome, info: GenomeInfo, where: dict[int, str],
          share: str) -> dict[int, str]:
    out = {}
    for node in genome.nodes:
        if node.op == "input":
            continue
        params = [(k, v) for k, v in node.params if share == "exact" or k not in SLICED_AWAY]
        key = f"{where[node.id]}|{node.op}|" + ",".join(f"{k}={v}" for k, v in params)
        if share == "exact":
            shape = info.in_shapes[node.id]
            key += f"|in={shape[0] if node.op == 'conv' else flat_size(shape)}"
        out[node.id] = key
    return out


def tensor_keys(module: nn.Module, keys: dict[int, str]) -> dict[str, str]:
    """state_dict name (``layers.n<id>.<rest>``) -> supernet tensor key ``<node key>/<rest>``."""
    out = {}
    for name in module.state_dict():
        parts = name.split(".", 2)
        if len(parts) == 3 and parts[0] == "layers" and parts[1][1:].isdigit():
            node_id = int(parts[1][1:])
            if node_id in keys:
                out[name] = f"{keys[node_id]}/{parts[2]}"
    return out


def pull(module: nn.Module, names: dict[str, str], shared: dict[str, torch.Tensor]) -> int:
    """Copy the shared tensors into ``module`` in place (leading slice of each dimension; NaN,
    i.e. never trained, keeps the module's own value). Returns how many tensors came shared."""
    count, state = 0, module.state_dict()
    with torch.no_grad():
        for name, key in names.items():
            t, s = state[name], shared.get(key)
            if s is None or s.dim() != t.dim() or s.dtype != t.dtype:
                continue
            region = tuple(slice(0, min(a, b)) for a, b in zip(s.shape, t.shape))
            src = s[region].to(t.device)
            if src.is_floating_point():
                src = torch.where(torch.isnan(src), t[region], src)
            t[region].copy_(src)
            count += 1
    return count


def merged(module: nn.Module, names: dict[str, str],
           shared: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The module's tensors merged into (new copies of) the shared ones, grown where it is
    wider; regions neither covers are NaN (floats) or 0."""
    out, state = {}, module.state_dict()
    for name, key in names.items():
        t, s = state[name].detach().to("cpu"), shared.get(key)
        if s is None or s.dim() != t.dim() or s.dtype != t.dtype:
            out[key] = t.clone()
            continue
        shape = tuple(max(a, b) for a, b in zip(s.shape, t.shape))
        grown = torch.full(shape, math.nan, dtype=s.dtype) if s.is_floating_point() \
            else torch.zeros(shape, dtype=s.dtype)
        grown[tuple(slice(0, n) for n in s.shape)] = s
        grown[tuple(slice(0, n) for n in t.shape)] = t
        out[key] = grown
    return out


@dataclass
class Snapshot:
    """One version of the supernet: its tensors (CPU) and the file metadata (format, tag)."""

    tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    meta: dict[str, str] = field(default_factory=dict)


def _read(path: Path) -> Snapshot:
    with safe_open(str(path), framework="pt") as fh:
        meta = dict(fh.metadata() or {})
        if meta.get("format") != FORMAT:
            raise ValueError(f"{path}: not an evograph ENAS supernet file")
        return Snapshot({k: fh.get_tensor(k) for k in fh.keys()}, meta)  # noqa: SIM118


def _keep_previous(current: Path, prev: Path) -> None:
    """``prev`` becomes the current file's version: a hard link (no copy), else a copy."""
    tmp = prev.with_name(f".{prev.name}.{os.getpid()}.tmp")
    try:
        os.link(current, tmp)
    except OSError:
        shutil.copyfile(current, tmp)
    os.replace(tmp, prev)


class SharedWeights:
    """One supernet: the current tensors (cached in this process, mirrored in ``path``) and the
    version before the last update (for the idempotent re-run of that update's seed)."""

    def __init__(self, path: Path | None):
        self.path = path
        self.prev_path = path.with_name(path.stem + ".prev" + path.suffix) if path else None
        self.current, self.prev = Snapshot(), None
        self.signature: tuple | None = None

    @contextmanager
    def locked(self) -> Iterator[None]:
        if self.path is None or fcntl is None:
            yield
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(f"{self.path}.lock", "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _stat(self) -> tuple | None:
        try:
            st = os.stat(self.path)  # type: ignore[arg-type]
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def refresh(self) -> None:
        """Reload when another process (or a previous run) replaced the file."""
        if self.path is None or self._stat() == self.signature:
            return
        signature = self._stat()
        self.current = _read(self.path) if signature else Snapshot()
        self.prev, self.signature = None, signature

    def base_for(self, tag: str) -> Snapshot:
        """The version an evaluation tagged ``tag`` starts from (see the module docstring)."""
        self.refresh()
        if self.current.meta.get("tag") != tag:
            return self.current
        if self.prev is None and self.prev_path is not None and self.prev_path.exists():
            self.prev = _read(self.prev_path)
        return self.prev or Snapshot()

    def push(self, tag: str, module: nn.Module, names: dict[str, str], share: str) -> int:
        """Write the module's tensors back (under the lock, merged into the latest version).
        Returns the number of tensors in the supernet."""
        with self.locked():
            base = self.base_for(tag)
            tensors = {**base.tensors, **merged(module, names, base.tensors)}
            new = Snapshot(tensors, {"format": FORMAT, "version": "1", "tag": tag,
                                     "share": share})
            if self.path is not None:
                self._write(new, rollback=base is not self.current)
            self.current, self.prev = new, base
        return len(tensors)

    def _write(self, new: Snapshot, rollback: bool) -> None:
        """Keep the version this update replaces as ``prev`` (after a rollback the prev file
        already holds it), then write the new version atomically."""
        path, prev = self.path, self.prev_path
        assert path is not None and prev is not None
        if not rollback:
            if path.exists():
                _keep_previous(path, prev)
            elif prev.exists():
                prev.unlink()
        atomic_write_bytes(path, save_tensors(new.tensors, metadata=new.meta))
        self.signature = self._stat()


_SHARED: dict[str, SharedWeights] = {}  # per process: path (or "" for memory) -> supernet


def shared_weights(path: Path | None) -> SharedWeights:
    """The process-wide supernet for ``path`` (None: an in-memory one)."""
    key = str(path) if path else ""
    if key not in _SHARED:
        _SHARED[key] = SharedWeights(path)
    return _SHARED[key]
