"""Behavioural transformer simulator on characterized devices (tables -> devices -> nn modules).

It reads tables only and never imports `cimlut.characterize`.
"""

from . import zoo
from .config import ConfigError, HardwareConfig
from .convert import UnsupportedModelError, convert
from .ledger import Ledger
from .table import OutOfRangeError, Table, TableError

__all__ = ["ConfigError", "HardwareConfig", "Ledger", "OutOfRangeError", "Table", "TableError",
           "UnsupportedModelError", "convert", "zoo"]
