"""``python -m evograph.runs.cli``: the ``evograph`` command."""

from .main import console_main

console_main()
