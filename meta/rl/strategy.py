"""``strategy = "rl"``: the Zoph & Le (2017) controller behind the proposer protocol.

Proposals have no parents; their birth edit is ``rl-sample`` with the sampled decision indices
(so lineage shows them and ``tell`` knows what to reinforce, also after a resume). The strategy's
``population()`` is a hall of fame of the best results, as for random search.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

from ...errors import ConfigError
from ...genome.codec import Codec
from ...operators.base import Edit
from ...selection import deap_adapter as deap
from ...selection.base import Proposal, Result, Variation
from ...selection.strategy import Member, Strategy, check_int, register_strategy
from .controller import HYPER, Controller, resolve_codec

FLOATS = {  # name: (lower bound, upper bound, lower bound allowed)
    "learning_rate": (0.0, math.inf, False), "baseline_decay": (0.0, 1.0, True),
    "entropy_weight": (0.0, math.inf, True), "temperature": (0.0, math.inf, False),
    "tanh_constant": (0.0, math.inf, True), "grad_clip": (0.0, math.inf, True),
    "reward_power": (0.0, math.inf, False)}
INTS = {"population_size": 1, "hidden_size": 1, "lstm_layers": 1, "batch_size": 1}
DEFAULTS = {**HYPER, "population_size": 20, "reward_power": 1.0, "failed_reward": "skip",
            "batch_size": 1, "codec": {}}


@register_strategy("rl")
class RLStrategy(Strategy):
    """Params: ``hidden_size`` (32; Zoph & Le used 35), ``lstm_layers`` (1), ``learning_rate``
    (0.01, Adam), ``baseline_decay`` (0.9), ``entropy_weight`` (0.001), ``temperature`` (1),
    ``tanh_constant`` (2.5; 0 = off), ``grad_clip`` (5; 0 = off), ``reward_power`` (1; Zoph & Le
    used accuracy³), ``failed_reward`` ("skip", or the reward of a non-finite result),
    ``batch_size`` (1: rewards per REINFORCE step, Zoph & Le's m), ``population_size`` (20, the
    hall of fame) and ``codec`` (a codec name, or a table of codec parameters with an optional
    ``name``; default: the space's registered codec). A
    :class:`~evograph.genome.codec.Codec` object may also be passed as ``codec``."""

    def __init__(self, variation: Variation, seed: int, codec: Any = None, **params: Any):
        self.fixed_codec = codec if isinstance(codec, Codec) else None
        if codec is not None and self.fixed_codec is None:
            params["codec"] = codec
        super().__init__(variation, seed, **params)
        self._build()

    # -- parameters ----------------------------------------------------------------------------
    def _check_params(self, params: dict[str, Any]) -> dict[str, Any]:
        self._unknown(params, tuple(DEFAULTS))
        out = {**DEFAULTS, **params}
        for name, lo in INTS.items():
            out[name] = check_int(self.name, name, out[name], lo)
        for name, (lo, hi, closed) in FLOATS.items():
            out[name] = self._float(name, out[name], lo, hi, closed)
        failed = out["failed_reward"]
        if failed != "skip":
            out["failed_reward"] = self._float("failed_reward", failed, -math.inf, math.inf,
                                               True)
        out["codec"] = self._codec_spec(out["codec"])
        return out

    def _float(self, name: str, value: Any, lo: float, hi: float, closed: bool) -> float:
        """A finite real in the given range, or one ConfigError line naming the parameter."""
        ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and \
            math.isfinite(float(value)) and (lo <= value if closed else lo < value) and value <= hi
        if not ok:
            bound = "" if lo == -math.inf else f" {'>=' if closed else '>'} {lo}"
            bound += f" and <= {hi}" if hi < math.inf else ""
            extra = ' or "skip"' if name == "failed_reward" else ""
            raise ConfigError(f"strategy {self.name!r}: {name}={value!r} must be a finite "
                              f"number{bound}{extra}")
        return float(value)

    def _codec_spec(self, spec: Any) -> dict[str, Any]:
        if isinstance(spec, str):
            return {"name": spec}
        if not isinstance(spec, dict) or not isinstance(spec.get("name", ""), str):
            raise ConfigError(f"strategy {self.name!r}: codec={spec!r} must be a codec name or a "
                              "table of codec parameters")
        return dict(spec)

    def _build(self) -> None:
        """The codec and a fresh controller seeded from the strategy seed."""
        try:
            self.codec = self.fixed_codec or resolve_codec(self.variation, self.params["codec"])
        except ConfigError as exc:
            raise ConfigError(f"strategy {self.name!r}: {exc}") from None
        hyper = {k: self.params[k] for k in HYPER}
        self.controller = Controller(self.codec.decisions, self.seed, **hyper)
        self.last_stats: dict[str, Any] = {}
        self.pending: list[tuple[list[int], float]] = []  # rewards not yet learned from

    # -- the proposer protocol -----------------------------------------------------------------
    def _reset(self) -> None:
        self.hall: list[Member] = []
        self._told: list[tuple[int, float]] = []

    def _has_parents(self) -> bool:
        return False

    def ask(self, n: int) -> list[Proposal]:
        """``n`` sequences sampled in one batched pass, decoded into genomes."""
        check_int(self.name, "n", n, 0)
        rows = self.controller.sample(n, self.rng) if n else []
        return [self._emit(self.codec.decode(row), (),
                           Edit("rl-sample", {"decisions": list(row)}, inherit=False))
                for row in rows]

    def tell(self, results: list[Result]) -> None:
        """Record the results; once ``batch_size`` usable rewards are pending, one REINFORCE
        step on all of them."""
        sampled = {r.id: self.in_flight_[r.id].proposal.edit.args["decisions"]
                   for r in results if r.id in self.in_flight_}
        told: list[tuple[int, float]] = []
        self._told = told
        super().tell(results)
        self.pending += [(list(sampled[i]), reward) for i, reward in told]
        if len(self.pending) >= self.params["batch_size"]:
            self.last_stats = self.controller.update([p[0] for p in self.pending],
                                                     [p[1] for p in self.pending])
            self.pending = []

    def _reward(self, fitness: float) -> float:
        power = self.params["reward_power"]
        return fitness if power == 1.0 else math.copysign(abs(fitness) ** power, fitness)

    def _admit(self, member: Member, tag: int) -> None:
        self._told.append((member.id, self._reward(member.fitness)))
        self.hall.append(member)
        if len(self.hall) > self.params["population_size"]:
            keep = set(deap.sel_best([(m.id, m.fitness) for m in self.hall],
                                     self.params["population_size"]))
            self.hall = [m for m in self.hall if m.id in keep]

    def _on_failed(self, individual_id: int, tag: int) -> None:
        if self.params["failed_reward"] != "skip":
            self._told.append((individual_id, float(self.params["failed_reward"])))

    def population(self) -> list[tuple[int, float]]:
        return [(m.id, m.fitness) for m in self.hall]

    def probabilities(self, decisions: list[list[int]]) -> list[float]:
        """The policy's probability of each full decision sequence (for reports and tests)."""
        return self.controller.log_probs(decisions).sum(1).exp().tolist()

    # -- state ---------------------------------------------------------------------------------
    def _extra_state(self) -> dict[str, Any]:
        c = self.controller
        return {"population": [self.encode_member(m) for m in self.hall],
                "codec": self.codec.to_dict(), "controller": c.to_base64(),
                "baseline": c.baseline, "updates": c.updates, "last_stats": self.last_stats,
                "pending": [[d, r] for d, r in self.pending]}

    def _load_extra(self, state: dict[str, Any]) -> None:
        self.hall = [self.decode_member(item) for item in state["population"]]
        self._build()
        if state["codec"] != self.codec.to_dict():
            raise ConfigError(f"strategy {self.name!r}: the saved controller was trained on "
                              "other decisions (the search space or codec changed)")
        self.controller.load_base64(state["controller"])
        baseline = state["baseline"]
        self.controller.baseline = None if baseline is None else float(baseline)
        self.controller.updates = int(state["updates"])
        self.last_stats = dict(state.get("last_stats") or {})
        self.pending = [([int(i) for i in d], float(r)) for d, r in state["pending"]]
