"""The ``table`` fitness generator: score a genome by looking it up in a tabular benchmark.

A tabular benchmark (Ying et al. 2019, *NAS-Bench-101*) holds, for every architecture of a small
space, the results of training it with several seeds. Looking a genome up instead of training it
makes a whole search take seconds, so strategies can be compared over hundreds of seeds.

A table is a CSV (optionally gzipped) or a JSON list of row objects (optionally gzipped) with one
row per (architecture, training seed): a ``key`` column naming the architecture, a ``seed``
column, and numeric metric columns (``val_accuracy``, ``test_accuracy``, ``train_time``,
``params``, ``flops``, ...). Other text columns are allowed and ignored. A *key function* maps a
genome to its key; ``mlp-chain`` is the built-in one of evograph's own table
(``benchmarks/data/digits-mlp.csv.gz``, the ``mlp-table`` space). To plug in an external
benchmark of your own space, write its rows in this format and register a key function::

    from evograph.compile.training.table import register_table_key

    @register_table_key("my-cells")
    def my_key(genome):            # raise TableKeyError for genomes outside the table's space
        return "|".join(n.op for n in genome.nodes)

and set ``[fitness] name = "table"``, ``path = "my.csv.gz"``, ``key = "my-cells"``.

The generator never trains. ``seed_policy = "mean"`` scores the mean over the table's seeds
(a noise-free fitness); ``"seed"`` picks one of the table's seeds from the evaluation's seed
(``seed mod number of seeds``), so fitness is as noisy as real training yet deterministic for a
run seed (NAS-Bench-101's protocol).
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar

from ...errors import InvalidGenome
from ...genome import spaces_tabular as _spaces  # noqa: F401  (registers the mlp-table space)
from ...genome.cells.nb201 import arch_string
from ...genome.cells.skeleton import skeleton_node
from ...genome.core import Genome
from ...genome.validate import analyze
from .fitness import Score, register_fitness

PACKAGE_ROOT = Path(__file__).resolve().parents[2]
SHIPPED_TABLE = PACKAGE_ROOT / "benchmarks" / "data" / "digits-mlp.csv.gz"
SEED_POLICIES = ("mean", "seed")


class TableKeyError(InvalidGenome):
    """A genome lies outside the space a table covers (its key function cannot map it)."""


KeyFunction = Callable[[Genome], str]
TABLE_KEYS: dict[str, KeyFunction] = {}


def register_table_key(name: str):
    """Decorator: register a genome -> key function under ``name`` (for ``fitness.key``)."""
    def wrap(fn: KeyFunction) -> KeyFunction:
        TABLE_KEYS[name] = fn
        return fn
    return wrap


@register_table_key("mlp-chain")
def mlp_chain_key(genome: Genome) -> str:
    """``"64-32|relu|adam"``: the widths, shared activation and optimizer of a plain chain
    ``input -> dense -> ... -> output`` (the ``mlp-table`` space). The learning-rate gene is
    ignored: the table fixes one learning rate per optimizer."""
    order, node = [], genome.input_node
    while node.op != "output":
        successors = genome.successors(node.id)
        if len(successors) != 1:
            raise TableKeyError(f"not a chain: node {node.id} has {len(successors)} outputs")
        node = genome.node(successors[0])
        order.append(node)
    if len(genome.edges) != len(order) or len(genome.nodes) != len(order) + 1:
        raise TableKeyError("not a chain: the genome has nodes or edges off its main path")
    hidden = order[:-1]
    if not hidden or any(n.op != "dense" for n in hidden):
        raise TableKeyError("a table mlp needs one or more dense layers and nothing else")
    activations = {n.get("activation") for n in hidden}
    if len(activations) != 1:
        raise TableKeyError(f"layers mix activations {sorted(activations)}")
    widths = "-".join(str(n.get("units")) for n in hidden)
    return f"{widths}|{activations.pop()}|{genome.gene['optimizer']}"


@register_table_key("nb201")
def nb201_key(genome: Genome) -> str:
    """The NAS-Bench-201 architecture string of an ``nb201`` cell genome, e.g.
    ``|nor_conv_3x3~0|+|none~0|skip_connect~1|+|…~0|…~1|…~2|`` (Dong & Yang 2020): a table
    published for the benchmark, or built here, is looked up by the cell alone."""
    skeleton = skeleton_node(genome)
    if skeleton is None or skeleton.get("name") != "nb201":
        raise TableKeyError("not an nb201 cell genome (the nb201 key needs the nb201 space)")
    try:
        analyze(genome)
    except InvalidGenome as error:
        raise TableKeyError(f"not a valid nb201 cell: {error}") from None
    return arch_string(genome)


# -- tables --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Table:
    """Rows grouped by key, each group sorted by seed; ``columns`` are the numeric metrics."""

    path: str
    rows: dict[str, tuple[dict[str, float], ...]]
    columns: tuple[str, ...]

    def __len__(self) -> int:
        """The number of architectures (keys)."""
        return len(self.rows)

    def keys(self) -> list[str]:
        """Every key, sorted."""
        return sorted(self.rows)


def _number(text: Any) -> float | int | None:
    """A cell as an int or a float ('nan' allowed); None when it is not a number."""
    if isinstance(text, bool):
        return None
    if isinstance(text, (int, float)):
        return text
    try:
        return int(text)
    except (TypeError, ValueError):
        try:
            return float(text)
        except (TypeError, ValueError):
            return None


def _read_records(path: Path) -> list[dict[str, Any]]:
    """The rows of a CSV or JSON table file, gunzipped when it starts with gzip's magic."""
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    text = raw.decode("utf-8")
    if path.name.removesuffix(".gz").endswith(".json"):
        data = json.loads(text)
        if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
            raise ValueError("a JSON table must be a list of row objects")
        return data
    return list(csv.DictReader(io.StringIO(text)))


def _group(path: Path, records: list[dict[str, Any]]) -> Table:
    """Group rows by key; a column is a metric when every row holds a number there."""
    if not records or "key" not in records[0] or "seed" not in records[0]:
        raise ValueError(f"path: {path} has no rows with 'key' and 'seed' columns")
    names = [c for c in records[0] if c not in ("key", "seed")]
    numeric = [c for c in names if all(_number(r.get(c)) is not None for r in records)]
    groups: dict[str, list[dict[str, float]]] = {}
    for line, record in enumerate(records, start=2):
        seed = _number(record.get("seed"))
        if not isinstance(seed, int):
            raise ValueError(  # noqa: TRY004  (ValueError: make_fitness's contract)
                f"path: {path} row {line}: seed {record.get('seed')!r} is not an integer")
        row = {"seed": seed, **{c: _number(record[c]) for c in numeric}}
        groups.setdefault(str(record["key"]), []).append(row)
    rows = {k: tuple(sorted(v, key=lambda r: r["seed"])) for k, v in groups.items()}
    return Table(str(path), rows, tuple(numeric))


@lru_cache(maxsize=8)
def _cached_table(path: str, mtime_ns: int, size: int) -> Table:
    """One parse per file version: workers build a generator per task, so this must be cheap."""
    return _group(Path(path), _read_records(Path(path)))


def resolve_table_path(path: str | Path) -> Path:
    """The table file: ``""`` is the shipped digits table; a relative path is tried against the
    working directory, then against the package root (where ``benchmarks/data`` lives)."""
    if not str(path):
        return SHIPPED_TABLE
    candidate = Path(path).expanduser()
    if candidate.is_absolute() or candidate.exists():
        return candidate
    return PACKAGE_ROOT / candidate if (PACKAGE_ROOT / candidate).exists() else candidate


def load_table(path: str | Path = "") -> Table:
    """Read (once per file version) and group a table; ValueError names the path and problem."""
    resolved = resolve_table_path(path)
    try:
        stat = resolved.stat()
    except OSError:
        raise ValueError(f"path: table file {resolved} not found") from None
    try:
        return _cached_table(str(resolved), stat.st_mtime_ns, stat.st_size)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, csv.Error, gzip.BadGzipFile) \
            as exc:
        raise ValueError(f"path: cannot read table {resolved} ({exc})") from None


# -- the fitness generator -----------------------------------------------------------------------
@register_fitness("table")
@dataclass
class TableFitness:
    """Look genomes up in a table. Params: ``path`` ("" = the shipped digits table), ``key``
    (a :data:`TABLE_KEYS` name), ``metric`` (the column selection maximises), ``maximize``
    (False for a column to minimise, e.g. a loss), ``seed_policy`` ("mean" or "seed")."""

    path: str = ""
    key: str = "mlp-chain"
    metric: str = "val_accuracy"
    maximize: bool = True
    seed_policy: str = "mean"
    needs_module: ClassVar[bool] = False   # the worker builds no module, writes no weights
    weights_trained: ClassVar[bool] = False   # figures from a table: export must retrain

    @classmethod
    def example(cls, folder: Any) -> dict[str, Any]:
        """The shipped table and its space (the contract test)."""
        return {"space": "mlp-table"}

    def __post_init__(self) -> None:
        if self.key not in TABLE_KEYS:
            raise ValueError(f"key: unknown table key function {self.key!r} "
                             f"(known: {', '.join(sorted(TABLE_KEYS))})")
        if self.seed_policy not in SEED_POLICIES:
            raise ValueError(f"seed_policy: must be one of {', '.join(SEED_POLICIES)} "
                             f"(got {self.seed_policy!r})")
        if not isinstance(self.maximize, bool):
            raise ValueError(  # noqa: TRY004  (ValueError: make_fitness's contract)
                f"maximize: must be true or false (got {self.maximize!r})")
        self.table = load_table(self.path)
        if self.metric not in self.table.columns:
            raise ValueError(f"metric: {self.metric!r} is not a numeric column of "
                             f"{self.table.path} (columns: {', '.join(self.table.columns)})")

    def lookup(self, genome: Genome, seed: int = 0) -> Score:
        """The Score of ``genome``: its table metrics (mean over seeds, or the row the seed
        picks); infeasible, with the reason, when the genome is not in the table."""
        try:
            key = TABLE_KEYS[self.key](genome)
        except InvalidGenome as exc:
            return Score.infeasible(f"genome is outside the table's space ({exc})")
        if key not in self.table.rows:
            return Score.infeasible(f"genome {genome.hash} (key {key!r}) is not in table "
                                    f"{Path(self.table.path).name}", table_key=key)
        return self.lookup_key(key, seed)

    def lookup_key(self, key: str, seed: int = 0) -> Score:
        """The Score of the architecture ``key`` names, as :meth:`lookup` gives it (a search
        over the table's keys, e.g. brute force, needs no genomes)."""
        rows = self.table.rows.get(key)
        if rows is None:
            return Score.infeasible(f"key {key!r} is not in table "
                                    f"{Path(self.table.path).name}", table_key=key)
        if self.seed_policy == "seed":
            row = rows[int(seed) % len(rows)]
            metrics: dict[str, Any] = {c: row[c] for c in self.table.columns}
            metrics["table_seed"] = row["seed"]
        else:
            metrics = {c: _mean([r[c] for r in rows]) for c in self.table.columns}
            metrics["table_seeds"] = len(rows)
        metrics["table_key"] = key
        value = float(metrics[self.metric])
        fitness = value if self.maximize else -value
        return Score("completed", fitness if math.isfinite(fitness) else None, metrics).checked()

    def score(self, module: Any, genome: Genome, data: Any, *, seed: int, device: Any) -> Score:
        """The fitness-generator protocol: ``module``, ``data`` and ``device`` are unused."""
        return self.lookup(genome, seed)


def _mean(values: list[float]) -> float | int:
    """The mean; integers that agree across seeds (params, FLOPs) stay integers."""
    if all(isinstance(v, int) for v in values) and len(set(values)) == 1:
        return values[0]
    return sum(values) / len(values)
