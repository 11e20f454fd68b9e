"""Selection: DEAP-backed selection (:mod:`.deap_adapter`) and the evolution strategies, all
asynchronous proposers with ``ask / tell / state_dict / load_state_dict``.

Registered strategies (``STRATEGIES``; build one with :func:`make_strategy`):

* ``tournament`` — Real et al. 2017, steady-state pairwise tournaments (kill the worse).
* ``aging`` — Real et al. 2019, regularized evolution (``aging=False``: remove the worst).
* ``topk`` — generational truncation: keep the top k plus random survivors, breed the rest.
* ``nsga2`` — Deb et al. 2002, fitness against extra objectives to minimise.
* ``random`` — random search.
"""

from .aging import AgingStrategy
from .base import Proposal, Proposer, Result, Variation, derive_seed, is_finite_fitness
from .nsga2 import NSGA2Strategy
from .random_search import RandomSearch
from .strategy import STRATEGIES, Member, Strategy, make_strategy, register_strategy
from .topk import TopKStrategy
from .tournament import TournamentStrategy

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
]
