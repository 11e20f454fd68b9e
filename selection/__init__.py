"""Selection: DEAP-backed selection (:mod:`.deap_adapter`) and the evolution strategies, all
asynchronous proposers with ``ask / tell / state_dict / load_state_dict``.

Registered strategies (``STRATEGIES``; build one with :func:`make_strategy`):

* ``tournament`` — Real et al. 2017, steady-state pairwise tournaments (kill the worse).
* ``aging`` — Real et al. 2019, regularized evolution (``aging=False``: remove the worst).
* ``topk`` — generational truncation: keep the top k plus random survivors, breed the rest.
* ``nsga2`` — Deb et al. 2002, fitness against extra objectives to minimise.
* ``random`` — random search.
"""

from typing import Any

from ..errors import ConfigError
from ..genome.settings import conform
from .aging import AgingStrategy
from .base import Proposal, Proposer, Result, Variation, derive_seed, is_finite_fitness
from .nsga2 import NSGA2Strategy
from .random_search import RandomSearch
from .strategy import STRATEGIES, Member, Strategy, make_strategy, register_strategy
from .topk import TopKStrategy
from .tournament import TournamentStrategy


def strategy_params(name: str) -> dict[str, Any] | None:
    """The parameters strategy ``name`` takes, with their defaults: what its own check fills
    in for an empty table (a strategy's ``_check_params`` returns every parameter it reads).
    None for a plug-in whose check needs a parameter given: its own check then decides."""
    if name not in STRATEGIES:
        raise ConfigError(f"strategy.name: unknown strategy {name!r} "
                          f"(known: {', '.join(sorted(STRATEGIES))})")
    cls = STRATEGIES[name]
    try:
        return dict(cls._check_params(cls.__new__(cls), {}))
    except (ConfigError, KeyError, TypeError, AttributeError):
        return None


def take_params(name: str, params: dict[str, Any], shared: tuple[str, ...] = ()
                ) -> tuple[dict[str, Any], dict[str, Any]]:
    """``params`` split into (those strategy ``name`` takes, those only other registered
    strategies take): a [strategy] table written for another strategy still serves when
    ``--set strategy.name=X`` switches, its foreign keys dropped by the caller with a notice.
    A key no strategy takes (a typo) is a ConfigError listing the known ones, and so is a value
    whose type is not its default's (bool, int, float); ranges are the strategy's own check.
    ``shared``: keys every strategy accepts (the run's objectives)."""
    own = strategy_params(name)
    if own is None:
        return dict(params), {}
    others = {key for other in STRATEGIES if other != name
              for key in (strategy_params(other) or {})}
    taken, dropped = {}, {}
    for key, value in params.items():
        if key in own:
            default = own[key]
            if type(default) in (bool, int, float):
                try:
                    conform(f"strategy.{key}", value, type(default))
                except ValueError as exc:
                    raise ConfigError(str(exc)) from None
            taken[key] = value
        elif key in others:
            dropped[key] = value
        elif key not in shared:
            raise ConfigError(f"strategy.{key}: unknown key (known for {name}: "
                              f"{', '.join([*own, *shared])})")
    return taken, dropped

__all__ = [
           "STRATEGIES",
           "AgingStrategy",
           "Member",
           "NSGA2Strategy",
           "Proposal",
           "Proposer",
           "RandomSearch",
           "Result",
           "Strategy",
           "TopKStrategy",
           "TournamentStrategy",
           "Variation",
           "derive_seed",
           "is_finite_fitness",
           "make_strategy",
           "register_strategy",
           "strategy_params",
           "take_params",
]
