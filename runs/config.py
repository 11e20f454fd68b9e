"""Run configuration: a strict, typed TOML file (``runs/configs/*.toml``).

Every section is a frozen dataclass. Unknown keys, wrong types and out-of-range values are one
:class:`~evograph.errors.ConfigError` line naming the key and the file, e.g.
``digits.toml: strategy.sample_size: must be between 1 and population_size (got 0)``.
``--set key=value`` overrides are parsed as TOML values (``--set budget.evaluations=50``,
``--set strategy.name='"aging"'`` or simply ``strategy.name=aging``). The resolved config (every
default filled in) is stored with the run.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

import tomllib

from ..errors import ConfigError
from ..genome.settings import check_overrides


@dataclass(frozen=True)
class DatasetConfig:
    name: str = "digits"
    root: str = ""                 # local folder for mnist / fashion-mnist / cifar10
    download: bool = False
    val_fraction: float = 0.15
    test_fraction: float = 0.2
    limit: int = 0                 # keep at most this many training samples (0: all)

    def check(self) -> None:
        _in_range("val_fraction", self.val_fraction, 0.0, 1.0, open_=True)
        _in_range("test_fraction", self.test_fraction, 0.0, 1.0, open_=True)
        _in_range("limit", self.limit, 0, None)


@dataclass(frozen=True)
class SpaceConfig:
    name: str = "lse-conv"
    overrides: dict = field(default_factory=dict)  # any SearchSpace field, e.g. max_params

    def check(self) -> None:
        """Every key that is a SearchSpace field typed and range-checked as the file is read;
        other keys are left for the registered space's factory (runs.setup)."""
        check_overrides(self.overrides)


@dataclass(frozen=True)
class StrategyConfig:
    name: str = "aging"
    params: dict = field(default_factory=dict)     # e.g. population_size, sample_size


@dataclass(frozen=True)
class FitnessConfig:
    name: str = "sgd"
    params: dict = field(default_factory=dict)     # e.g. epochs, steps


@dataclass(frozen=True)
class BudgetConfig:
    evaluations: int = 100
    minutes: float = 0.0           # wall-clock limit (0: none)
    max_failure_fraction: float = 0.8  # stop when more than this share of recent evals fail

    def check(self) -> None:
        _in_range("evaluations", self.evaluations, 1, None)
        _in_range("minutes", self.minutes, 0.0, None)
        _in_range("max_failure_fraction", self.max_failure_fraction, 0.0, 1.0)


@dataclass(frozen=True)
class FinalConfig:
    """Final selection (:mod:`evograph.runs.final`): after the search, the ``candidates`` best
    distinct architectures are retrained from their genes with ``seeds`` fresh seeds and the
    best mean validation fitness is the pick. ``share`` of the budget (of ``budget.minutes``
    and of ``budget.evaluations``) is kept for it; 0 turns it off. ``fitness``: [fitness]
    parameters the retraining changes (``{epochs = 30}``: from scratch, a network needs the
    training its line of descent accumulated). Defaults: docs/final.md."""

    candidates: int = 5
    seeds: int = 3
    share: float = 0.1
    fitness: dict = field(default_factory=dict)

    def check(self) -> None:
        _in_range("candidates", self.candidates, 1, 1000)
        _in_range("seeds", self.seeds, 1, 100)
        _in_range("share", self.share, 0.0, 0.9)


@dataclass(frozen=True)
class WeightsConfig:
    """Which trained weights a run keeps (:mod:`evograph.runs.retention`): ``policy`` keeps the
    population, the best's line of descent, the ``top_k`` best, the parents still needed and
    the final selection's, and prunes the rest after each tell; ``all`` keeps every file."""

    keep: str = "policy"
    top_k: int = 10

    def check(self) -> None:
        if self.keep not in ("policy", "all"):
            raise ValueError(f"keep: must be policy or all (got {self.keep!r})")
        _in_range("top_k", self.top_k, 1, None)


@dataclass(frozen=True)
class ExecutorConfig:
    name: str = "local"            # serial | local | dask
    workers: int = 0               # 0: one per core (or per GPU slot)
    device: str = "auto"           # auto | cpu | cuda | cuda:N
    per_gpu: int = 1               # candidates sharing one GPU
    timeout_s: float = 600.0       # per evaluation
    retries: int = 2               # for crashes and timeouts (infeasible is never retried)
    memory_limit_mb: int = 0       # per worker address-space limit (0: none)
    scheduler: str = ""            # dask: address of an existing scheduler (empty: LocalCluster)
    batched: str = "auto"          # auto | always | never: vmap training of shared architectures
    batch: int = 0                 # proposals per batch (0: one per worker slot); fix it
                                   # to replay a run exactly on another worker count
    pipeline: int | str = "auto"   # batches asked ahead of the oldest one still evaluating:
                                   # 1 keeps workers busy through ask/tell, 0 is synchronous;
                                   # auto: 0 for serial, 1 for local and dask

    @property
    def batches_ahead(self) -> int:
        """``pipeline`` resolved: ``auto`` asks one batch ahead where workers would otherwise
        wait for the driver (local, dask) and none for ``serial``, whose single process runs
        the textbook loop: every child bred from a population that has heard every result."""
        if self.pipeline == "auto":
            return 0 if self.name == "serial" else 1
        return int(self.pipeline)

    def check(self) -> None:
        if self.name not in ("serial", "local", "dask"):
            raise ValueError(f"name: must be serial, local or dask (got {self.name!r})")
        _in_range("workers", self.workers, 0, 1024)
        _in_range("per_gpu", self.per_gpu, 1, 64)
        _in_range("timeout_s", self.timeout_s, 1.0, None)
        _in_range("retries", self.retries, 0, 20)
        _in_range("memory_limit_mb", self.memory_limit_mb, 0, None)
        _in_range("batch", self.batch, 0, 4096)
        if self.pipeline != "auto":
            if isinstance(self.pipeline, (str, bool)):
                raise ValueError(f"pipeline: must be auto or an int (got {self.pipeline!r})")
            _in_range("pipeline", self.pipeline, 0, 64)
        if self.batched not in ("auto", "always", "never"):
            raise ValueError(f"batched: must be auto, always or never (got {self.batched!r})")
        if not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            raise ValueError(f"device: must be auto, cpu, cuda or cuda:N (got {self.device!r})")


@dataclass(frozen=True)
class RunConfig:
    name: str = "run"
    seed: int = 0
    out: str = "runs/out"          # parent folder of run directories
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    space: SpaceConfig = field(default_factory=SpaceConfig)
    strategy: StrategyConfig = field(default_factory=StrategyConfig)
    fitness: FitnessConfig = field(default_factory=FitnessConfig)
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)
    final: FinalConfig = field(default_factory=FinalConfig)
    weights: WeightsConfig = field(default_factory=WeightsConfig)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["space"] = {"name": self.space.name, **self.space.overrides}
        out["strategy"] = {"name": self.strategy.name, **self.strategy.params}
        out["fitness"] = {"name": self.fitness.name, **self.fitness.params}
        return out


# Sections whose extra keys are free-form parameters (checked later by their registries).
OPEN_SECTIONS = {"space": "overrides", "strategy": "params", "fitness": "params"}


def _in_range(key: str, value: float, lo: float | None, hi: float | None,
              open_: bool = False) -> None:
    too_low = lo is not None and (value <= lo if open_ else value < lo)
    too_high = hi is not None and (value >= hi if open_ else value > hi)
    if too_low or too_high:
        bounds = f"{'(' if open_ else '['}{lo}, {hi if hi is not None else '∞'}{')' if open_ else ']'}"
        raise ValueError(f"{key}: must be in {bounds} (got {value})")


def check_type(key: str, value: Any, kind: type) -> Any:
    """``value`` as a ``kind`` (an int is accepted for a float); else one error naming ``key``."""
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is dict:
        return value
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        name = getattr(kind, "__name__", str(kind).replace(" | ", " or "))
        raise ValueError(f"{key}: must be {name}, got {type(value).__name__} {value!r}")
    return value


def _section(cls: type, data: Any, section: str) -> Any:
    return table_section(cls, data, section, OPEN_SECTIONS.get(section))


def table_section(cls: type, data: Any, section: str, extra_field: str | None = None) -> Any:
    """A dataclass from a TOML table, its ``check()`` run: an unknown key, a wrong type or a bad
    value is one ``ValueError`` naming ``section.key``. With ``extra_field``, keys the class does
    not declare are collected into that field (a strategy's own parameters) instead."""
    if not isinstance(data, dict):
        raise ValueError(f"{section}: must be a table")  # noqa: TRY004 (config contract)
    hints = get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)} - ({extra_field} if extra_field else set())
    values, extra = {}, {}
    for key, value in data.items():
        if key in known:
            values[key] = check_type(f"{section}.{key}", value, hints[key])
        elif extra_field:
            extra[key] = value
        else:
            raise ValueError(f"{section}.{key}: unknown key (known: {', '.join(sorted(known))})")
    if extra_field:
        values[extra_field] = extra
    try:
        obj = cls(**values)
        getattr(obj, "check", lambda: None)()
    except ValueError as exc:
        raise ValueError(f"{section}.{exc}") from None
    return obj


SECTIONS = {"dataset": DatasetConfig, "space": SpaceConfig, "strategy": StrategyConfig,
            "fitness": FitnessConfig, "budget": BudgetConfig, "executor": ExecutorConfig,
            "final": FinalConfig, "weights": WeightsConfig}


# Sections added after runs were already being stored, and their setting for such a run: a run
# created before final selection and weight pruning existed goes on as it began.
LEGACY_OFF = {"final": {"share": 0.0}, "weights": {"keep": "all"}}


def stored_config(data: dict[str, Any]) -> dict[str, Any]:
    """A run's stored config with the sections it predates switched off (:data:`LEGACY_OFF`)."""
    return {**{k: dict(v) for k, v in LEGACY_OFF.items() if k not in data}, **data}


def config_from_dict(data: dict[str, Any], source: str = "config") -> RunConfig:
    """Build a RunConfig from parsed TOML, raising ConfigError naming key and ``source``."""
    try:
        top: dict[str, Any] = {}
        for key, value in data.items():
            if key in SECTIONS:
                top[key] = _section(SECTIONS[key], value, key)
            elif key in ("name", "out"):
                top[key] = check_type(key, value, str)
            elif key == "seed":
                top[key] = check_type(key, value, int)
                _in_range("seed", value, 0, 2**32 - 1)
            else:
                raise ValueError(f"{key}: unknown key (known: name, seed, out, "
                                 f"{', '.join(SECTIONS)})")
        return RunConfig(**top)
    except ValueError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def parse_override(text: str) -> tuple[list[str], Any]:
    """``a.b=value`` -> (["a", "b"], value); the value is TOML, or a bare string."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE")
    key, raw = text.split("=", 1)
    path = key.strip().split(".")
    if not all(path):
        raise ConfigError(f"--set {text!r}: empty key")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return path, value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    for text in overrides:
        path, value = parse_override(text)
        node = data
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {text!r}: {part} is not a table")
        node[path[-1]] = value
    return data


def read_toml(path: Path) -> dict[str, Any]:
    """A TOML config file's tables; a missing, unreadable, binary or malformed file is one
    ConfigError line naming it."""
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file (a TOML config is UTF-8 text)") from None


def load_config(path: str | Path, overrides: list[str] | None = None) -> RunConfig:
    """Read a TOML config file, apply ``--set`` overrides and validate everything."""
    path = Path(path)
    data = apply_overrides(read_toml(path), overrides or [])
    return config_from_dict(data, source=path.name)
