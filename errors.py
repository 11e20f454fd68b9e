"""The exceptions evograph raises for user mistakes and invalid data.

Every error a user can cause derives from :class:`EvographError`, so the CLI can print one clear
line (``str(error)``) instead of a traceback. Messages name *what* is wrong and *where* (a node,
an edge, a config key and file, a path).
"""


class EvographError(Exception):
    """Base class of every user-facing evograph error."""


class InvalidGenome(EvographError):
    """A genome is malformed or violates its search space (names the node or edge and why)."""

    def __init__(self, message: str, where: str | None = None):
        self.where = where
        super().__init__(f"{where}: {message}" if where else message)


class GenomeFormatError(InvalidGenome):
    """A genome file cannot be parsed (not JSON, wrong schema version, a pickle, ...)."""


class ConfigError(EvographError):
    """A run configuration is invalid (names the key and the file)."""


class DatasetError(EvographError):
    """A dataset cannot be found or read (names the dataset and the path)."""


class RunStoreError(EvographError):
    """A run directory is missing, locked by another driver, or of an unknown schema."""


class ExportError(EvographError):
    """An export cannot be written or a bundle fails verification (tampered, truncated)."""
