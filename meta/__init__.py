"""Meta-learners over the same genomes, one subpackage each (docs/design.md):

* :mod:`.rl` — the RL controller of Zoph & Le 2017 (a proposer, strategy ``rl``);
* :mod:`.enas` — ENAS weight sharing (Pham et al. 2018; fitness ``enas``);
* :mod:`.learned_optimizer` — the L2L LSTM optimizer (Andrychowicz et al. 2016; fitness
  ``learned-optimizer``, optimizer gene ``learned``);
* :mod:`.maml` — MAML (Finn et al. 2017; fitness ``maml``);
* :mod:`.hypernet` — the static hypernetwork (Ha et al. 2016) and SMASH (Brock et al. 2018;
  fitness ``hypernet-static`` and ``hypernet``).

Each subpackage registers its plug-ins — proposers in ``selection.STRATEGIES``, fitness generators
in ``compile.FITNESS`` — from its own ``__init__``; importing this package imports them all.
"""

from . import enas, hypernet, learned_optimizer, maml, rl  # noqa: F401  (register their plug-ins)

LEARNERS = ("rl", "enas", "learned_optimizer", "maml", "hypernet")
