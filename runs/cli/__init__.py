"""The ``evograph`` command: one module per command group (run, lineage, export, genome, meta,
hypernet), assembled by :mod:`.main`."""
