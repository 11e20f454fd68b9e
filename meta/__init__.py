"""Meta-learners over the same genomes: the RL controller and ENAS weight sharing, learned
optimizers, MAML and hypernetworks. Each registers itself — as a proposer in
``selection.STRATEGIES`` or as a fitness generator in ``compile.FITNESS`` — when imported here."""

from importlib import import_module
from importlib.util import find_spec

MODULES = ("controller", "enas", "learned_optimizer", "maml", "hypernet", "table")

for _name in MODULES:
    if find_spec(f"{__name__}.{_name}") is not None:
        import_module(f"{__name__}.{_name}")
