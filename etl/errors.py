"""Domain errors of the ETL. Each message names the file, and the row and rule where there is one;
the CLI prints it as one line and exits non-zero."""

from __future__ import annotations

from etl.privacy import mask

__all__ = ["DeriveFailed", "EtlError", "RefusedFile", "WarehouseBusy", "WarehouseError"]


class EtlError(Exception):
    """Base class: a problem the user can act on."""


class RefusedFile(EtlError):
    """A file that cannot be read at all (format, missing required column, no known item)."""

    def __init__(self, path: str, problem: str) -> None:
        self.path = path
        self.problem = mask(problem)  # problems quote columns and lines of the file
        super().__init__(f"{path}: refused: {problem}")


class WarehouseBusy(EtlError):
    """Another load holds the warehouse lock."""


class WarehouseError(EtlError):
    """The warehouse file is missing, unreadable or of another schema."""


class DeriveFailed(EtlError):
    """A load's derive step (result tables, rollups) failed: the load was not swapped in."""
